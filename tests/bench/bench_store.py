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

    # Baseline and alq steps are interleaved in each repeat and the ratio is taken per repeat
    # (median over repeats), so load from other jobs on the machine drifts into both alike.
    arr = np.load(src)  # in memory, like the array a user would np.save

    def np_save(sync=False):
        with open(work / "plain.npy", "xb") as fh:
            np.save(fh, arr)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())

    def np_read():
        m = np.load(work / "plain.npy", mmap_mode="r")
        return sum(float(m[a:a + 65_536].sum(dtype=np.float64)) for a in range(0, len(m), 65_536))

    def alq_embed(inp, out, dtype="float32"):
        embed(EmbedRequest(inputs=[inp], out=out, dtype=dtype))

    def alq_read():
        pool = open_pool(work / "pool")
        return sum(float(b.vectors.sum(dtype=np.float64)) for b in pool.iter_blocks())

    _write_parquet(src, work / "x.parquet")
    def fresh(*paths):
        """Untimed, before each step, for both sides alike: remove its outputs, then flush every dirty
        page (os.sync) so no step pays for the previous step's (or another job's) writeback."""
        def clear():
            for p in paths:
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
            os.sync()
        return clear

    nothing = fresh()
    steps = {
        "save": (fresh(work / "plain.npy"), np_save),
        "save_sync": (fresh(work / "plain.npy"), lambda: np_save(sync=True)),
        "read": (nothing, np_read),
        "embed": (fresh(work / "pool"), lambda: alq_embed(src, work / "pool")),
        "pool_read": (nothing, alq_read),
        "embed16": (fresh(work / "pool16"), lambda: alq_embed(src, work / "pool16", "float16")),
        "embed_pq": (fresh(work / "poolpq"), lambda: alq_embed(work / "x.parquet", work / "poolpq")),
    }
    runs = {k: [] for k in steps}
    for _ in range(REPEATS):
        for k, (prepare, fn) in steps.items():
            prepare()
            t0 = time.perf_counter()
            fn()
            runs[k].append(time.perf_counter() - t0)
    arr = None  # free the in-memory copy before the RSS runs
    assert alq_read() == pytest.approx(np_read(), rel=1e-9)  # the pool holds the same data

    def med(k):
        return statistics.median(runs[k])

    def ratio(num, den):
        return statistics.median([sum(runs[a][i] for a in num) / sum(runs[b][i] for b in den)
                                  for i in range(REPEATS)])

    rows = [
        ("np.save + np.load(mmap) full read [baseline]", med("save") + med("read"), 1.0, None),
        ("np.save alone", med("save"), ratio(["save"], ["save", "read"]), None),
        ("np.save + fsync", med("save_sync"), ratio(["save_sync"], ["save", "read"]), 1.0),
        ("np.load(mmap) full read alone", med("read"), ratio(["read"], ["save", "read"]), None),
        ("alq embed .npy -> float32 pool + pool full read", med("embed") + med("pool_read"),
         ratio(["embed", "pool_read"], ["save", "read"]), ratio(["embed", "pool_read"], ["save_sync", "read"])),
        ("alq embed .npy -> float32 pool", med("embed"), ratio(["embed"], ["save"]), ratio(["embed"], ["save_sync"])),
        ("alq pool full read (iter_blocks) vs mmap read", med("pool_read"), ratio(["pool_read"], ["read"]), None),
        ("alq embed .npy -> float16 pool", med("embed16"), ratio(["embed16"], ["save"]), ratio(["embed16"], ["save_sync"])),
        ("alq embed Parquet fixed_size_list -> float32", med("embed_pq"), ratio(["embed_pq"], ["save"]),
         ratio(["embed_pq"], ["save_sync"])),
    ]
    print(f"\n== store benchmark: {ROWS:,} x {DIM} float32 ({gb:.2f} GB), medians of {REPEATS} interleaved runs")
    print("ratio: time / the plain-NumPy counterpart in the same repeat (np.save for embed rows, the baseline sum "
          "for the first rows); durable: vs np.save + fsync (alq fsyncs every shard before its manifest)")
    print(f"{'step':50s} {'seconds':>8s} {'rows/s':>11s} {'GB/s':>6s} {'ratio':>6s} {'durable':>7s}")
    for name, t, r, d in rows:
        print(f"{name:50s} {t:8.3f} {ROWS / t:11,.0f} {gb / t:6.2f} {r:6.2f} {'' if d is None else f'{d:7.2f}'}")

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
    if ROWS >= 500_000:  # below a few blocks (ALQ_WORKING_MEMORY) the peak is still filling up
        assert rss["4N"][0] < 1.25 * rss["N"][0], "peak RSS grew with N"
    if not os.environ.get("ALQ_BENCH_DIR"):
        for f in ("x.npy", "x4.npy", "plain.npy", "x.parquet"):
            (work / f).unlink(missing_ok=True)
