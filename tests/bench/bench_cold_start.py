"""The cold start at scale (issue 18): which head-free strategy sends night 1's batch.

Two measurements, both printed as ratios measured in the same run:

1. Quality on real embeddings (Fashion-MNIST, ``../shared/data/fashion-mnist-rcnn512/``, skipped when
   absent): ``alq simulate`` with the seed set of 200 chosen by each cold-start strategy
   (``--seed-strategy``), then 2 rounds of 200 by margin; top-1 of the head trained on the seed set
   (round 0) and after the margin rounds, mean +- std over the repeats, vs random seeds.
2. Cost at scale (a synthetic pool, ``ALQ_BENCH_COLD_ROWS`` rows x 128, default 1M, float16;
   budget ``ALQ_BENCH_COLD_BUDGET``, default 100,000): whole ``typiclust`` (two-level k-means above
   2,000 clusters) against the I/O + matmul floor (one streamed pass of the pool against sqrt(b)
   centroids), and kcenter timed on its first picks and extrapolated to b (it is sequential:
   O(N b d)).

    python tests/bench/bench_cold_start.py quality --repeats 3
    python tests/bench/bench_cold_start.py scale
    pytest -m bench -s tests/bench/bench_cold_start.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

from bench_label_efficiency import CACHE, have_data, prepare  # noqa: E402

SEED_STRATEGIES = {  # label -> (strategy, options)
    "random": ("random", {}),
    "kcenter": ("kcenter", {}),
    "typiclust (flat k-means)": ("typiclust", {"typiclust.kmeans": "flat"}),
    "typiclust (two-level k-means)": ("typiclust", {"typiclust.kmeans": "two-level"}),
}
WORK = Path(os.environ.get("ALQ_BENCH_DIR", "/tmp/alq-bench"))


def quality(repeats: int, seed_size: int = 200, budget: int = 200, rounds: int = 2) -> dict:
    import pyarrow.parquet as pq

    from alq.simulate import SimulationConfig, run_simulation

    inputs = prepare("full", need_clusters=False)
    out = {}
    for label, (strategy, options) in SEED_STRATEGIES.items():
        tag = label.replace(" ", "").replace("(", "-").replace(")", "")
        run = CACHE / "runs" / f"cold-{seed_size}-{tag}"
        cfg = SimulationConfig(pool=inputs["pool"], labels=inputs["labels"], test_pool=inputs["test_pool"],
                               test_labels=inputs["test_labels"], strategies=["margin"], seed_size=seed_size,
                               budget=budget, rounds=rounds, repeats=repeats, seed=0, seed_strategy=strategy,
                               options=dict(options))
        t = time.perf_counter()
        run_simulation(cfg, run, resume=run.exists())
        rows = pq.read_table(run / "results.parquet").to_pylist()
        first = [r["top1"] for r in rows if r["round"] == 0]
        last = [r["top1"] for r in rows if r["round"] == rounds]
        out[label] = (first, last, time.perf_counter() - t)
        print(f"#   {label}: done ({out[label][2]:.0f} s)", flush=True)
    print(f"\n[cold start on Fashion-MNIST 60k x 512: seed set of {seed_size} by each strategy, then {rounds} x "
          f"{budget} by margin; top-1 mean +- std over {repeats} repeats]")
    base = np.mean(out["random"][0])
    for label, (first, last, _) in out.items():
        print(f"  {label:32s} seed set {np.mean(first):.4f} +- {np.std(first, ddof=1) if len(first) > 1 else 0:.4f}"
              f"  ({np.mean(first) - base:+.4f} vs random)   after margin {np.mean(last):.4f} +- "
              f"{np.std(last, ddof=1) if len(last) > 1 else 0:.4f}")
    return out


def synthetic_pool(n: int, d: int = 128) -> Path:
    path = WORK / f"cold-synth-{n}"
    if not (path / "manifest.json").exists():
        import subprocess

        subprocess.run([sys.executable, "-m", "alq", "synth", "--out", str(path), "-n", str(n), "-d", str(d),
                        "-c", "100", "--dtype", "float16", "-q"], check=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return path


def floor_seconds(pool, n_centroids: int) -> float:
    """One streamed pass of the pool against ``n_centroids`` random centroids (I/O + matmul floor)."""
    rng = np.random.default_rng(0)
    c = rng.standard_normal((n_centroids, pool.dim)).astype(np.float32)
    t = time.perf_counter()
    for block in pool.iter_blocks():
        x = np.asarray(block.vectors, np.float32)
        np.argmin(-2.0 * (x @ c.T) + (c * c).sum(1)[None, :], axis=1)
    return time.perf_counter() - t


def scale(n: int, budget: int, kcenter_picks: int = 300) -> dict:
    import math

    from alq.store import open_pool
    from alq.strategies import Context, get_strategy

    pool = open_pool(synthetic_pool(n))
    excluded = np.zeros(pool.count, bool)

    def ctx(b):
        return Context(pool=pool, budget=b, seed=0, excluded=excluded, labeled=np.empty(0, np.int64))

    floor = floor_seconds(pool, math.ceil(math.sqrt(budget)))
    t = time.perf_counter()
    sel = get_strategy("typiclust").select(ctx(budget))
    typ = time.perf_counter() - t
    t = time.perf_counter()
    get_strategy("kcenter").select(ctx(kcenter_picks))
    kc = (time.perf_counter() - t) * budget / kcenter_picks
    print(f"\n[cold start cost: alq synth {n:,} x {pool.dim} float16, budget {budget:,}]")
    print(f"  floor (one pass vs {math.ceil(math.sqrt(budget))} centroids): {floor:.1f} s")
    print(f"  typiclust ({sel.summary['typiclust']['kmeans']} k-means, {sel.summary['typiclust']['fit_rows']:,} fit "
          f"rows): {typ:.1f} s = {typ / floor:.1f}x floor")
    print(f"  kcenter (first {kcenter_picks} picks, extrapolated): {kc:.0f} s = {kc / floor:.0f}x floor")
    return {"floor": floor, "typiclust": typ, "kcenter_estimate": kc}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="*", default=["quality", "scale"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "quality" in args.parts:
        if have_data():
            quality(args.repeats)
        else:
            print("quality skipped: Fashion-MNIST embeddings not found (set ALQ_FMNIST_DIR)")
    if "scale" in args.parts:
        scale(int(os.environ.get("ALQ_BENCH_COLD_ROWS", 1_000_000)),
              int(os.environ.get("ALQ_BENCH_COLD_BUDGET", 100_000)))


@pytest.mark.bench
def test_cold_start():
    main([])


if __name__ == "__main__":
    main()
