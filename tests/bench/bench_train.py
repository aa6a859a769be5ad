"""Which optimiser trains a head to convergence reliably: full-batch L-BFGS vs Adam with a cosine schedule.

Same objective for both (mean cross-entropy + weight_decay/2 ||W||^2, no
holdout), same data, same init. Reported per setting: the objective reached
as a gap to the best one any run found, test accuracy, and wall seconds as
a ratio to L-BFGS's (median of 3 runs). Data: scikit-learn's digits (real
8x8 images, 64 dims, 10 classes: what sample_data is built from) and
synthetic Gaussian mixtures at d=256, C=100 with overlapping classes.

    python tests/bench/bench_train.py            # prints the table
    pytest -m bench -s tests/bench/bench_train.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alq.model.fit import fit_net  # noqa: E402
from alq.model.train import TrainOptions  # noqa: E402

RUNS = 3


def digits(n_train: int, seed: int = 0):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    tr, te = order[:n_train], order[n_train:]
    return x[tr], y[tr], x[te], y[te], 10


def mixture(n_train: int, d: int = 256, c: int = 100, seed: int = 0, sep: float = 0.35):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * sep
    y = rng.integers(0, c, n_train + 20_000)
    x = (centres[y] + rng.normal(size=(len(y), d))).astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], c


def run(data, opts: TrainOptions) -> dict:
    xtr, ytr, xte, yte, c = data
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr).long()
    times, fit, net = [], None, None
    for _ in range(RUNS):
        t0 = time.perf_counter()
        net, fit = fit_net(x, y, c, multilabel=False, opts=opts, generator=torch.Generator().manual_seed(0))
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        acc = float((net(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean())
    return {"objective": fit["objective"], "test_acc": acc, "seconds": statistics.median(times),
            "iterations": fit["iterations"], "stopped": fit["stopped"]}


SETTINGS = {
    "lbfgs": dict(optimizer="lbfgs"),
    "adam lr=1e-2 x100": dict(optimizer="adam", lr=1e-2, epochs=100),
    "adam lr=1e-2 x300": dict(optimizer="adam", lr=1e-2, epochs=300),
    "adam lr=1e-3 x300": dict(optimizer="adam", lr=1e-3, epochs=300),
}


HEADER = (f"{'data':<24}{'head':<8}{'optimizer':<20}{'obj gap':>10}{'test acc':>10}{'time/lbfgs':>12}"
          f"{'sec':>8}{'iters':>7}")


def measure(datasets: dict, mlp_on=("digits n=1200", "mixture256 C=100 n=5k"),
            light=("mixture256 C=100 n=20k",), echo=False) -> list[dict]:
    """Rows of the comparison; ``echo`` prints each as soon as its setting is done."""
    rows = []
    if echo:
        print(HEADER, flush=True)
    for dname, data in datasets.items():
        for hidden in ((0, 256) if dname in mlp_on else (0,)):
            settings = {k: v for k, v in SETTINGS.items() if dname not in light or k in ("lbfgs", "adam lr=1e-2 x100")}
            results = {name: run(data, TrainOptions(hidden=hidden, holdout=0.0, **kw)) for name, kw in settings.items()}
            best = min(r["objective"] for r in results.values())
            base = results["lbfgs"]["seconds"]
            for name, r in results.items():
                row = {"data": dname, "head": f"mlp{hidden}" if hidden else "linear", "optimizer": name,
                       "objective_gap": r["objective"] - best, "test_acc": r["test_acc"],
                       "time_vs_lbfgs": r["seconds"] / base, "seconds": r["seconds"], "iterations": r["iterations"]}
                rows.append(row)
                if echo:
                    print_row(row)
    return rows


def print_row(r: dict) -> None:
    print(f"{r['data']:<24}{r['head']:<8}{r['optimizer']:<20}{r['objective_gap']:>10.2e}{r['test_acc']:>10.4f}"
          f"{r['time_vs_lbfgs']:>12.2f}{r['seconds']:>8.2f}{r['iterations']:>7}", flush=True)


def print_rows(rows: list[dict]) -> None:
    print("\n" + HEADER)
    for r in rows:
        print_row(r)


def default_datasets() -> dict:
    return {"digits n=300": digits(300), "digits n=1200": digits(1200),
            "mixture256 C=100 n=5k": mixture(5_000), "mixture256 C=100 n=20k": mixture(20_000)}


@pytest.mark.bench
def test_optimiser_choice():
    print()
    rows = measure(default_datasets(), echo=True)
    lb = [r for r in rows if r["optimizer"] == "lbfgs"]
    assert all(r["objective_gap"] < 1e-3 for r in lb), "L-BFGS should reach (near) the best objective"


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads())
    print(f"torch threads: {torch.get_num_threads()}; median of {RUNS} runs; objective gap = objective - best of the row's data")
    measure(default_datasets(), echo=True)
