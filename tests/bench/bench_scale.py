"""Scale benchmark (issue 18): BASE vs margin, BADGE vs a factorised numpy floor, RSS flat in N.

Pool: N rows x d=128 float16 from a 1000-component Gaussian mixture (cached
under .bench/data); head: nearest-class-mean linear head, C=100; 1% of the
rows labeled. Every ratio is taken against a baseline measured in the same
run (the machine is shared and noisy): median over ``ALQ_BENCH_REPEATS``
rounds, torch on ``ALQ_BENCH_THREADS`` threads (default 1).

1. **BASE / margin** at each N of ``ALQ_BENCH_BASE_SIZES`` (default 1M,4M;
   the issue's figure is 10M) and b = 10,000 and 100,000: ``select`` time of
   base over that of margin, timed back to back in each round.
2. **BADGE / floor** at N = ``ALQ_BENCH_BADGE_N`` (default 1M), b = 10,000:
   the floor is k-means++ seeding written plainly in numpy over the factors
   held in memory, ||g_i - g_j||^2 = |a_i|^2|h_i|^2 + |a_j|^2|h_j|^2 -
   2 (a_i.a_j)(h_i.h_j), same generator, same D^2 draw. Both time their first
   ``ALQ_BENCH_BADGE_PICKS`` picks (default 100; D^2 seeding is sequential,
   so these are exactly the first picks of the full batch) after their setup
   (floor: factors in memory; alq: its RowTable); the full-b time is
   extrapolated as setup + b x per-pick, and that is said where it is printed.
3. **Peak RSS** (child processes, ``VmHWM``) of badge and coreset (MLP head,
   so its features are spilled) at each N of ``ALQ_BENCH_RSS_SIZES`` (default
   250k,1M), budget ``ALQ_BENCH_RSS_BUDGET`` (default 50); ratio to the first N.

    python tests/bench/bench_scale.py [base|badge|rss ...]
    pytest -m bench -s tests/bench/bench_scale.py -p no:xdist
"""

from __future__ import annotations

import json
import os
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
D, COMPONENTS, C = 128, 1000, 100
REPEATS = int(os.environ.get("ALQ_BENCH_REPEATS", "3"))
THREADS = int(os.environ.get("ALQ_BENCH_THREADS", "1"))


def _sizes(name: str, default: str) -> list[int]:
    return [int(float(s)) for s in os.environ.get(name, default).split(",") if s]


# -- data ---------------------------------------------------------------------------------------
def make_pool(n: int) -> Path:
    """n rows x D float16 from a COMPONENTS-Gaussian mixture (cached)."""
    path = DATA / f"scale-n{n}-d{D}"
    if (path / "manifest.json").exists():
        return path
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((COMPONENTS, D), dtype=np.float32) * 0.25
    path.parent.mkdir(parents=True, exist_ok=True)
    w = PoolWriter(path, dtype="float16", overwrite=True)
    for lo in range(0, n, 500_000):
        m = min(500_000, n - lo)
        comp = rng.integers(0, COMPONENTS, m)
        x = rng.standard_normal((m, D), dtype=np.float32)
        x *= 0.5
        x += centres[comp]
        w.add(x)
    w.close()
    return path


def make_head(hidden: int = 0) -> Head:
    """Nearest-class-mean head over the mixture's components (class k = components k, k + C, ...)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((COMPONENTS, D), dtype=np.float32) * 0.25  # same draw as make_pool
    means = np.stack([centres[k::C].mean(0) for k in range(C)])
    net = HeadNet(D, C, hidden=hidden)
    with torch.no_grad():
        if hidden:
            torch.manual_seed(0)
            net.body[0].weight.copy_(torch.randn(hidden, D) / D ** 0.5)
            net.body[0].bias.zero_()
            means = (np.maximum(means @ net.body[0].weight.numpy().T, 0))
        net.out.weight.copy_(torch.from_numpy(means * 8))
        net.out.bias.copy_(torch.from_numpy(-(means ** 2).sum(1) * 4))
    return Head(nets=[net.eval()], classes=list(range(C)))


def exclusion(n: int) -> np.ndarray:
    excluded = np.zeros(n, bool)
    excluded[np.random.default_rng(1).choice(n, n // 100, replace=False)] = True
    return excluded


def context(pool, head, excluded, budget: int) -> Context:
    return Context(pool=pool, budget=budget, seed=0, excluded=excluded, labeled=np.flatnonzero(excluded), head=head,
                   engine=LocalEngine(), device=torch.device("cpu"))


def select_seconds(name: str, ctx: Context) -> tuple[float, object]:
    t0 = time.perf_counter()
    sel = get_strategy(name).select(ctx)
    return time.perf_counter() - t0, sel


# -- 1. BASE vs margin ----------------------------------------------------------------------------
def bench_base(sizes, budgets=(10_000, 100_000)) -> list[dict]:
    head, out = make_head(), []
    for n in sizes:
        pool, excluded = open_pool(make_pool(n)), exclusion(n)
        select_seconds("margin", context(pool, head, excluded, budgets[0]))  # warm the page cache
        for b in budgets:
            rounds = []
            for _ in range(REPEATS):
                tm, _ = select_seconds("margin", context(pool, head, excluded, b))
                tb, sel = select_seconds("base", context(pool, head, excluded, b))
                rounds.append((tm, tb))
                print(f"  N={n:,} b={b:,}: margin {tm:.2f} s, base {tb:.2f} s", file=sys.stderr, flush=True)
            out.append({"n": n, "b": b, "margin": statistics.median(r[0] for r in rounds),
                        "base": statistics.median(r[1] for r in rounds),
                        "ratio": statistics.median(r[1] / r[0] for r in rounds),
                        "passes": sel.summary["base_passes"], "k": sel.summary["base_candidates_per_class"]})
    print(f"\nBASE vs margin (d={D}, C={C}, float16, torch threads {THREADS}, median of {REPEATS} rounds, "
          "ratio taken within a round):")
    for r in out:
        print(f"  N={r['n']:>11,} b={r['b']:>7,}  margin {r['margin']:7.2f} s  base {r['base']:7.2f} s  "
              f"base/margin {r['ratio']:.2f}   (passes {r['passes']}, k {r['k']})")
    return out


# -- 2. BADGE vs the factorised floor ---------------------------------------------------------------
def floor_factors(pool, head, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a_i = p_i - e_yhat (N, C) and h'_i = [h_i, 1] (N, e+1), float32, in memory."""
    from alq.diversity.features import badge_transform
    from alq.diversity.rows import iter_pool_rows

    transform, _ = badge_transform(head, torch.device("cpu"))
    a = np.empty((len(rows), C), np.float32)
    h = np.empty((len(rows), D + 1), np.float32)
    for p0, p1, vec in iter_pool_rows(pool, rows, 65_536):
        f = transform(torch.from_numpy(np.asarray(vec, np.float32))).numpy()
        a[p0:p1], h[p0:p1] = f[:, :C], f[:, C:]
    return a, h


def floor_badge(a: np.ndarray, h: np.ndarray, picks: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding over g = a (x) h', plainly: O(N (C + e)) per centre, D^2 draw as alq's."""
    sq = np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", h, h)
    out = [int(np.argmax(sq))]
    d2 = np.full(len(a), np.inf, np.float32)
    for t in range(picks):
        j = out[-1]
        new = (a @ a[j]) * (h @ h[j])
        new *= -2
        new += sq
        new += sq[j]
        np.maximum(new, 0, out=new)
        np.minimum(d2, new, out=d2)
        d2[out] = 0
        if t + 1 == picks:
            break
        csum = np.cumsum(d2, dtype=np.float64)
        out.append(min(int(np.searchsorted(csum, rng.random() * csum[-1], side="right")), len(a) - 1))
    return np.asarray(out)


def bench_badge(n: int, b: int = 10_000, picks: int = 100) -> dict:
    from alq.diversity.features import badge_transform
    from alq.diversity.kmeanspp import kmeanspp_seeding
    from alq.diversity.metric import GradientEmbedding
    from alq.diversity.rows import RowTable

    pool, head, excluded = open_pool(make_pool(n)), make_head(), exclusion(n)
    rows = np.flatnonzero(~excluded)
    rounds = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        a, h = floor_factors(pool, head, rows)
        t1 = time.perf_counter()
        fl = floor_badge(a, h, picks, np.random.default_rng(0))
        t2 = time.perf_counter()
        del a, h
        transform, width = badge_transform(head, torch.device("cpu"))
        t3 = time.perf_counter()
        with RowTable(pool, rows, transform=transform, width=width, device=torch.device("cpu")) as table:
            t4 = time.perf_counter()
            pos, _, stats = kmeanspp_seeding(table, picks, metric=GradientEmbedding(C), rng=np.random.default_rng(0))
            t5 = time.perf_counter()
            where = table.where
        r = {"floor_setup": t1 - t0, "floor_pick": (t2 - t1) / picks, "alq_setup": t4 - t3,
             "alq_pick": (t5 - t4) / picks, "same_picks": float(np.mean(pos == fl)), "where": where}
        r["floor_total"] = r["floor_setup"] + b * r["floor_pick"]
        r["alq_total"] = r["alq_setup"] + b * r["alq_pick"]
        rounds.append(r)
        print(f"  badge round: {json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})}",
              file=sys.stderr, flush=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0] if k != "where"}
    med["pick_ratio"] = statistics.median(r["alq_pick"] / r["floor_pick"] for r in rounds)
    med["total_ratio"] = statistics.median(r["alq_total"] / r["floor_total"] for r in rounds)
    print(f"\nBADGE vs factorised numpy floor (N={n:,} x {D}, C={C}, b={b:,}; first {picks} picks timed, full b "
          f"extrapolated as setup + b x per-pick; torch threads {THREADS}; median of {REPEATS}; alq rows: "
          f"{rounds[0]['where']}):\n"
          f"  floor: setup {med['floor_setup']:.2f} s, {med['floor_pick'] * 1e3:.1f} ms/pick, b={b:,} ~ "
          f"{med['floor_total']:.0f} s\n"
          f"  alq:   setup {med['alq_setup']:.2f} s, {med['alq_pick'] * 1e3:.1f} ms/pick, b={b:,} ~ "
          f"{med['alq_total']:.0f} s\n"
          f"  alq/floor: per pick {med['pick_ratio']:.2f}, extrapolated total {med['total_ratio']:.2f}; "
          f"same picks as the floor {med['same_picks']:.3f}")
    return med


# -- 3. peak RSS flat in N ----------------------------------------------------------------------------
def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_child(n: int, strategy: str, budget: int) -> None:
    pool = open_pool(make_pool(n))
    head = make_head(hidden=D if strategy == "coreset" else 0)
    before = peak_rss_mib()
    secs, sel = select_seconds(strategy, context(pool, head, exclusion(n), budget))
    rows_at = sel.summary.get(strategy, {}).get("rows_at")
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "before_mib": before, "seconds": secs, "rows_at": rows_at}))


def bench_rss(sizes, budget: int) -> list[dict]:
    out = []
    for strategy in ("badge", "coreset"):
        for n in sizes:
            make_pool(n)
            env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(THREADS))
            proc = subprocess.run([sys.executable, __file__, "--rss-child", str(n), strategy, str(budget)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode:
                out.append({"n": n, "strategy": strategy, "error": proc.stderr.strip().splitlines()[-1:]})
                continue
            out.append({"n": n, "strategy": strategy, **json.loads(proc.stdout.strip().splitlines()[-1])})
    print(f"\npeak RSS of one selection (child process, VmHWM; b={budget}; coreset with an MLP head, so its "
          f"features are spilled; default ALQ_WORKING_MEMORY unless set):")
    first = {r["strategy"]: r["peak_rss_mib"] for r in out if r["n"] == sizes[0] and "peak_rss_mib" in r}
    for r in out:
        if "error" in r:
            print(f"  {r['strategy']:<8} N={r['n']:>10,}  error {r['error']}")
            continue
        print(f"  {r['strategy']:<8} N={r['n']:>10,}  {r['peak_rss_mib']:7.0f} MiB  "
              f"{r['peak_rss_mib'] / first[r['strategy']]:.2f} x N={sizes[0]:,}   (before selecting "
              f"{r['before_mib']:.0f} MiB; {r['seconds']:.1f} s; rows {r['rows_at']})")
    return out


@pytest.mark.bench
def test_scale_benchmark():
    main([])


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(THREADS)
    if argv[:1] == ["--rss-child"]:
        rss_child(int(argv[1]), argv[2], int(argv[3]))
        return
    parts = argv or ["base", "badge", "rss"]
    if "base" in parts:
        bench_base(_sizes("ALQ_BENCH_BASE_SIZES", "1000000,4000000"),
                   tuple(_sizes("ALQ_BENCH_BASE_BUDGETS", "10000,100000")))
    if "badge" in parts:
        bench_badge(int(float(os.environ.get("ALQ_BENCH_BADGE_N", "1000000"))),
                    picks=int(os.environ.get("ALQ_BENCH_BADGE_PICKS", "100")))
    if "rss" in parts:
        bench_rss(_sizes("ALQ_BENCH_RSS_SIZES", "250000,1000000"), int(os.environ.get("ALQ_BENCH_RSS_BUDGET", "50")))


if __name__ == "__main__":
    main()
