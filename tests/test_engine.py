"""Engines: shard-aligned ranges; the Ray engine gives the local engine's results."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from alq.engine import LocalEngine, get_engine, shard_ranges
from alq.errors import BadInputError, MissingFeatureError, StoreError
from alq.store import MemoryPool, open_pool


def _row_sums(pool, lo, hi, scale, excluded=None):
    """A stage partial: (lo, hi, sum of kept rows * scale)."""
    total = 0.0
    for block in pool.iter_blocks(lo=lo, hi=hi):
        keep = ~excluded[block.start - lo:block.stop - lo]
        total += float(np.asarray(block.vectors, dtype=np.float64)[keep].sum())
    return lo, hi, total * scale


@pytest.mark.parametrize("n_tasks", [1, 2, 3, 7, 100])
def test_shard_ranges_cover_pool_on_shard_boundaries(n_tasks):
    pool = MemoryPool(np.zeros((700, 2), np.float32), shard_rows=100)
    ranges = shard_ranges(pool, n_tasks)
    assert ranges[0][0] == 0 and ranges[-1][1] == 700
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(lo % 100 == 0 for lo, _ in ranges)
    assert len(ranges) == min(n_tasks, 7)


def test_map_pool_slices_row_arrays(small_pool):
    path, x, _ = small_pool
    pool = open_pool(path)
    excluded = np.zeros(pool.count, bool)
    excluded[::3] = True
    parts = LocalEngine().map_pool(_row_sums, pool, 2.0, row_arrays={"excluded": excluded}, tasks=4)
    assert [p[0] for p in parts] == sorted(p[0] for p in parts)
    np.testing.assert_allclose(sum(p[2] for p in parts), 2.0 * x[~excluded].astype(np.float64).sum(), rtol=1e-9)
    with pytest.raises(ValueError, match="length"):
        LocalEngine().map_pool(_row_sums, pool, 1.0, row_arrays={"excluded": excluded[:-1]})


def test_unknown_engine_is_bad_input():
    with pytest.raises(BadInputError, match="--engine"):
        get_engine("spark")


def test_ray_missing_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from alq.engine import ray_engine

    with pytest.raises(MissingFeatureError) as info:
        ray_engine._import_ray()
    assert "pip install 'alq[ray]'" in info.value.line()


def test_embed_unknown_engine_is_refused_clearly(cli, tmp_path):
    """One line, exit 2, nothing written (``--engine ray`` itself: tests/test_ray_embed.py)."""
    from conftest import REPO

    code, _, err = cli("embed", REPO / "sample_data" / "pool.parquet", "--out", tmp_path / "p", "--engine", "spark")
    assert code == 2 and "--engine 'spark' is not known" in err
    assert not (tmp_path / "p").exists()


ray = pytest.importorskip("ray")
# Ray workers cannot import this test module: ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_engine():
    from alq.engine.ray_engine import RayEngine, shutdown

    engine = RayEngine(num_cpus=2)
    yield engine
    shutdown()


def _flaky_sum(pool, lo, hi, marker_dir, excluded=None):
    """Kills its own worker process the first time it runs on a range (Ray retries it)."""
    marker = os.path.join(marker_dir, f"ran-{lo}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return _row_sums(pool, lo, hi, 1.0, excluded=excluded)


@pytest.mark.ray
def test_ray_matches_local(small_pool, ray_engine):
    pool = open_pool(small_pool[0])
    excluded = np.zeros(pool.count, bool)
    excluded[5:50] = True
    local = LocalEngine().map_pool(_row_sums, pool, 3.0, row_arrays={"excluded": excluded}, tasks=7)
    remote = ray_engine.map_pool(_row_sums, pool, 3.0, row_arrays={"excluded": excluded})
    assert remote == local


@pytest.mark.ray
def test_ray_retries_a_killed_worker(small_pool, ray_engine, tmp_path):
    pool = open_pool(small_pool[0])
    excluded = np.zeros(pool.count, bool)
    want = LocalEngine().map_pool(_row_sums, pool, 1.0, row_arrays={"excluded": excluded}, tasks=7)
    got = ray_engine.map_pool(_flaky_sum, pool, str(tmp_path), row_arrays={"excluded": excluded})
    assert got == want
    assert len(list(tmp_path.glob("ran-*"))) == 7  # every task was killed once and retried


@pytest.mark.ray
def test_ray_missing_shard_is_named(small_pool, ray_engine):
    path, _, _ = small_pool
    pool = open_pool(path)
    (path / "shard-000004.npy").unlink()
    excluded = np.zeros(pool.count, bool)
    with pytest.raises(StoreError, match="shard-000004.npy"):
        ray_engine.map_pool(_row_sums, pool, 1.0, row_arrays={"excluded": excluded})
