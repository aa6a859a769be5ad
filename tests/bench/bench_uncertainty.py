"""Uncertainty and boundary strategies at scale: time vs the floor, peers, peak RSS.

Pool: N rows x d=256 float16 from a 1000-component Gaussian mixture, written
with PoolWriter (cached under .bench/data). Heads: nearest-class-mean linear
heads with C=100 and C=1000 classes. 1% of the rows are labeled (excluded).

Reported, all measured in the same run (median of 3):
- each strategy's ``select`` time as a ratio to the floor: one memory-mapped
  pass + the logits matmul + ``np.argpartition`` (plain torch/numpy);
- MASE and BASE at C=1000 as a ratio to margin at C=1000;
- modAL and scikit-activeml (``make bench-peers`` venv) on the same rows and
  the same head outputs for margin and entropy: alq time / peer time, and the
  overlap of the selected sets;
- peak RSS of ``alq select`` at N=1M and 4M (child processes).

    python tests/bench/bench_uncertainty.py            # N=1M, prints everything
    python tests/bench/bench_uncertainty.py --n 100000 --no-rss --no-peers   # quick
    pytest -m bench -s tests/bench/bench_uncertainty.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from alq.engine import LocalEngine  # noqa: E402
from alq.model.head import Head, HeadNet  # noqa: E402
from alq.store import PoolWriter, open_pool  # noqa: E402
from alq.strategies import Context, get_strategy  # noqa: E402

DATA = REPO / ".bench" / "data"
D = 256
COMPONENTS = 1000
BUDGET = 10_000
RUNS = 3


# -- data ------------------------------------------------------------------------------
def pool_path(n: int) -> Path:
    return DATA / f"mix-n{n}-d{D}-k{COMPONENTS}"


def make_pool(n: int, seed: int = 0) -> Path:
    """A float16 pool of n rows from a COMPONENTS-Gaussian mixture (cached)."""
    path = pool_path(n)
    if (path / "manifest.json").exists():
        return path
    rng = np.random.default_rng(seed)
    centres = (rng.normal(size=(COMPONENTS, D)) * 0.25).astype(np.float32)
    DATA.mkdir(parents=True, exist_ok=True)
    w = PoolWriter(path, dtype="float16", overwrite=True)
    step = 200_000
    for lo in range(0, n, step):
        m = min(step, n - lo)
        comp = rng.integers(0, COMPONENTS, m)
        w.add((centres[comp] + rng.normal(size=(m, D)).astype(np.float32) * 0.5).astype(np.float32))
    w.close()
    return path


def make_head(n_classes: int, seed: int = 0) -> Head:
    """Nearest-class-mean linear head: class k = components with index % n_classes == k."""
    rng = np.random.default_rng(seed)
    centres = (rng.normal(size=(COMPONENTS, D)) * 0.25).astype(np.float32)  # same draw as make_pool
    means = np.stack([centres[k::n_classes].mean(0) for k in range(n_classes)])
    net = HeadNet(D, n_classes)
    with torch.no_grad():
        net.out.weight.copy_(torch.from_numpy(means * 8))
        net.out.bias.copy_(torch.from_numpy(-(means ** 2).sum(1) * 4))
    return Head(nets=[net.eval()], classes=list(range(n_classes)))


def exclusion(n: int, seed: int = 1) -> np.ndarray:
    excluded = np.zeros(n, bool)
    excluded[np.random.default_rng(seed).choice(n, n // 100, replace=False)] = True
    return excluded


# -- timings -----------------------------------------------------------------------------
def floor_seconds(pool, head: Head, budget: int) -> float:
    """One memory-mapped pass + logits matmul + np.argpartition: the least any selection must do."""
    w = head.net.out.weight.detach()
    b = head.net.out.bias.detach()
    t0 = time.perf_counter()
    top = np.empty(pool.count, np.float32)
    with torch.no_grad():
        for blk in pool.iter_blocks(block_rows=65_536):
            x = torch.from_numpy(np.asarray(blk.vectors)).float()
            top[blk.start:blk.stop] = torch.addmm(b, x, w.t()).max(1).values.numpy()
    np.argpartition(top, budget)[:budget]
    return time.perf_counter() - t0


def strategy_seconds(pool, head, excluded, name: str, budget: int) -> tuple[float, object]:
    ctx = Context(pool=pool, budget=budget, seed=0, excluded=excluded, labeled=np.flatnonzero(excluded), head=head,
                  engine=LocalEngine(), device=torch.device("cpu"))
    t0 = time.perf_counter()
    sel = get_strategy(name).select(ctx)
    return time.perf_counter() - t0, sel




C100 = ("margin", "entropy", "least-confidence", "mase", "base")
C1000 = ("margin", "mase", "base")


def time_strategies(n: int) -> dict:
    """RUNS rounds; each round times the floor and every strategy back to back, so ratios are
    taken within a round (the machine's load drifts between rounds) and then the median is reported."""
    pool = open_pool(make_pool(n))
    excluded = exclusion(n)
    heads = {100: make_head(100), 1000: make_head(1000)}
    floor_seconds(pool, heads[100], BUDGET)  # warm the page cache
    rounds, sels = [], {}
    for _ in range(RUNS):
        t: dict = {}
        for c, names in ((100, C100), (1000, C1000)):
            t[f"floor_c{c}"] = floor_seconds(pool, heads[c], BUDGET)
            for name in names:
                t[f"{name}_c{c}"], sels[f"{name}_c{c}"] = strategy_seconds(pool, heads[c], excluded, name, BUDGET)
        rounds.append(t)
        print(f"  round {len(rounds)}: " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()), file=sys.stderr, flush=True)
    med = lambda f: statistics.median(f(t) for t in rounds)  # noqa: E731
    res: dict = {"n": n, "budget": BUDGET, "threads": torch.get_num_threads()}
    for key in rounds[0]:
        res[key] = med(lambda t, key=key: t[key])
    for c, names in ((100, C100), (1000, C1000)):
        for name in names:
            res[f"{name}_c{c}_vs_floor"] = med(lambda t, k=f"{name}_c{c}", f=f"floor_c{c}": t[k] / t[f])
    for name in ("mase", "base"):
        res[f"{name}_c1000_vs_margin"] = med(lambda t, k=f"{name}_c1000": t[k] / t["margin_c1000"])
    res["base_passes_c100"] = sels["base_c100"].summary["base_passes"]
    res["base_passes_c1000"] = sels["base_c1000"].summary["base_passes"]
    res["base_depth_c1000"] = sels["base_c1000"].summary["base_deepest_candidate"]
    for name in ("margin", "entropy"):
        res[f"{name}_rows"] = sels[f"{name}_c100"].indices
    return res


def print_strategy_ratios(res: dict) -> None:
    print(f"\nN={res['n']:,} d={D} b={res['budget']:,} torch threads={res['threads']} "
          f"(median of {RUNS} rounds; ratios taken within a round)")
    print(f"floor C=100: {res['floor_c100']:.2f} s   floor C=1000: {res['floor_c1000']:.2f} s")
    for c, names in ((100, C100), (1000, C1000)):
        for name in names:
            extra = "" if c == 100 or name == "margin" else f"   {res[f'{name}_c1000_vs_margin']:5.2f} x margin"
            print(f"  {name:<17} C={c:<5} {res[f'{name}_c{c}']:7.2f} s   {res[f'{name}_c{c}_vs_floor']:5.2f} x floor{extra}")
    print(f"  BASE passes: C=100 {res['base_passes_c100']}, C=1000 {res['base_passes_c1000']} "
          f"(deepest candidate used at C=1000: {res['base_depth_c1000']})")


# -- peers -----------------------------------------------------------------------------------
PEER_SCRIPT = r"""
import json, resource, sys, time
import numpy as np
pool, head_npz, excl_npy, budget, lib, measure = sys.argv[1:7]
budget = int(budget)
t0 = time.perf_counter()
man = json.load(open(f"{pool}/manifest.json"))
excluded = np.load(excl_npy)
parts, off = [], 0
for s in man["shards"]:
    a = np.load(f"{pool}/{s['name']}.npy", mmap_mode="r")
    keep = ~excluded[off:off + len(a)]
    parts.append(np.asarray(a[keep], dtype=np.float32))
    off += len(a)
X = np.concatenate(parts)
rows = np.flatnonzero(~excluded)
h = np.load(head_npz)
W, b = h["w"], h["b"]
t_load = time.perf_counter() - t0

class Head:
    classes_ = np.arange(W.shape[0])
    def fit(self, X, y=None): return self
    def predict_proba(self, X):
        z = X @ W.T + b
        z -= z.max(1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(1, keepdims=True)
        return z

if lib == "modal":  # imports are not timed (nor are alq's)
    from modAL.uncertainty import entropy_sampling, margin_sampling
else:
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import UncertaintySampling
    from skactiveml.utils import MISSING_LABEL
    from sklearn.base import BaseEstimator, ClassifierMixin
t1 = time.perf_counter()
if lib == "modal":
    fn = margin_sampling if measure == "margin" else entropy_sampling
    out = fn(Head(), X, n_instances=budget)
    idx = out[0] if isinstance(out, tuple) else out
else:
    class Est(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            self.classes_ = np.arange(W.shape[0])
            return self
        def predict_proba(self, X):
            return Head().predict_proba(X)
        def predict(self, X):
            return self.predict_proba(X).argmax(1)

    clf = SklearnClassifier(Est(), classes=np.arange(W.shape[0]))
    clf.fit(X[:W.shape[0]], np.arange(W.shape[0]))
    y = np.full(len(X), MISSING_LABEL)
    qs = UncertaintySampling(method="margin_sampling" if measure == "margin" else "entropy", random_state=0)
    idx = qs.query(X, y, clf, fit_clf=False, batch_size=budget)
t_query = time.perf_counter() - t1
def peak_rss_mib():
    # VmHWM restarts at exec; ru_maxrss would still hold the forking parent's resident set
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"load_seconds": t_load, "query_seconds": t_query, "rows": rows[np.asarray(idx)].tolist(),
                  "peak_rss_mib": peak_rss_mib()}))
"""


def alq_uncertainty_for_peers(n: int, budget: int) -> dict:
    """alq's margin and entropy times (median of RUNS) and picks at (n, budget), C=100."""
    pool = open_pool(make_pool(n))
    excluded, head = exclusion(n), make_head(100)
    res: dict = {}
    for name in ("margin", "entropy"):
        times = []
        for _ in range(RUNS):
            secs, sel = strategy_seconds(pool, head, excluded, name, budget)
            times.append(secs)
        res[f"{name}_c100"], res[f"{name}_rows"] = statistics.median(times), sel.indices
    return res


def run_peers(n: int, res: dict, budget: int = BUDGET) -> list[dict]:
    from tests.bench.peers import run_peer

    head = make_head(100)
    npz = DATA / "head-c100.npz"
    np.savez(npz, w=head.net.out.weight.detach().numpy(), b=head.net.out.bias.detach().numpy())
    excl = DATA / f"excluded-{n}.npy"
    np.save(excl, exclusion(n))
    out = []
    for lib in ("modal", "skactiveml"):
        for measure in ("margin", "entropy"):
            r = run_peer(PEER_SCRIPT, pool_path(n), npz, excl, budget, lib, measure, timeout=1800)
            row = {"lib": lib, "measure": measure, "status": r.get("status")}
            if r.get("status") == "ok":
                total = r["load_seconds"] + r["query_seconds"]
                ours = res[f"{measure}_c100"]
                overlap = len(set(r["rows"]) & set(res[f"{measure}_rows"].tolist())) / budget
                row.update(peer_seconds=total, peer_query_seconds=r["query_seconds"], alq_over_peer=ours / total,
                           alq_over_peer_query=ours / r["query_seconds"], overlap=overlap,
                           peer_peak_rss_mib=r["peak_rss_mib"])
            else:
                row.update({k: v for k, v in r.items() if k != "status"})
            out.append(row)
    return out


def print_peers(rows: list[dict], title: str = "") -> None:
    print(f"\npeers on the same rows and head outputs (C=100{title}); alq time / peer time (lower = alq faster):")
    for r in rows:
        if r["status"] != "ok":
            print(f"  {r['lib']:<11} {r['measure']:<8} {r['status']}: {r}")
            continue
        print(f"  {r['lib']:<11} {r['measure']:<8} peer {r['peer_seconds']:6.2f} s (query {r['peer_query_seconds']:6.2f} s, "
              f"peak {r['peer_peak_rss_mib']:6.0f} MiB)   alq/peer {r['alq_over_peer']:.2f}   "
              f"alq/peer-query {r['alq_over_peer_query']:.2f}   same picks {r['overlap']:.3f}")


# -- peak RSS ----------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """This process's peak resident set (MiB). ``VmHWM`` restarts at exec, unlike ``ru_maxrss``,
    which in a child started by fork + exec still holds the parent's resident set at the fork."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(n: int, strategy: str, n_classes: int) -> None:
    """Child process: one selection on the cached pool; prints its peak RSS (MiB) after and before it."""
    pool = open_pool(pool_path(n))
    head, excluded = make_head(n_classes), exclusion(n)
    before = peak_rss_mib()
    secs, sel = strategy_seconds(pool, head, excluded, strategy, BUDGET)
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "before_mib": before, "seconds": secs}))


def measure_rss(sizes=(1_000_000, 4_000_000), cases=(("margin", 100), ("base", 100), ("base", 1000))) -> list[dict]:
    out = []
    for n in sizes:
        make_pool(n)
        for strategy, c in cases:
            proc = subprocess.run([sys.executable, __file__, "--rss-child", str(n), strategy, str(c)],
                                  capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
            if proc.returncode != 0:
                out.append({"n": n, "strategy": strategy, "error": proc.stderr.strip().splitlines()[-1:]})
                continue
            out.append({"n": n, "strategy": strategy, "classes": c, **json.loads(proc.stdout.strip().splitlines()[-1])})
    return out


def print_rss(rows: list[dict]) -> None:
    print("\npeak RSS of one selection (child process):")
    base = {(r["strategy"], r["classes"]): r["peak_rss_mib"] for r in rows if r["n"] == rows[0]["n"] and "peak_rss_mib" in r}
    for r in rows:
        if "peak_rss_mib" not in r:
            print(f"  N={r['n']:>9,} {r['strategy']:<7} error {r['error']}")
            continue
        print(f"  N={r['n']:>9,} {r['strategy']:<7} C={r['classes']:<5} {r['peak_rss_mib']:7.0f} MiB   "
              f"{r['peak_rss_mib'] / base[(r['strategy'], r['classes'])]:.2f} x N={rows[0]['n']:,}   "
              f"(process before selecting: {r['before_mib']:.0f} MiB; {r['seconds']:.1f} s)")


@pytest.mark.bench
def test_uncertainty_benchmark():
    res = time_strategies(1_000_000)
    print_strategy_ratios(res)
    print_peers(run_peers(1_000_000, res), ", N=1M, b=10,000")
    small = alq_uncertainty_for_peers(100_000, 1_000)  # where scikit-activeml's (b x N) float64 array fits
    print_peers(run_peers(100_000, small, budget=1_000), ", N=100k, b=1,000")
    print_rss(measure_rss())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--rss-sizes", default="1000000,4000000")
    ap.add_argument("--rss-child", nargs=3)
    ap.add_argument("--only-rss", action="store_true")
    ap.add_argument("--only-small-peers", action="store_true")
    args = ap.parse_args(argv)
    if args.rss_child:
        rss_child(int(args.rss_child[0]), args.rss_child[1], int(args.rss_child[2]))
        return
    if args.only_small_peers:
        small = alq_uncertainty_for_peers(100_000, 1_000)
        print_peers(run_peers(100_000, small, budget=1_000), ", N=100k, b=1,000")
        return
    if args.only_rss:
        print_rss(measure_rss(tuple(int(s) for s in args.rss_sizes.split(","))))
        return
    res = time_strategies(args.n)
    print_strategy_ratios(res)
    if not args.no_peers:
        print_peers(run_peers(args.n, res), f", N={args.n:,}, b={BUDGET:,}")
        small = alq_uncertainty_for_peers(100_000, 1_000)
        print_peers(run_peers(100_000, small, budget=1_000), ", N=100k, b=1,000")
    if not args.no_rss:
        print_rss(measure_rss(tuple(int(s) for s in args.rss_sizes.split(","))))


if __name__ == "__main__":
    main()
