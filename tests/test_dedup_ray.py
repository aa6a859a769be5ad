"""``alq dedup --engine ray`` (a local 2-CPU Ray) gives exactly the local engine's groups."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from test_dedup import make_pool_vectors, write_pool

from alq.dedup.groups import DedupOptions, compute_groups
from alq.dedup.store import load_groups

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.ray  # noqa: E305


@pytest.fixture(scope="module")
def engine():
    from alq.engine.ray_engine import RayEngine, shutdown

    eng = RayEngine(num_cpus=2)
    yield eng
    shutdown()


def test_ray_groups_equal_local(engine, tmp_path, cli):
    x = make_pool_vectors(seed=2)
    pool = write_pool(tmp_path / "pool", x, shard_rows=150)  # 8 shards -> 8 Ray tasks
    n = len(x)
    for opts in (DedupOptions(threshold=0.5, knn=3), DedupOptions(auto=True), DedupOptions(threshold=0.1, index="ivf")):
        local = compute_groups(pool, opts)[0].group_of(np.arange(n))
        remote = compute_groups(pool, opts, engine=engine)[0].group_of(np.arange(n))
        assert np.array_equal(local, remote), opts
    code, out, err = cli("dedup", pool.path, "--out", tmp_path / "dups", "--threshold", "0.5", "--engine", "ray",
                         "--json", "-q")
    assert code == 0, err
    assert json.loads(out)["edges"] > 0
    assert np.array_equal(load_groups(tmp_path / "dups", pool),
                          compute_groups(pool, DedupOptions(threshold=0.5))[0].group_of(np.arange(n)))
