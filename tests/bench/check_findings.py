"""Check two published findings with `alq simulate` on synthetic pools.

1. DISTIL (Beck et al. 2021, Sec. 4.4): on a redundant pool (a subset
   duplicated K=10 times), BADGE beats entropy sampling.
2. BASE (Emam et al. 2021, Fig. 5): on an imbalanced pool (max/min class
   ratio R=10), BASE keeps a lower class imbalance ratio than margin.

Builds a Gaussian-mixture pool + test set (several sub-clusters per class,
so the head's boundary matters), derives the two experiment pools with
`alq transform`, runs `alq simulate` and `alq report`, and prints the
figures. Every command is printed before it runs, so each step can be
rerun by hand.

    python tests/bench/check_findings.py --out /tmp/alq-findings

Strategies must be registered (margin, entropy, badge, base come from the
strategy modules); ``--redundant-strategies`` / ``--imbalanced-strategies``
override the lists (e.g. to dry-run with random,balanced-random).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def make_mixture(n: int, d: int, c: int, *, sub: int = 3, sep: float = 1.0, seed: int = 0):
    """x (n, d) float32, y (n,): class c is a mixture of ``sub`` Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, sub, d)) * sep
    y = rng.integers(0, c, size=n)
    s = rng.integers(0, sub, size=n)
    x = centres[y, s] + rng.normal(size=(n, d))
    return x.astype(np.float32), y


def write_base(out: Path, n_pool: int, n_test: int, d: int, c: int, seed: int) -> None:
    from alq.store import PoolWriter
    from alq.store.labels import LabelSet

    x, y = make_mixture(n_pool + n_test, d, c, seed=seed)
    for name, lo, hi in (("pool", 0, n_pool), ("test", n_pool, n_pool + n_test)):
        if (out / name).exists():
            continue
        w = PoolWriter(out / name, shard_rows=8192, dtype="float32")
        w.add(x[lo:hi], ids=np.arange(lo, hi, dtype=np.int64))
        w.close()
        LabelSet(ids=np.arange(lo, hi, dtype=np.int64), labels=y[lo:hi].tolist()).write(out / f"{name}_labels.parquet")


def alq(*args) -> dict:
    cmd = [sys.executable, "-m", "alq", *map(str, args)]
    print("$ alq " + " ".join(shlex.quote(str(a)) for a in args), flush=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    return json.loads(proc.stdout) if "--json" in map(str, args) else {}


def experiment(out: Path, name: str, pool: Path, labels: Path, strategies: str, args) -> dict:
    run = out / f"run-{name}"
    sim = ["simulate", "--pool", pool, "--labels", labels, "--test-pool", out / "test",
           "--test-labels", out / "test_labels.parquet", "--strategies", strategies,
           "--seed-size", args.seed_size, "--budget", args.budget, "--rounds", args.rounds,
           "--repeats", args.repeats, "--seed", args.seed, "--out", run, "--json", "-q"]
    if (run / "config.json").exists():
        sim.append("--resume")
    alq(*sim)
    return alq("report", run / "results.parquet", "--out", run / "report", "--json")


def show(title: str, s: dict, pairs: list[tuple[str, str]]) -> None:
    print(f"\n== {title}")
    print(f"{'strategy':18s} {'final top-1 %':>16s} {'labels saved':>13s} {'mean IR':>9s} {'final IR':>9s} "
          f"{'entropy':>8s}")
    for n, p in s["per_strategy"].items():
        ci = p["final_ci95"]
        saved = "not reached" if p["labels_saved"] is None else f"{100 * p['labels_saved']:+.1f}%"
        print(f"{n:18s} {100 * p['final']:9.2f} ± {100 * (ci or 0):4.2f} {saved:>13s} "
              f"{p['mean_imbalance_ratio'] or float('nan'):9.2f} {p['final_imbalance_ratio'] or float('nan'):9.2f} "
              f"{p['final_class_entropy'] or float('nan'):8.3f}")
    names = s["penalty"]["strategies"]
    m = s["penalty"]["matrix"]
    for a, b in pairs:
        if a in names and b in names:
            i, j = names.index(a), names.index(b)
            print(f"penalty: {a} beats {b} in {m[i][j]:.2f} of rounds; {b} beats {a} in {m[j][i]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/alq-findings"))
    ap.add_argument("--pool-rows", type=int, default=20000)
    ap.add_argument("--test-rows", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed-size", type=int, default=100)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--redundant-strategies", default="random,entropy,badge")
    ap.add_argument("--imbalanced-strategies", default="random,margin,base,balanced-random")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_base(out, args.pool_rows, args.test_rows, args.dim, args.classes, args.seed)
    if not (out / "redundant").exists():
        alq("transform", out / "pool", "--labels", out / "pool_labels.parquet", "--redundancy", 10,
            "--out", out / "redundant", "--labels-out", out / "redundant_labels.parquet", "--seed", args.seed, "--json")
    if not (out / "imbalanced").exists():
        alq("transform", out / "pool", "--labels", out / "pool_labels.parquet", "--imbalance-ratio", 10,
            "--out", out / "imbalanced", "--labels-out", out / "imbalanced_labels.parquet", "--seed", args.seed,
            "--json")
    red = experiment(out, "redundant", out / "redundant", out / "redundant_labels.parquet",
                     args.redundant_strategies, args)
    imb = experiment(out, "imbalanced", out / "imbalanced", out / "imbalanced_labels.parquet",
                     args.imbalanced_strategies, args)
    show("Redundant pool (K=10): does badge beat entropy? (DISTIL)", red, [("badge", "entropy")])
    show("Imbalanced pool (R=10): does base keep a lower imbalance ratio than margin? (BASE)", imb,
         [("base", "margin")])
    print(f"\nreports: {out}/run-redundant/report/report.md, {out}/run-imbalanced/report/report.md")


if __name__ == "__main__":
    main()
