"""The Ray engine gives exactly the local engine's outputs.

A local Ray (2 CPUs) is started inside this module and shut down afterwards.
For every registered strategy, ``alq score`` and ``alq cluster`` (graph
method and ``--update``), the Ray run must equal the local run for the same
seed. Worker death and a missing shard are covered in tests/test_engine.py.
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import gaussian_pool

from alq.engine import LocalEngine
from alq.model.train import TrainOptions, train_head
from alq.simulate.oracle import RowLabels
from alq.store import PoolWriter, open_pool
from alq.strategies import REGISTRY, Context, get_strategy, load_all

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.ray  # noqa: E305

load_all()
NAMES = sorted(REGISTRY)
N, C = 480, 4


@pytest.fixture(scope="module")
def engine():
    from alq.engine.ray_engine import RayEngine, shutdown

    eng = RayEngine(num_cpus=2)
    yield eng
    shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    x, y = gaussian_pool(N, d=12, c=C, seed=1, sep=3.0)
    rng = np.random.default_rng(1)
    labeled = np.sort(rng.choice(N, 48, replace=False))
    head = train_head(x[labeled], y[labeled], list(range(C)), multilabel=False,
                      opts=TrainOptions(hidden=8, dropout=0.2, ensemble=2, bootstrap=True, holdout=0.0))
    excluded = np.zeros(N, bool)
    excluded[labeled] = True
    d = tmp_path_factory.mktemp("ray")
    w = PoolWriter(d / "pool", shard_rows=80, dtype="float32")  # 6 shards -> 6 Ray tasks
    w.add(x)
    w.close()
    return dict(x=x, y=y, pool=open_pool(d / "pool"), head=head, labeled=labeled, excluded=excluded, dir=d,
                true=RowLabels(classes=list(range(C)), y=y.astype(np.int64)))


def _select(world, name, engine, budget=20, seed=3):
    cls = REGISTRY[name]
    ctx = Context(pool=world["pool"], budget=budget, seed=seed, excluded=world["excluded"].copy(),
                  labeled=world["labeled"], head=world["head"] if cls.needs_head else None,
                  clusters=world["y"].astype(np.int64), true_labels=world["true"],
                  options={"partitions": 2, "processes": 1}, engine=engine,
                  device=torch.device("cpu") if isinstance(engine, LocalEngine) else None)
    return get_strategy(name).select(ctx)


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_same_on_ray(world, engine, name):
    local = _select(world, name, LocalEngine())
    remote = _select(world, name, engine)
    np.testing.assert_array_equal(remote.indices, local.indices)
    np.testing.assert_allclose(remote.scores, local.scores, rtol=1e-6, atol=1e-9)
    assert remote.columns.keys() == local.columns.keys()
    for key in local.columns:
        np.testing.assert_array_equal(np.asarray(remote.columns[key]), np.asarray(local.columns[key]))


def test_score_same_on_ray(world, engine, tmp_path):
    from alq.scoring.store import write_scores

    write_scores(world["pool"], world["head"], tmp_path / "local", engine=LocalEngine())
    write_scores(world["pool"], world["head"], tmp_path / "ray", engine=engine)
    files = sorted(p.name for p in (tmp_path / "local").glob("*.parquet"))
    assert files and files == sorted(p.name for p in (tmp_path / "ray").glob("*.parquet"))
    for name in files:
        assert pq.read_table(tmp_path / "local" / name).equals(pq.read_table(tmp_path / "ray" / name))


def test_cluster_graph_and_update_same_on_ray(world, engine, tmp_path):
    from alq.cluster.api import ClusterOptions, cluster_pool
    from alq.cluster.store import load_clusters
    from alq.cluster.update import update_clusters

    opts = ClusterOptions(method="graph", knn=8)
    for name, eng in (("local", LocalEngine()), ("ray", engine)):
        cluster_pool(world["pool"], tmp_path / name, opts, engine=eng)
    pool = world["pool"]
    np.testing.assert_array_equal(load_clusters(tmp_path / "ray", pool), load_clusters(tmp_path / "local", pool))

    # append new rows to a copy of the pool, then --update with each engine
    import shutil

    shutil.copytree(world["dir"] / "pool", tmp_path / "pool2")
    x_new, _ = gaussian_pool(100, d=12, c=C, seed=7, sep=3.0)
    w = PoolWriter(tmp_path / "pool2", append=True, shard_rows=40)
    w.add(x_new)
    w.close()
    pool2 = open_pool(tmp_path / "pool2")
    for name, eng in (("local", LocalEngine()), ("ray", engine)):
        update_clusters(pool2, tmp_path / name, engine=eng)
    got = load_clusters(tmp_path / "ray", pool2)
    np.testing.assert_array_equal(got, load_clusters(tmp_path / "local", pool2))
    assert len(got) == N + 100



def _fails_at(i: int) -> int:
    import time

    from alq.errors import BadInputError

    if i == 1:  # the earlier bad row, found late
        time.sleep(3)
        raise BadInputError("x.npy: row 147 is NaN")
    if i == 3:  # a later bad row, found at once
        raise BadInputError("x.npy: row 444 is NaN")
    return i


@pytest.mark.parametrize("progress", [False, True])
def test_the_earliest_failing_task_is_reported_as_local_would(engine, progress):
    """Issue 20 item 32: --engine ray names the same (first) bad row as the local engine, whichever task
    failed first."""
    from alq.errors import BadInputError

    tasks = [(i,) for i in range(5)]
    with pytest.raises(BadInputError, match="row 147"):
        LocalEngine().map(_fails_at, tasks)
    with pytest.raises(BadInputError, match="row 147"):
        engine.map(_fails_at, tasks, on_done=(lambda i: None) if progress else None)
