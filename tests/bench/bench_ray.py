"""Local vs Ray engine on one machine: the overhead of running the map as Ray tasks.

Pool: N x 256 float16 (default N = 4M) from ``alq.synth`` with C=100 classes,
cached under .bench/data. Head: linear, trained on 2,000 labeled rows.
Stages timed with each engine, median of 3, in the same run:

- ``score``: every row through the head, per-shard Parquet written by the map tasks;
- ``select --strategy margin --budget 10000``;
- ``select --strategy cluster-margin --budget 10000`` (clusters = the mixture
  component of each row, given directly: this measures selection, not HAC).

Printed: each stage's seconds per engine, Ray / local ratio, Ray start-up
seconds, and the per-task throughput (rows/s per worker) used for the
README's 100M-row projection.

    python tests/bench/bench_ray.py --n 4000000
    pytest -m bench -s tests/bench/bench_ray.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

DATA = REPO / ".bench" / "data"


def make_pool(n: int) -> tuple[Path, Path]:
    from alq.synth import SynthSpec, synth_pool

    path, labels = DATA / f"ray-pool-{n}", DATA / f"ray-labels-{n}.parquet"
    if not (path / "manifest.json").exists() or not labels.exists():
        synth_pool(SynthSpec(n=n, dim=256, classes=100, seed=0), path, labels_out=labels, overwrite=True)
    return path, labels


def median_seconds(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(n: int, repeats: int = 3, budget: int = 10_000) -> dict:
    import pyarrow.parquet as pq
    import torch

    from alq.engine import LocalEngine
    from alq.engine.ray_engine import RayEngine, shutdown
    from alq.model.train import TrainOptions, train_head
    from alq.scoring.store import write_scores
    from alq.store import open_pool
    from alq.strategies import Context, get_strategy

    path, labels_path = make_pool(n)
    pool = open_pool(path)
    y = pq.read_table(labels_path, columns=["label"]).column("label").to_numpy().astype(np.int64)
    rng = np.random.default_rng(0)
    labeled = np.sort(rng.choice(n, 2000, replace=False))
    classes = sorted(set(y[labeled].tolist()))
    index = {c: i for i, c in enumerate(classes)}
    head = train_head(pool.take(labeled, dtype=np.float32), np.array([index[c] for c in y[labeled]]), classes,
                      multilabel=False, opts=TrainOptions(holdout=0.0))
    excluded = np.zeros(n, bool)
    excluded[labeled] = True
    out = DATA / "ray-scores"

    t0 = time.perf_counter()
    ray_engine = RayEngine()
    startup = time.perf_counter() - t0
    engines = {"local": LocalEngine(), "ray": ray_engine}

    def select(name, engine):
        ctx = Context(pool=pool, budget=budget, seed=0, excluded=excluded, labeled=labeled, head=head,
                      clusters=y, options={}, engine=engine,
                      device=torch.device("cpu") if engine.name == "local" else None)
        return get_strategy(name).select(ctx)

    results: dict = {"n": n, "shards": pool.n_shards, "ray_startup_s": startup}
    for stage in ("score", "margin", "cluster-margin"):
        for ename, eng in engines.items():
            if stage == "score":
                fn = lambda eng=eng, ename=ename: write_scores(pool, head, out / ename, engine=eng)  # noqa: E731
            else:
                fn = lambda eng=eng, stage=stage: select(stage, eng)  # noqa: E731
            results[f"{stage}/{ename}"] = median_seconds(fn, repeats)
        results[f"{stage}/ratio"] = results[f"{stage}/ray"] / results[f"{stage}/local"]
    # identical outputs (the tests assert this too; a benchmark of wrong answers is worthless)
    same = all(np.array_equal(select(s, engines["local"]).indices, select(s, ray_engine).indices)
               for s in ("margin", "cluster-margin"))
    results["same_selection"] = same
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    results["ray_cpus"] = cpus
    # per-worker throughput of the score map: rows / (ray seconds x concurrent tasks)
    results["score_rows_per_s_per_worker"] = n / (results["score/ray"] * min(cpus, pool.n_shards))
    shutdown()
    return results


def report(r: dict) -> None:
    print(f"\n[ray vs local] N={r['n']:,} x 256 float16, {r['shards']} shards, Ray with {r['ray_cpus']} CPUs "
          f"(start-up {r['ray_startup_s']:.1f} s, not included below); medians of 3")
    for stage in ("score", "margin", "cluster-margin"):
        print(f"  {stage:15s} local {r[stage + '/local']:7.2f} s   ray {r[stage + '/ray']:7.2f} s   "
              f"ray/local = {r[stage + '/ratio']:.2f}x")
    print(f"  identical selections: {r['same_selection']}")
    per = r["score_rows_per_s_per_worker"]
    print(f"  score throughput: {per:,.0f} rows/s per worker -> 100M x 256 on W workers ~ "
          + ", ".join(f"W={w}: {1e8 / (per * w) / 60:.1f} min" for w in (8, 32, 128)))


@pytest.mark.bench
@pytest.mark.ray
def test_bench_ray_vs_local():
    pytest.importorskip("ray")
    report(run(4_000_000))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    report(run(args.n, args.repeats))
