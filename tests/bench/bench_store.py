"""Store benchmark: `alq embed` throughput and peak memory, against plain NumPy in the same run.

Baseline: ``np.save`` of the in-memory array + ``np.load(mmap_mode='r')`` and a
full read of it (sum over row blocks). alq: ``embed()`` from the same .npy
(validation, float32 store, per-shard sha256 + fsync, id uniqueness check,
manifest) + a full read of the pool through ``Pool.iter_blocks``; and
``embed()`` from a Parquet file holding the same vectors as list<float32>.
Every figure is printed as a ratio to the baseline (median of REPEATS runs).
Peak RSS of ``alq embed`` runs in child processes (os.wait4 rusage) at N and
4N rows: streaming means it must not grow with N.

    pytest -m bench -s tests/bench/bench_store.py -p no:xdist
    ALQ_BENCH_ROWS=200000 ...   # a quicker, smaller run
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS = int(os.environ.get("ALQ_BENCH_ROWS", 1_000_000))
DIM = 256
REPEATS = int(os.environ.get("ALQ_BENCH_REPEATS", 3))


def _median_time(fn, repeats=REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


_RSS_WRAPPER = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.run([sys.executable, "-m", "alq", *sys.argv[1:]], stdout=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t0)
"""


def _peak_rss_mib(args: list[str]) -> tuple[float, float]:
    """(peak RSS MiB, wall s) of ``python -m alq ARGS``.

    Measured by a tiny wrapper process (RUSAGE_CHILDREN): Linux carries a
    forked child's high-water RSS over from its parent, so measuring straight
    from this (large) test process would report the test's own size.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *args], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "0", f"alq {' '.join(args)} failed"
    return int(out[1]) / 1024, float(out[2])


def _write_parquet(npy: Path, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arr = np.load(npy, mmap_mode="r")
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), DIM))])
    with pq.ParquetWriter(out, schema, compression="none") as w:
        for a in range(0, len(arr), 65_536):
            block = np.ascontiguousarray(arr[a:a + 65_536])
            vec = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), DIM)
            w.write_table(pa.table({"id": pa.array(np.arange(a, a + len(block))), "embedding": vec}, schema=schema))


@pytest.mark.bench
def test_bench_store(tmp_path_factory):
    from alq.embed import EmbedRequest, embed
    from alq.store import open_pool
    from alq.synth import SynthSpec, write_synth_npy

    work = Path(os.environ.get("ALQ_BENCH_DIR") or tmp_path_factory.mktemp("bench_store"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "x.npy"
    write_synth_npy(SynthSpec(n=ROWS, dim=DIM, classes=10, seed=0), src, dtype="float32")
    gb = ROWS * DIM * 4 / 1e9

    # -- baseline: plain numpy save + mmap full read ------------------------------
    arr = np.load(src)  # in memory, like the array a user would np.save

    def np_save():
        np.save(work / "plain.npy", arr)

    def np_read():
        m = np.load(work / "plain.npy", mmap_mode="r")
        s = 0.0
        for a in range(0, len(m), 65_536):
            s += float(m[a:a + 65_536].sum(dtype=np.float64))
        return s

    t_save = _median_time(np_save)
    t_read = _median_time(np_read)
    del arr

    # -- alq: embed from .npy and from Parquet, then a full pool read ----------------
    def alq_embed(inp, out, dtype="float32"):
        shutil.rmtree(out, ignore_errors=True)
        embed(EmbedRequest(inputs=[inp], out=out, dtype=dtype))

    def alq_read():
        pool = open_pool(work / "pool")
        s = 0.0
        for b in pool.iter_blocks():
            s += float(b.vectors.sum(dtype=np.float64))
        return s

    t_embed = _median_time(lambda: alq_embed(src, work / "pool"))
    t_pool_read = _median_time(alq_read)
    assert alq_read() == pytest.approx(np_read(), rel=1e-9)  # same data
    t_embed16 = _median_time(lambda: alq_embed(src, work / "pool16", "float16"))
    _write_parquet(src, work / "x.parquet")
    t_embed_pq = _median_time(lambda: alq_embed(work / "x.parquet", work / "poolpq"))

    base = t_save + t_read
    rows = [
        ("np.save + np.load(mmap) full read [baseline]", base, 1.0),
        ("np.save alone", t_save, t_save / base),
        ("np.load(mmap) full read alone", t_read, t_read / base),
        ("alq embed .npy -> float32 pool + pool full read", t_embed + t_pool_read, (t_embed + t_pool_read) / base),
        ("alq embed .npy -> float32 pool (vs np.save)", t_embed, t_embed / t_save),
        ("alq pool full read, iter_blocks (vs mmap read)", t_pool_read, t_pool_read / t_read),
        ("alq embed .npy -> float16 pool (vs np.save)", t_embed16, t_embed16 / t_save),
        ("alq embed Parquet fixed_size_list -> float32 (vs np.save)", t_embed_pq, t_embed_pq / t_save),
    ]
    print(f"\n== store benchmark: {ROWS:,} x {DIM} float32 ({gb:.2f} GB), median of {REPEATS} runs")
    print(f"{'step':58s} {'seconds':>8s} {'rows/s':>12s} {'GB/s':>7s} {'ratio':>7s}")
    for name, t, ratio in rows:
        print(f"{name:58s} {t:8.3f} {ROWS / t:12,.0f} {gb / t:7.2f} {ratio:7.2f}")

    # -- peak RSS at N and 4N rows: must not grow with N ----------------------------
    big = work / "x4.npy"
    write_synth_npy(SynthSpec(n=4 * ROWS, dim=DIM, classes=10, seed=1), big, dtype="float32")
    rss = {}
    for label, inp in (("N", src), ("4N", big)):
        shutil.rmtree(work / "rss_pool", ignore_errors=True)
        rss[label] = _peak_rss_mib(["embed", str(inp), "--out", str(work / "rss_pool"), "--dtype", "float16", "-q"])
        shutil.rmtree(work / "rss_pool", ignore_errors=True)
    idle, _ = _peak_rss_mib(["info", str(work / "pool")])
    print(f"peak RSS `alq embed` {ROWS:,} rows: {rss['N'][0]:.0f} MiB ({rss['N'][1]:.1f} s); "
          f"{4 * ROWS:,} rows: {rss['4N'][0]:.0f} MiB ({rss['4N'][1]:.1f} s); ratio 4N/N = "
          f"{rss['4N'][0] / rss['N'][0]:.2f}; `alq info` (import floor): {idle:.0f} MiB; input at 4N = "
          f"{4 * gb * 1e9 / 2**20:.0f} MiB")
    assert rss["4N"][0] < 1.25 * rss["N"][0], "peak RSS grew with N"
    if not os.environ.get("ALQ_BENCH_DIR"):
        for f in ("x.npy", "x4.npy", "plain.npy", "x.parquet"):
            (work / f).unlink(missing_ok=True)
