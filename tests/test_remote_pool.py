"""Pools on object storage (moto S3 on loopback): the same bytes as local, range reads, locks, commits."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import REPO

from alq import fs
from alq.errors import AlqError, StoreError
from alq.fs.lock import REMOTE_LOCK
from alq.store import PoolWriter, open_pool


def _vectors(n=1000, d=24, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.fixture
def both(s3_bucket, tmp_path, monkeypatch):
    """The same pool built locally and on S3 (a build, then an append)."""
    monkeypatch.setenv("ALQ_RANGE_MIB", "0.0625")  # many small ranges: exercises the parallel fetch
    x = _vectors()
    uri = fs.join(s3_bucket, "pool")
    for dest in (tmp_path / "pool", uri):
        w = PoolWriter(dest, shard_rows=300, dtype="float16")
        w.add(x[:700])
        w.close()
        w = PoolWriter(dest, append=True)
        w.add(x[700:])
        w.close()
    return open_pool(tmp_path / "pool"), open_pool(uri), x


def test_remote_pool_holds_the_local_bytes(both, tmp_path):
    a, b, x = both
    assert a.manifest.shards == b.manifest.shards and a.fingerprint == b.fingerprint
    assert (tmp_path / "pool" / "manifest.json").read_bytes() == fs.read_bytes(fs.join(b.path, "manifest.json"))
    for s in a.manifest.shards:
        assert (tmp_path / "pool" / s.npy).read_bytes() == fs.read_bytes(fs.join(b.path, s.npy))
    assert b.verify() == []


def test_range_reads_match_the_memory_mapped_pool(both):
    a, b, x = both
    got = np.concatenate([blk.vectors for blk in b.iter_blocks(block_rows=77)])
    assert np.array_equal(got, x.astype(np.float16))
    starts = [blk.start for blk in b.iter_blocks(block_rows=77, split=(3, 1))]
    assert starts == [blk.start for blk in a.iter_blocks(block_rows=77, split=(3, 1))]
    rng = np.random.default_rng(1)
    for k in (1, 7, 50, 400):  # sparse rows (own ranges), coalesced runs, most of a shard (whole read)
        idx = rng.choice(1000, k, replace=False)
        assert np.array_equal(b.take(idx), a.take(idx))
        assert np.array_equal(b.ids(idx), a.ids(idx))
    assert np.array_equal(b.lookup([5, 999, 12345]), a.lookup([5, 999, 12345]))


def test_pool_pickles_as_its_uri(both):
    _, b, _ = both
    c = pickle.loads(pickle.dumps(b))
    assert c.path == b.path and c.fingerprint == b.fingerprint
    assert len(pickle.dumps(b)) < 4096  # the manifest, not the data


def test_second_writer_is_refused_while_the_first_holds_the_lock(both):
    _, b, _ = both
    w1 = PoolWriter(b.path, append=True)
    try:
        with pytest.raises(AlqError, match="another pool writer"):
            PoolWriter(b.path, append=True)
    finally:
        w1.abort()
    assert not fs.exists(fs.join(b.path, REMOTE_LOCK))  # released
    PoolWriter(b.path, append=True).abort()  # and free again


def test_expired_lock_is_taken_over(both):
    _, b, x = both
    stale = {"owner": "deadhost:1:x", "expires": time.time() - 1, "ttl": 300}
    fs.write_bytes(fs.join(b.path, REMOTE_LOCK), json.dumps(stale).encode())
    w = PoolWriter(b.path, append=True)
    w.add(x[:5] + 100, ids=np.arange(5000, 5005))
    assert w.close().count == 1005


def test_commit_refused_when_the_pool_changed_under_the_writer(both):
    _, b, x = both
    w = PoolWriter(b.path, append=True)
    w.add(x[:5] + 100, ids=np.arange(5000, 5005))
    # another writer committed meanwhile (as if our lock had expired): the manifest is not the one we read
    m = b.manifest
    fs.write_bytes(fs.join(b.path, "manifest.json"), fs.read_bytes(fs.join(b.path, "manifest.json")) + b" ")
    with pytest.raises(StoreError, match="changed while this writer ran"):
        w.close()
    assert open_pool(b.path).manifest.shards == m.shards
    assert open_pool(b.path).unlisted() == []  # its uploads were removed


def test_overwrite_gives_new_names_and_removes_the_old_shards(both):
    _, b, x = both
    old = {f for s in b.manifest.shards for f in (s.npy, s.parquet)}
    w = PoolWriter(b.path, overwrite=True, shard_rows=500, dtype="float32")
    w.add(x[:600])
    m = w.close()
    names = {f for s in m.shards for f in (s.npy, s.parquet)}
    assert not names & old
    assert set(fs.listdir(b.path)) == names | {"manifest.json"}
    assert np.array_equal(open_pool(b.path).take([0, 599]), x[[0, 599]])


def test_verify_names_a_changed_object(both):
    _, b, _ = both
    s = b.manifest.shards[1]
    data = bytearray(fs.read_bytes(fs.join(b.path, s.npy)))
    data[-1] ^= 0xFF
    fs.write_bytes(fs.join(b.path, s.npy), bytes(data))
    problems = open_pool(b.path).verify()
    assert problems and s.npy in problems[0] and "checksum" in problems[0]


def test_sigkill_mid_append_leaves_the_previous_pool_and_a_later_writer_cleans(both):
    _, b, x = both
    before = b.manifest
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from alq.store import PoolWriter
        w = PoolWriter({b.path!r}, append=True, shard_rows=100)
        w.add(np.random.default_rng(3).normal(size=(450, 24)).astype(np.float32), ids=np.arange(10**6, 10**6 + 450))
        w._settle()  # four shards uploaded, the manifest not yet written
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", script], env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    pool = open_pool(b.path)
    assert pool.manifest == before and pool.verify() == []
    assert len(pool.unlisted()) == 8  # four shards' two objects, not part of the pool
    assert fs.exists(fs.join(b.path, REMOTE_LOCK))  # the dead writer's lock: it expires, nobody renews it
    from alq.store.inspect import describe

    info = describe(b.path, verify=True)
    assert info["verified"] and len(info["unlisted_files"]) == 8 and info["writer_lock"]["state"] == "held"
    fs.write_bytes(fs.join(b.path, REMOTE_LOCK), json.dumps({"owner": "x", "expires": 0}).encode())  # expired
    w = PoolWriter(b.path, append=True)
    assert len(w.swept) == 8
    w.add(x[:3] + 50, ids=np.arange(7000, 7003))
    w.close()
    assert open_pool(b.path).unlisted() == [] and open_pool(b.path).verify() == []


# -- the CLI against the store: killed and concurrent appends -----------------------------------
def _slow_input(tmp_path, rows=150_000):
    f = tmp_path / "big.npy"
    np.save(f, np.random.default_rng(9).normal(size=(rows, 24)).astype(np.float32))
    return f


def _wait_for(cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _alq_popen(*args):
    import os

    return subprocess.Popen([sys.executable, "-m", "alq", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_sigkill_of_alq_embed_append_keeps_the_pool(both, tmp_path):
    from conftest import run_alq_subprocess

    _, b, _ = both
    before = fs.read_bytes(fs.join(b.path, "manifest.json"))
    proc = _alq_popen("embed", _slow_input(tmp_path), "--out", b.path, "--append", "--shard-rows", "500", "--quiet")
    try:
        assert _wait_for(lambda: len(open_pool(b.path).unlisted()) >= 4), "no shard was uploaded"
    finally:
        proc.kill()
        proc.wait()
    assert fs.read_bytes(fs.join(b.path, "manifest.json")) == before
    r = run_alq_subprocess("info", b.path, "--verify", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["verified"] and info["count"] == 1000 and info["unlisted_files"]


def test_two_concurrent_appends_the_second_is_refused(both, tmp_path):
    """The first writer (alq's PoolWriter in another process) is held open until the second has been refused."""
    import os

    from conftest import run_alq_subprocess

    _, b, _ = both
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from alq.store import PoolWriter
        w = PoolWriter({b.path!r}, append=True)
        print("locked", flush=True)
        sys.stdin.readline()
        w.add(np.ones((2, 24), np.float32), ids=np.array([50_000, 50_001]))
        w.close()
    """)
    first = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert first.stdout.readline().strip() == "locked"
        second = tmp_path / "small.npy"
        np.save(second, np.ones((3, 24), np.float32))
        r = run_alq_subprocess("embed", second, "--out", b.path, "--append")
        assert r.returncode == 2, r.stderr
        assert "another pool writer" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        _, err = first.communicate("go\n", timeout=120)
    assert first.returncode == 0, err
    assert open_pool(b.path).count == 1002 and open_pool(b.path).verify() == []


def test_a_killed_first_build_does_not_block_the_rerun(s3_bucket):
    """No manifest yet, only a dead writer's shard objects (and its expired lock): the rerun clears them."""
    uri = fs.join(s3_bucket, "fresh")
    x = _vectors(300)
    w = PoolWriter(uri, shard_rows=100)
    w.add(x)
    w._settle()  # three shards uploaded; then the process "dies": no manifest, no cleanup
    w._lock._stop.set()
    w._closed, w._lock = True, None
    fs.write_bytes(fs.join(uri, REMOTE_LOCK), json.dumps({"owner": "dead", "expires": 0}).encode())
    assert len(fs.listdir(uri)) == 7
    from conftest import run_alq_subprocess

    r = run_alq_subprocess("info", uri)
    assert r.returncode == 2 and "6 shard objects but no manifest.json" in r.stderr, r.stderr
    w = PoolWriter(uri, shard_rows=100)
    assert len(w.swept) == 6
    w.add(x)
    m = w.close()
    assert set(fs.listdir(uri)) == {f for s in m.shards for f in (s.npy, s.parquet)} | {"manifest.json"}
