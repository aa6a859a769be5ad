"""Pool store core: streamed blocks == in-memory arrays; lookups; atomic publish."""

from __future__ import annotations

import numpy as np
import pytest

from alq.errors import BadInputError, StoreError
from alq.store import MemoryPool, PoolWriter, open_pool


@pytest.mark.parametrize("block_rows", [1, 7, 100, 10_000])
@pytest.mark.parametrize("split", [(1, 0), (3, 0), (3, 2), (7, 5)])
def test_blocks_cover_split_exactly(small_pool, block_rows, split):
    path, x, _ = small_pool
    pool = open_pool(path)
    lo, hi = pool.split_range(split)
    got = [(b.start, np.asarray(b.vectors)) for b in pool.iter_blocks(block_rows=block_rows, split=split)]
    starts = [s for s, _ in got]
    assert starts == sorted(starts)
    arr = np.concatenate([v for _, v in got]) if got else np.empty((0, x.shape[1]))
    np.testing.assert_array_equal(arr, x[lo:hi])
    assert all(len(v) <= block_rows for _, v in got)


def test_splits_partition_the_pool(small_pool):
    pool = open_pool(small_pool[0])
    ranges = [pool.split_range((4, r)) for r in range(4)]
    assert ranges[0][0] == 0 and ranges[-1][1] == pool.count
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_take_ids_lookup_locate(small_pool):
    path, x, _ = small_pool
    pool = open_pool(path)
    idx = np.array([699, 0, 101, 350, 101])
    np.testing.assert_array_equal(pool.take(idx), x[idx])
    np.testing.assert_array_equal(pool.ids(idx), idx)  # generated ids are 0..N-1
    np.testing.assert_array_equal(pool.lookup([350, 5, 10_000]), [350, 5, -1])
    shard, row = pool.locate(idx)
    np.testing.assert_array_equal(shard, idx // 100)
    np.testing.assert_array_equal(pool.global_index(shard, row), idx)


def test_memory_pool_matches_sharded(small_pool):
    path, x, _ = small_pool
    mem = MemoryPool(x, shard_rows=100)
    disk = open_pool(path)
    for a, b in zip(mem.iter_blocks(block_rows=33), disk.iter_blocks(block_rows=33)):
        assert a.start == b.start
        np.testing.assert_array_equal(a.vectors, b.vectors)


def test_string_ids_lookup(tmp_path):
    ids = np.array([f"img-{i:04d}" for i in range(50)], dtype=object)
    w = PoolWriter(tmp_path / "p", shard_rows=16, dtype="float16")
    w.add(np.ones((50, 3), np.float32), ids)
    w.close()
    pool = open_pool(tmp_path / "p")
    assert pool.id_type == "string"
    np.testing.assert_array_equal(pool.lookup(["img-0049", "nope", "img-0016"]), [49, -1, 16])
    assert list(pool.ids([3])) == ["img-0003"]


def test_append_keeps_ids_unique_and_fresh_build_refuses_existing(small_pool):
    path, x, _ = small_pool
    with pytest.raises(BadInputError, match="already in the pool"):
        with PoolWriter(path, append=True) as w:
            w.add(x[:2], ids=[5, 100_000])
            w.close()
    assert open_pool(path).count == 700 and open_pool(path).verify() == []
    with pytest.raises(BadInputError, match="already exists"):
        PoolWriter(path)


def test_bad_vectors_name_the_row(tmp_path):
    x = np.ones((10, 4), np.float32)
    x[7, 2] = np.nan
    w = PoolWriter(tmp_path / "p")
    with pytest.raises(BadInputError, match="vecs.npy: row 7 has NaN"):
        w.add(x, source="vecs.npy")
    w.abort()
    assert not (tmp_path / "p").exists()


def test_missing_shard_is_named(small_pool):
    path, _, _ = small_pool
    (path / "shard-000003.npy").unlink()
    pool = open_pool(path)
    assert "shard-000003.npy" in pool.verify()[0]
    with pytest.raises(StoreError, match="shard-000003.npy"):
        list(pool.iter_blocks())
