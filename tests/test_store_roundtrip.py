"""Shard store round trips (hypothesis), streamed == in-memory, id checks against brute force."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alq.errors import BadInputError
from alq.store import MemoryPool, PoolWriter, open_pool
from alq.store import poolids as poolids_mod
from alq.store.idcheck import UniqueIdSpill, hash_ids
from alq.store.npyfile import NpyStreamWriter, iter_npy_rows, npy_info, sync_and_hash

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def pools(draw):
    n = draw(st.integers(1, 60))
    d = draw(st.integers(1, 9))
    dtype = draw(st.sampled_from(["float16", "float32"]))
    shard = draw(st.sampled_from([1, 7, n, n + 5, 2 * n + 1]))
    string_ids = draw(st.booleans())
    batches = draw(st.lists(st.integers(1, 25), min_size=1, max_size=6))
    seed = draw(st.integers(0, 2**16))
    return n, d, dtype, shard, string_ids, batches, seed


@SETTINGS
@given(spec=pools())
def test_round_trip(tmp_path_factory, spec):
    n, d, dtype, shard, string_ids, batches, seed = spec
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) * 10).astype(np.float32)
    ids = np.array([f"id-{v}" for v in rng.permutation(10 * n)[:n]], dtype=object) if string_ids \
        else rng.permutation(10 * n)[:n].astype(np.int64) - 3 * n
    path = tmp_path_factory.mktemp("rt") / "pool"
    w = PoolWriter(path, dtype=dtype, shard_rows=shard)
    a = 0
    for b in batches:  # uneven batches that do not line up with shards
        if a >= n:
            break
        w.add(x[a:a + b], ids[a:a + b], source="mem", source_row0=a)
        a += b
    if a < n:
        w.add(x[a:], ids[a:])
    m = w.close()
    pool = open_pool(path)
    assert pool.count == n == m.count and pool.dim == d and pool.dtype == np.dtype(dtype)
    assert pool.id_type == ("string" if string_ids else "int64")
    assert all(r == shard for r in pool.shard_rows[:-1]) and 1 <= pool.shard_rows[-1] <= shard
    np.testing.assert_array_equal(pool.take(np.arange(n)), x.astype(dtype))
    assert pool.ids().tolist() == ids.tolist()
    np.testing.assert_array_equal(pool.lookup(ids[::-1]), np.arange(n)[::-1])
    assert pool.verify() == []
    for s in m.shards:  # the streamed checksum is the checksum of the file on disk
        assert hashlib.sha256((path / s.npy).read_bytes()).hexdigest() == s.sha256
        assert np.load(path / s.npy).shape == (s.rows, d)


@pytest.mark.parametrize("mib", ["0.0005", "0.01", "1", "256"])
@pytest.mark.parametrize("split", [(1, 0), (2, 1), (3, 0), (5, 4)])
def test_streamed_blocks_equal_in_memory(small_pool, monkeypatch, mib, split):
    """Default block sizes come from ALQ_WORKING_MEMORY; any setting and split gives the same rows."""
    path, x, _ = small_pool
    monkeypatch.setenv("ALQ_WORKING_MEMORY", mib)
    disk, mem = open_pool(path), MemoryPool(x, shard_rows=64)
    lo, hi = disk.split_range(split)
    got_disk = [b for b in disk.iter_blocks(split=split)]
    got_mem = [b for b in mem.iter_blocks(split=split)]
    block = disk.block_rows()
    assert all(len(b.vectors) <= block for b in got_disk)
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in got_disk]), x[lo:hi])
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in got_mem]), x[lo:hi])
    assert [b.start for b in got_disk] == sorted(b.start for b in got_disk)
    starts = np.concatenate([b.indices for b in got_disk])
    np.testing.assert_array_equal(starts, np.arange(lo, hi))


def test_embed_streaming_is_independent_of_memory_setting(tmp_path, monkeypatch, cli):
    x = np.random.default_rng(1).normal(size=(517, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    prints = {}
    for mib in ("0.001", "0.05", "512"):
        monkeypatch.setenv("ALQ_WORKING_MEMORY", mib)
        code, _, err = cli("embed", tmp_path / "x.npy", "--out", tmp_path / f"p{mib}", "--shard-rows", "100", "-q")
        assert code == 0, err
        prints[mib] = open_pool(tmp_path / f"p{mib}").fingerprint
    assert len(set(prints.values())) == 1


# -- building blocks ----------------------------------------------------------
@pytest.mark.parametrize("planned,written", [(5, 5), (5, 3), (1, 1), (100, 0)])
def test_npy_stream_writer(tmp_path, planned, written):
    x = np.arange(written * 3, dtype=np.float32).reshape(written, 3)
    w = NpyStreamWriter(tmp_path / "a.npy", np.float32, 3, planned)
    for r in range(written):
        w.write(x[r:r + 1])
    w.close()
    assert sync_and_hash(tmp_path / "a.npy") == hashlib.sha256((tmp_path / "a.npy").read_bytes()).hexdigest()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), x)
    info = npy_info(tmp_path / "a.npy")
    got = [b for _, b in iter_npy_rows(info, 2)]
    np.testing.assert_array_equal(np.concatenate(got) if got else np.empty((0, 3), np.float32), x)
    got = [b.copy() for _, b in iter_npy_rows(info, 2, reuse=True)]  # one buffer: copy before the next
    np.testing.assert_array_equal(np.concatenate(got) if got else np.empty((0, 3), np.float32), x)


@given(st.lists(st.text(max_size=12), min_size=1, max_size=40))
@settings(max_examples=50, deadline=None)
def test_string_hash_is_a_function_of_the_string(values):
    h = hash_ids(np.array(values, dtype=object))
    for i, a in enumerate(values):  # brute force: equal strings <=> equal hashes (no collisions expected here)
        for j, b in enumerate(values):
            assert (h[i] == h[j]) == (a == b)
    np.testing.assert_array_equal(hash_ids(np.array(values[::-1], dtype=object)), h[::-1])


@pytest.mark.parametrize("buffer_entries", [333, 10**6])  # many small spills to disk / all in memory
def test_spill_finds_every_repeated_hash(tmp_path, buffer_entries):
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=5000, dtype=np.int64).astype(np.uint64)
    hashes[[10, 4000, 4999]] = hashes[77]
    hashes[2] = hashes[3]
    with UniqueIdSpill(tmp_path / "x", buffer_entries=buffer_entries) as sp:
        for a in range(0, 5000, 700):
            sp.add(hashes[a:a + 700], np.arange(a, min(a + 700, 5000)))
        assert (sp.dir is not None) == (buffer_entries < 5000)
        groups = sorted(g.tolist() for g in sp.candidate_groups())
    assert groups == [[2, 3], [10, 77, 4000, 4999]]
    assert not list(tmp_path.glob(".x.ids.*"))  # cleaned up


def test_duplicates_across_batches_found_at_close(tmp_path):
    w = PoolWriter(tmp_path / "p", shard_rows=4)
    w.add(np.ones((10, 2)), np.arange(10), source="a.npy")
    w.add(np.ones((10, 2)), np.arange(100, 110), source="b.npy")
    w.add(np.ones((5, 2)), [200, 201, 105, 3, 202], source="c.npy", source_row0=50)
    with pytest.raises(BadInputError, match=r"c.npy: row 52: duplicate id 105 \(first seen at b.npy row 5\)"):
        w.close()
    assert not (tmp_path / "p").exists() and [f.name for f in tmp_path.iterdir()] == []  # no lock file left


def test_hash_collisions_are_not_duplicates(tmp_path, monkeypatch):
    """Force every id to the same hash: only real repeats may be reported."""
    monkeypatch.setattr(poolids_mod, "hash_ids", lambda ids: np.zeros(len(ids), dtype=np.uint64))
    w = PoolWriter(tmp_path / "p", shard_rows=3)
    w.add(np.ones((8, 2)), np.arange(8))
    w.close()
    assert open_pool(tmp_path / "p").count == 8
    w = PoolWriter(tmp_path / "p", append=True)
    w.add(np.ones((3, 2)), [20, 21, 22])
    w.add(np.ones((3, 2)), [23, 6, 21], source="new.npy")
    with pytest.raises(BadInputError, match="new.npy: row 1: id 6 is already in the pool"):
        w.close()
    assert open_pool(tmp_path / "p").count == 8 and open_pool(tmp_path / "p").verify() == []


def test_append_generates_ids_after_the_largest(tmp_path):
    w = PoolWriter(tmp_path / "p")
    w.add(np.ones((3, 2)), [5, 90, 7])
    w.close()
    w = PoolWriter(tmp_path / "p", append=True)
    w.add(np.zeros((2, 2)))
    w.close()
    assert open_pool(tmp_path / "p").ids().tolist() == [5, 90, 7, 91, 92]


def test_files_get_umask_permissions(tmp_path):
    """Temp files (0600) and dirs (0700) are widened to what the umask allows before publishing."""
    old = os.umask(0o022)
    try:
        w = PoolWriter(tmp_path / "p")
        w.add(np.ones((3, 2)))
        w.close()
    finally:
        os.umask(old)
    assert (tmp_path / "p").stat().st_mode & 0o777 == 0o755
    for f in (tmp_path / "p").iterdir():
        assert f.stat().st_mode & 0o777 == 0o644, f


def test_a_dropped_writer_frees_its_lock_and_temp_dir(tmp_path):
    import gc

    w = PoolWriter(tmp_path / "p")
    with pytest.raises(BadInputError, match="NaN"):
        w.add(np.full((2, 2), np.nan))
    del w
    gc.collect()
    assert [f.name for f in tmp_path.iterdir()] == []  # the .building dir went with it, and the lock file
    w = PoolWriter(tmp_path / "p")  # the lock is free again
    w.add(np.ones((2, 2)))
    w.close()
