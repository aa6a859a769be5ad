"""Object storage: a pool read from a loopback S3 server (moto) vs the same pool on local disk.

Figures, each the median of REPEATS runs, with its ratio to the local figure
measured in the same run:

* a streamed read pass (every row touched) of a ROWS x 256 float16 pool:
  local (memory-mapped) from disk (the pool's files evicted from the page
  cache with ``posix_fadvise`` before each pass) and from the page cache (the
  memory floor), vs ``s3://`` (range reads with read-ahead), and the
  ``s3://`` pass vs the store's own floor (one whole-object GET per shard);
* ``alq select --strategy margin --budget 10000`` as a whole process on each;
* building the pool (``PoolWriter``) on each;
* where ``s3fs`` is importable, the same shard objects read through fsspec's
  s3fs vs pyarrow's S3 client (the choice made in alq/fs/uris.py).

moto is a Python server: its throughput, not the network's, bounds the S3
side here. Against AWS S3 the same code keeps ``ALQ_READ_THREADS`` (8) ranges
of ``ALQ_RANGE_MIB`` (16 MiB) in flight.

    ALQ_BENCH_OS_ROWS=1000000 pytest -m bench -s tests/bench/bench_object_store.py -p no:xdist
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alq import fs

REPO = Path(__file__).resolve().parents[2]
ROWS = int(os.environ.get("ALQ_BENCH_OS_ROWS", 1_000_000))
DIM = 256
REPEATS = int(os.environ.get("ALQ_BENCH_REPEATS", 3))


def _build(dest, rows: int) -> float:
    from alq.store import PoolWriter

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, DIM)).astype(np.float32)
    t0 = time.perf_counter()
    w = PoolWriter(dest, dtype="float16", shard_rows=131_072)
    for a in range(0, rows, 100_000):
        n = min(100_000, rows - a)
        w.add(centres[rng.integers(0, 10, n)] + rng.normal(size=(n, DIM)).astype(np.float32))
    w.close()
    return time.perf_counter() - t0


def _read_pass(path) -> float:
    from alq.store import open_pool

    pool = open_pool(path)
    t0 = time.perf_counter()
    total = 0.0
    for blk in pool.iter_blocks():
        total += float(blk.vectors[:, ::32].astype(np.float32).sum())  # touches every page of the block
    dt = time.perf_counter() - t0
    assert np.isfinite(total)
    return dt


def _store_floor(uri: str) -> float:
    """The store's own throughput: one whole-object GET per shard, nothing else (no parsing, no alq)."""
    names = sorted(n for n in fs.listdir(uri) if n.endswith(".npy"))
    t0 = time.perf_counter()
    for n in names:
        f = fs.open_input(fs.join(uri, n))
        f.read_at(f.size(), 0)
    return time.perf_counter() - t0


def _drop_page_cache(pool_dir: Path) -> None:
    """Evict this pool's files from the page cache (only them: the machine is shared), so a pass reads the disk."""
    for f in pool_dir.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _cold_pass(pool_dir: Path) -> float:
    _drop_page_cache(pool_dir)
    return _read_pass(pool_dir)


def _range_costs(uri: str) -> tuple[float, float, float]:
    """The server's cost of one shard object: (4 KB header range, range of the whole data, plain GET)."""
    name = sorted(n for n in fs.listdir(uri) if n.endswith(".npy"))[0]
    f = fs.open_input(fs.join(uri, name))
    size = f.size()

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return (_median(timed, lambda: f.read_at(4096, 0)), _median(timed, lambda: f.read_at(size - 128, 128)),
            _median(timed, lambda: f.read_at(size, 0)))


def _median(fn, *args) -> float:
    return statistics.median(fn(*args) for _ in range(REPEATS))


def _wall(argv) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return time.perf_counter() - t0


def _s3fs_vs_pyarrow(uri: str, endpoint: str) -> tuple[float, float] | None:
    try:
        import s3fs
    except ImportError:
        return None
    names = [n for n in fs.listdir(uri) if n.endswith(".npy")]
    s3 = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
    _, bucket, key = fs.bucket_key(uri)

    def via_s3fs():
        t0 = time.perf_counter()
        for n in names:
            s3.cat_file(f"{bucket}/{key}/{n}")
        return time.perf_counter() - t0

    from alq.store import open_pool

    pool = open_pool(uri)

    def via_pyarrow():  # what alq does: parallel ranges of one shard at a time
        t0 = time.perf_counter()
        for s in range(pool.n_shards):
            pool.read_rows(s, 0, pool.shard_rows[s])
        return time.perf_counter() - t0

    return _median(via_s3fs), _median(via_pyarrow)


@pytest.mark.bench
def test_bench_object_store(tmp_path, s3_bucket, s3_server):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    local, remote = tmp_path / "pool", fs.join(s3_bucket, "pool")
    build_local = _build(local, ROWS)
    build_remote = _build(remote, ROWS)
    mb = ROWS * DIM * 2 / 2**20
    cold_local = _median(_cold_pass, local) if hasattr(os, "posix_fadvise") else float("nan")
    _read_pass(local)  # warm the page cache: the local figure is then the memory floor
    read_local = _median(_read_pass, local)
    read_remote = _median(_read_pass, remote)
    floor_remote = _median(_store_floor, remote)

    # labels and a head for margin select, made the way a user makes them (on the local pool)
    from alq.store import open_pool

    pool = open_pool(local)
    labeled = np.arange(0, ROWS, max(1, ROWS // 2000))[:2000]
    x = pool.take(labeled).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)
    (tmp_path / "labels.csv").write_text("id,label\n" + "".join(f"{i},{c}\n" for i, c in zip(pool.ids(labeled), y)))
    py = sys.executable
    _wall([py, "-m", "alq", "labels", "import", str(tmp_path / "labels.csv"), "--pool", str(local), "--out",
           str(tmp_path / "labels.parquet"), "--quiet"])
    _wall([py, "-m", "alq", "train", str(local), str(tmp_path / "labels.parquet"), "--out", str(tmp_path / "head.pt"),
           "--weight-decay", "1e-3", "--quiet"])
    sel = []
    for where in (local, remote):
        argv = [py, "-m", "alq", "select", str(where), "--head", str(tmp_path / "head.pt"), "--labels",
                str(tmp_path / "labels.parquet"), "--strategy", "margin", "--budget", "10000", "--out",
                str(tmp_path / "sel.parquet"), "--quiet"]
        sel.append(statistics.median(_wall(argv) for _ in range(REPEATS)))
    print(f"\nobject storage: {ROWS:,} x {DIM} float16 ({mb:,.0f} MiB), moto S3 on loopback, median of {REPEATS}")
    print(f"  {'':34} {'local':>9} {'s3://':>9} {'s3/local':>9}")
    print(f"  {'build (PoolWriter)':34} {build_local:8.2f}s {build_remote:8.2f}s {build_remote / build_local:8.2f}x")
    print(f"  {'streamed read pass, local disk':34} {cold_local:8.2f}s {read_remote:8.2f}s "
          f"{read_remote / cold_local:8.2f}x   ({mb / cold_local:,.0f} vs {mb / read_remote:,.0f} MiB/s)")
    print(f"  {'streamed read pass, page cache':34} {read_local:8.2f}s {read_remote:8.2f}s "
          f"{read_remote / read_local:8.2f}x   ({mb / read_local:,.0f} MiB/s: the memory floor)")
    print(f"  {'store floor (one GET per shard)':34} {'':9} {floor_remote:8.2f}s   pass / floor "
          f"{read_remote / floor_remote:.2f}x ({mb / floor_remote:,.0f} MiB/s)")
    print(f"  {'alq select margin (whole process)':34} {sel[0]:8.2f}s {sel[1]:8.2f}s {sel[1] / sel[0]:8.2f}x")
    head, rng, whole = _range_costs(remote)
    print(f"  one shard object on this server: 4 KB header range {head * 1000:.0f} ms, range of its data "
          f"{rng:.2f} s, plain GET {whole:.2f} s (moto materialises the object for every range)")
    cmp = _s3fs_vs_pyarrow(remote, s3_server)
    if cmp is None:
        print("  s3fs not installed: fsspec/s3fs vs pyarrow comparison skipped (pip install s3fs)")
    else:
        print(f"  whole shard objects: s3fs {cmp[0]:.2f}s, pyarrow {cmp[1]:.2f}s ({cmp[0] / cmp[1]:.2f}x)")
    assert read_remote > 0 and sel[1] > 0
