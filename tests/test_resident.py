"""A scattered `take` does not leave the pool's mapped pages in the resident set (flat RSS as pools grow)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from alq.store import PoolWriter, open_pool
from alq.store.base import drop_resident


def _rss_file_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssFile")


@pytest.fixture
def pool(tmp_path):
    rng = np.random.default_rng(0)
    w = PoolWriter(tmp_path / "pool", shard_rows=40_000, dtype="float32")
    for _ in range(4):
        w.add(rng.normal(size=(20_000, 256)).astype(np.float32))  # 2 shards of ~39 MiB
    w.close()
    return open_pool(tmp_path / "pool")


def test_take_is_exact_after_dropping_pages(pool):
    idx = np.random.default_rng(1).choice(pool.count, 5000, replace=False)
    first = pool.take(idx)
    again = pool.take(idx)  # re-read after the pages were dropped
    np.testing.assert_array_equal(first, again)
    vec = pool.shard_vectors(0)
    drop_resident(vec)
    drop_resident(vec[10:20])  # a view finds its mapping too
    np.testing.assert_array_equal(pool.take(idx[:10]), first[:10])
    drop_resident(np.zeros(4))  # not a mapping: nothing happens


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_scattered_take_leaves_little_resident(pool):
    for s in range(pool.n_shards):
        np.asarray(pool.shard_vectors(s)).sum()  # pages in the page cache...
        drop_resident(pool.shard_vectors(s))  # ...but not mapped in this process
    before = _rss_file_mib()
    pool.take(np.random.default_rng(2).choice(pool.count, 20_000, replace=False))
    grown = _rss_file_mib() - before
    assert grown < 20, f"a scattered take left {grown:.0f} MiB of the 78 MiB pool resident"
