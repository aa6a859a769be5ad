"""Distributed encoding: ``alq embed --encoder --engine ray`` (2 workers) vs the local engine, same inputs.

Inputs: N raw rows x 256 float32 in two .npy files (default N = 200,000).
Encoder: a TorchScript MLP 256 -> 1024 -> 1024 -> 256 (GELU), heavy enough
that encoding, not I/O, dominates. Both engines build the same pool (the
test checks it); each is timed end to end, median of REPEATS runs, in the
same run, after an untimed warm-up of both (Ray workers started, torch
imported, as on a long-lived cluster; Ray's start-up is printed apart). The
local engine runs twice: with torch's default threads (every core) and with
one thread (the per-worker baseline); each Ray task runs one thread
(OMP_NUM_THREADS=1), two tasks at a time on a 2-CPU local Ray.

Printed: seconds per engine, Ray / local ratio, and where Ray's time goes:
the tasks' own seconds (encoder load + reads + encoding + shard writes),
driver overhead (planning, headers, task scheduling), adopting shards (reading
back their ids) and the commit (id check + manifest). From those, a
projection of the same job on W workers: driver + adopt + commit + task
seconds / W.

    python tests/bench/bench_ray_embed.py --n 200000
    ALQ_BENCH_ROWS=20000 pytest -m bench -s tests/bench/bench_ray_embed.py   # a small smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

ROWS = int(os.environ.get("ALQ_BENCH_ROWS", 200_000))
REPEATS = int(os.environ.get("ALQ_BENCH_REPEATS", 3))
DIM_IN, HIDDEN, DIM_OUT = 256, 1024, 256


def make_inputs(d: Path, n: int) -> tuple[list[Path], Path]:
    import torch

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for k, rows in enumerate((n // 2, n - n // 2)):
        f = d / f"raw-{k}.npy"
        np.save(f, rng.normal(size=(rows, DIM_IN)).astype(np.float32))
        files.append(f)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(DIM_IN, HIDDEN), torch.nn.GELU(), torch.nn.Linear(HIDDEN, HIDDEN),
                              torch.nn.GELU(), torch.nn.Linear(HIDDEN, DIM_OUT))
    enc = d / "mlp.pt"
    torch.jit.save(torch.jit.script(mlp.eval()), str(enc))
    return files, enc


def run(n: int = ROWS, repeats: int = REPEATS, workers: int = 2) -> dict:
    import tempfile
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from alq.embed import EmbedRequest, embed
    from alq.engine.ray_engine import RayEngine, shutdown
    from alq.store.manifest import read_manifest

    root = Path(tempfile.mkdtemp(prefix="alq-bench-rayembed-"))
    try:
        files, enc = make_inputs(root / "in", n)
        shard_rows = max(1_000, n // 16)

        def req(out: Path) -> EmbedRequest:
            return EmbedRequest(inputs=files, out=out, encoder=enc, shard_rows=shard_rows, batch_size=512)

        import torch

        local_t, local1_t, ray_t, ray_stats = [], [], [], []
        threads = torch.get_num_threads()
        t0 = time.perf_counter()
        eng = RayEngine(num_cpus=workers)
        startup = time.perf_counter() - t0
        # warm-up (not timed): start the workers and import torch in them, as a long-lived cluster would have
        warm = root / "in" / "warm.npy"
        np.save(warm, np.zeros((2 * workers * 64, DIM_IN), np.float32))
        embed(EmbedRequest(inputs=[warm], out=root / "warm", encoder=enc, shard_rows=64), engine=eng,
              tasks=2 * workers)
        embed(EmbedRequest(inputs=[warm], out=root / "warm-local", encoder=enc, shard_rows=64))
        for k in range(repeats):
            for name, times in (("local", local_t), ("local1", local1_t), ("ray", ray_t)):
                out = root / f"{name}-{k}"
                torch.set_num_threads(1 if name == "local1" else threads)
                t0 = time.perf_counter()
                s = embed(req(out), engine=eng if name == "ray" else None)
                times.append(time.perf_counter() - t0)
                if name == "ray":
                    ray_stats.append(s["engine"])
            torch.set_num_threads(threads)
            a, b = read_manifest(root / f"local1-{k}"), read_manifest(root / f"ray-{k}")
            assert [x.sha256 for x in a.shards] == [x.sha256 for x in b.shards], "Ray pool differs from local"
            for name in ("local", "local1", "ray"):
                shutil.rmtree(root / f"{name}-{k}")
        shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    local_s, local1_s, ray_s = statistics.median(local_t), statistics.median(local1_t), statistics.median(ray_t)
    st = ray_stats[ray_t.index(sorted(ray_t)[len(ray_t) // 2])]  # the median run's breakdown
    driver = ray_s - st["run_seconds"] - st["adopt_seconds"] - st["commit_seconds"]
    fixed = driver + st["adopt_seconds"] + st["commit_seconds"]
    result = {"rows": n, "tasks": st["tasks"], "local_s": local_s, "local_1thread_s": local1_s, "ray_s": ray_s,
              "ratio": ray_s / local_s, "ratio_1thread": ray_s / local1_s,
              "ray_startup_s": startup, "task_s_sum": st["task_seconds_sum"], "task_s_max": st["task_seconds_max"],
              "run_s": st["run_seconds"], "driver_s": driver, "adopt_s": st["adopt_seconds"],
              "commit_s": st["commit_seconds"],
              "projection": {w: fixed + st["task_seconds_sum"] / w for w in (2, 8, 32, 128)}}
    print(f"\nalq embed --encoder (MLP {DIM_IN}->{HIDDEN}->{HIDDEN}->{DIM_OUT}), {n:,} rows, "
          f"median of {repeats}:")
    print(f"  local engine        {local_s:8.2f} s  ({n / local_s:,.0f} rows/s, {threads} torch threads)")
    print(f"  local, 1 thread     {local1_s:8.2f} s  ({n / local1_s:,.0f} rows/s)")
    print(f"  ray, {workers} workers       {ray_s:8.2f} s  ({n / ray_s:,.0f} rows/s)   ray / local = "
          f"{result['ratio']:.2f}, ray / local 1 thread = {result['ratio_1thread']:.2f}   "
          f"(Ray start-up {startup:.1f} s, not counted)")
    print(f"  ray breakdown: {st['tasks']} tasks, task seconds sum {st['task_seconds_sum']:.2f} "
          f"(max {st['task_seconds_max']:.2f}), run wall {st['run_seconds']:.2f}, driver {driver:.2f}, "
          f"adopt {st['adopt_seconds']:.2f}, commit {st['commit_seconds']:.2f}")
    print("  projection (driver + adopt + commit + task seconds / W): "
          + ", ".join(f"W={w}: {t:.2f} s" for w, t in result["projection"].items()))
    return result


@pytest.mark.bench
def test_bench_ray_embed():
    pytest.importorskip("ray")
    r = run()
    assert r["ratio"] > 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=ROWS)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    run(args.n, args.repeats, args.workers)
