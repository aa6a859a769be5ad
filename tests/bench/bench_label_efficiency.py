"""Label efficiency on real embeddings: does each strategy save labels, and is the head as good as a tuned LR?

Data: Fashion-MNIST as 512-d frozen random-conv features (60,000 pool + 10,000
test rows, real images), from ``../shared/data/fashion-mnist-rcnn512/`` (or
``$ALQ_FMNIST_DIR``); skipped with a message when absent. Everything runs
with alq's defaults (``alq simulate`` as a user gets it: pool standardisation,
cross-validated L2 strength, default clusters and candidate ratio).

Settings (DISTIL's evaluation practice; BASE's imbalanced setting):
- small:      200 seed + 8 x 200 labels on the 60,000-row pool
- large:      1,000 seed + 6 x 2,000 on the 60,000-row pool
- redundant:  200 seed + 8 x 200 on a 6,000-row subset transformed with
              ``alq transform --redundancy 10`` (600 rows once, 540 rows x 10 copies)
- imbalanced: 200 seed + 8 x 200 on the pool transformed with ``--imbalance-ratio 10``
  (class sizes 6,000 .. 600); the test set stays balanced.
- long:       200 seed + 20 x 200 on the 60,000-row pool (the stopping rule; not in the default run)

Printed per setting and strategy: final top-1 accuracy (mean +- std over
repeats), labels saved vs random at random's final accuracy (the last-upward-
crossing definition of `alq report`), the penalty-matrix row vs random
(fraction of rounds significantly better / worse, paired t-test, alpha 0.05),
the final class imbalance ratio; then, for random sampling, alq's head vs
scikit-learn's ``LogisticRegressionCV`` (5-fold, 10 Cs, on pool-standardised
features) given the same labels at every label count, and the largest drop of
the mean random curve between rounds.

    python tests/bench/bench_label_efficiency.py                    # everything (hours on 2 cores)
    python tests/bench/bench_label_efficiency.py large --repeats 2 --strategies random,margin,cluster-margin
    pytest -m bench -s tests/bench/bench_label_efficiency.py

Issue 19: ``--balance-by predicted`` vs BASE on the imbalanced pool, and the
stopping rule (kappa >= 0.99 for 2 rounds on a fixed stop set) vs the round
where random's mean curve gains < 0.3 point:

    python tests/bench/bench_label_efficiency.py imbalanced --repeats 2 --strategies random,margin,base --stopping
    python tests/bench/bench_label_efficiency.py imbalanced --repeats 2 --strategies margin --balance-by predicted --tag balpred
    python tests/bench/bench_label_efficiency.py imbalanced --summary-only --with-runs balpred --stopping
    python tests/bench/bench_label_efficiency.py small --repeats 2 --strategies random,margin --stopping

Runs are cached (and resumed) under ``.bench/label-efficiency/``; a rerun
with more repeats or strategies only computes what is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("ALQ_FMNIST_DIR", ROOT.parent / "shared" / "data" / "fashion-mnist-rcnn512"))
CACHE = Path(os.environ.get("ALQ_BENCH_CACHE", ROOT / ".bench" / "label-efficiency"))
STRATEGIES = ["random", "margin", "entropy", "mase", "base", "cluster-margin", "badge", "coreset", "balanced-random"]
SETTINGS = {
    "small": {"pool": "full", "seed_size": 200, "budget": 200, "rounds": 8},
    "large": {"pool": "full", "seed_size": 1000, "budget": 2000, "rounds": 6},
    "redundant": {"pool": "redundant", "seed_size": 200, "budget": 200, "rounds": 8},
    "imbalanced": {"pool": "imbalanced", "seed_size": 200, "budget": 200, "rounds": 8},
    # issue 19's stopping rule: small's rounds continued to 20 (kappa 0.99 is not reached within 8)
    "long": {"pool": "full", "seed_size": 200, "budget": 200, "rounds": 20},
    # issue 18's default-cut study (bench_cluster.py::default_cut_study): Cluster-Margin at large batches
    "cut2k": {"pool": "full", "seed_size": 1000, "budget": 2000, "rounds": 4},
    "cut10k": {"pool": "full", "seed_size": 2000, "budget": 10000, "rounds": 2},
}
REPEATS = 5
# bench-only strategies: a registered strategy's ranking under `alq select --dedup DUPS/` (issue 19), DUPS/ from
# `alq dedup POOL --auto` on the setting's pool; e.g. --strategies random,margin,margin-dedup,badge
DEDUP_STRATEGIES = {"margin-dedup": "margin", "entropy-dedup": "entropy"}
SKLEARN_REPEATS = 2  # LogisticRegressionCV is slow at 13,000 labels: the reference covers the first repeats


def have_data() -> bool:
    return all((DATA / f).exists() for f in ("train_embeddings.npy", "train_labels.npy",
                                             "test_embeddings.npy", "test_labels.npy"))


# -- inputs -----------------------------------------------------------------------------------------------
def _write_pool(out: Path, x: np.ndarray, y: np.ndarray) -> None:
    from alq.store import PoolWriter
    from alq.store.labels import LabelSet

    if (out / "pool" / "manifest.json").exists():
        return
    ids = np.arange(len(x), dtype=np.int64)
    with PoolWriter(out / "pool", dim=x.shape[1], dtype="float16", shard_rows=10_000) as w:
        w.add(x, ids)
        w.close()
    LabelSet(ids=ids, labels=y.tolist()).write(out / "labels.parquet")


def prepare(pool_kind: str, need_clusters: bool = True) -> dict:
    """Pool, labels, test set and clusters for one pool kind, built once under CACHE."""
    from alq.cluster.api import ClusterOptions, cluster_pool
    from alq.cluster.store import is_cluster_dir
    from alq.simulate.transforms import TransformSpec, transform_pool
    from alq.store import open_pool

    full = CACHE / "full"
    if not (full / "pool" / "manifest.json").exists():
        _write_pool(full, np.load(DATA / "train_embeddings.npy"), np.load(DATA / "train_labels.npy"))
    test = CACHE / "test"
    if not (test / "pool" / "manifest.json").exists():
        _write_pool(test, np.load(DATA / "test_embeddings.npy"), np.load(DATA / "test_labels.npy"))
    base = CACHE / pool_kind
    if pool_kind != "full" and not (base / "pool" / "manifest.json").exists():
        spec = {"redundant": TransformSpec(per_class_cap=600, redundancy=10, seed=0),
                "imbalanced": TransformSpec(imbalance_ratio=10.0, seed=0)}[pool_kind]
        base.mkdir(parents=True, exist_ok=True)
        transform_pool(full / "pool", full / "labels.parquet", base / "pool", base / "labels.parquet", spec)
    clusters = base / "clusters"
    if need_clusters and not is_cluster_dir(clusters):
        t = time.perf_counter()
        summary = cluster_pool(open_pool(base / "pool"), clusters, ClusterOptions())
        print(f"# clustered {pool_kind}: {summary['n_clusters']} clusters in {time.perf_counter() - t:.0f} s "
              f"({summary.get('headline', '')})", flush=True)
    dups = base / "dups"
    if not (dups / "_dedup.parquet").exists():
        from alq.cluster.api import effective_normalize
        from alq.dedup.groups import DedupOptions, compute_groups
        from alq.dedup.store import write_dedup

        pool = open_pool(base / "pool")
        groups, info = compute_groups(pool, DedupOptions(auto=True))
        summary = write_dedup(pool, dups, groups, info, normalize_requested=None,
                              normalize_applied=effective_normalize(pool, None))
        print(f"# dedup {pool_kind}: {summary['headline']}", flush=True)
    return {"pool": base / "pool", "labels": base / "labels.parquet", "test_pool": test / "pool",
            "test_labels": test / "labels.parquet", "clusters": clusters, "dups": dups}


def register_dedup_strategies(dups: Path) -> None:
    """Register DEDUP_STRATEGIES for this process's simulation (strategies run in-process)."""
    from alq.dedup.constrain import constrained_select
    from alq.strategies import REGISTRY, Strategy, get_strategy

    for name, inner in DEDUP_STRATEGIES.items():
        base = type(get_strategy(inner))

        class Deduped(Strategy):
            help = f"{inner} under `alq select --dedup` (bench only)"
            needs_head = base.needs_head
            needs_clusters = base.needs_clusters

            def select(self, ctx, inner=inner):
                # once every near-duplicate group has a labeled row (1,140 groups on the redundant pool, 1,800
                # labels by the last round), the rest of the budget comes from the plain ranking: only copies of
                # labeled rows are left, and the simulation needs exactly `budget` rows
                import dataclasses

                import numpy as np

                from alq.errors import BudgetError
                from alq.strategies import Selection

                try:
                    sel = constrained_select(get_strategy(inner), dataclasses.replace(ctx), dedup=dups,
                                             allow_smaller=True)
                except BudgetError:  # no group left without a labeled row
                    sel = Selection(indices=np.empty(0, np.int64), scores=np.empty(0))
                if len(sel.indices) == ctx.budget:
                    return sel
                plain = get_strategy(inner).select(dataclasses.replace(
                    ctx, budget=min(ctx.n_unlabeled, ctx.budget + len(sel.indices))))
                extra = ~np.isin(plain.indices, sel.indices)
                take = np.flatnonzero(extra)[:ctx.budget - len(sel.indices)]
                sel.indices = np.concatenate([sel.indices, np.asarray(plain.indices)[take]])
                sel.scores = np.concatenate([sel.scores, np.asarray(plain.scores)[take]])
                sel.columns = {}
                return sel

        Deduped.name = name
        REGISTRY[name] = Deduped


def run_setting(name: str, strategies: list[str], repeats: int, options: dict | None = None,
                tag: str = "", clusters: Path | None = None, balance_by: str | None = None) -> Path:
    """Run (or resume) one setting's simulation with alq's defaults; returns its results.parquet."""
    from alq.simulate import SimulationConfig, run_simulation
    from alq.strategies import get_strategy

    s = SETTINGS[name]
    inputs = prepare(s["pool"], need_clusters=any(get_strategy(n).needs_clusters for n in strategies))
    register_dedup_strategies(inputs["dups"])
    out = CACHE / "runs" / (name + (f"-{tag}" if tag else ""))
    cfg = SimulationConfig(pool=inputs["pool"], labels=inputs["labels"], test_pool=inputs["test_pool"],
                           test_labels=inputs["test_labels"], strategies=strategies, seed_size=s["seed_size"],
                           budget=s["budget"], rounds=s["rounds"], repeats=repeats, seed=0,
                           clusters=clusters or inputs["clusters"], options=dict(options or {}),
                           balance_by=balance_by)
    t = time.perf_counter()

    def progress(task, done, total):
        if done and done % max(1, total // 10) == 0:
            print(f"#   {name}: {done}/{total} rounds ({time.perf_counter() - t:.0f} s)", flush=True)

    run_simulation(cfg, out, resume=out.exists(), progress=progress)
    return out / "results.parquet"


# -- the reference head ----------------------------------------------------------------------------------
def sklearn_reference(name: str, results: Path, repeats: int) -> list[dict]:
    """LogisticRegressionCV on pool-standardised features, on random's labeled set at every round."""
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegressionCV

    from alq.model.standardize import pool_column_stats
    from alq.simulate.rundir import SEED_SET, RunDir
    from alq.store import open_pool

    inputs = prepare(SETTINGS[name]["pool"])
    pool, test = open_pool(inputs["pool"]), open_pool(inputs["test_pool"])
    mean, scale = pool_column_stats(pool).standardizer()
    y_pool = np.asarray(pq.read_table(inputs["labels"]).column("label").to_pylist())
    y_test = np.asarray(pq.read_table(inputs["test_labels"]).column("label").to_pylist())
    x_test = (test.take(np.arange(test.count), dtype=np.float32) - mean) / scale
    res = pq.read_table(results).to_pylist()
    alq_acc = {(r["repeat"], r["round"]): r["top1"] for r in res if r["strategy"] == "random"}
    cache = CACHE / "runs" / f"{name}-sklearn.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    rd = RunDir(results.parent)
    out = []
    for r in range(repeats):
        rows = []
        for k in range(SETTINGS[name]["rounds"] + 1):
            path = rd.selection_path(SEED_SET if k == 0 else "random", r, k)
            if not path.exists() or (r, k) not in alq_acc:
                break
            rows.extend(pq.read_table(path, columns=["row"]).column("row").to_pylist())
            key = f"{r}/{k}"
            if key not in done:
                idx = np.sort(np.asarray(rows, dtype=np.int64))
                x = (pool.take(idx, dtype=np.float32) - mean) / scale
                with warnings.catch_warnings():  # sklearn 1.8+ FutureWarnings about changing defaults
                    warnings.simplefilter("ignore", FutureWarning)
                    clf = LogisticRegressionCV(Cs=10, cv=5, max_iter=1000, scoring="accuracy").fit(x, y_pool[idx])
                done[key] = float((clf.predict(x_test) == y_test).mean())
                cache.write_text(json.dumps(done))
            out.append({"repeat": r, "round": k, "n_labeled": len(rows), "sklearn": done[key],
                        "alq": alq_acc[(r, k)]})
    return out


def compare_heads(name: str, results: Path, strategies: list[str], repeats: int) -> list[dict]:
    """The same labeled sets trained with the earlier default head and with today's: is a gap the head's?

    Earlier default: fixed weight decay 1e-4, early stopping on a 10% holdout, standardised with the
    labeled rows' statistics. Today's: ``TrainOptions()`` with the pool's statistics.
    """
    import pyarrow.parquet as pq
    import torch

    from alq.model.standardize import pool_column_stats
    from alq.model.train import TrainOptions, train_head
    from alq.simulate.rundir import SEED_SET, RunDir
    from alq.store import open_pool

    inputs = prepare(SETTINGS[name]["pool"])
    pool, test = open_pool(inputs["pool"]), open_pool(inputs["test_pool"])
    stats = pool_column_stats(pool).standardizer()
    y_pool = np.asarray(pq.read_table(inputs["labels"]).column("label").to_pylist())
    y_test = np.asarray(pq.read_table(inputs["test_labels"]).column("label").to_pylist())
    x_test = torch.from_numpy(test.take(np.arange(test.count), dtype=np.float32))
    rd = RunDir(results.parent)
    classes = sorted(set(y_pool.tolist()))
    old = TrainOptions(weight_decay=1e-4, holdout=0.1)
    out = []
    for strategy in strategies:
        for r in range(repeats):
            rows: list[int] = []
            for k in range(SETTINGS[name]["rounds"] + 1):
                path = rd.selection_path(SEED_SET if k == 0 else strategy, r, k)
                if not path.exists():
                    break
                rows.extend(pq.read_table(path, columns=["row"]).column("row").to_pylist())
                idx = np.sort(np.asarray(rows, dtype=np.int64))
                x, y = pool.take(idx, dtype=np.float32), np.searchsorted(classes, y_pool[idx])
                acc = {}
                for label, opts, std in (("earlier", old, None), ("now", TrainOptions(), stats)):
                    head = train_head(x, y, classes, multilabel=False, opts=opts, standardizer=std)
                    acc[label] = float((head.logits(x_test).argmax(1).numpy() == np.searchsorted(classes, y_test))
                                       .mean())
                out.append({"strategy": strategy, "repeat": r, "round": k, "n_labeled": len(rows), **acc})
    return out


def print_head_comparison(rows: list[dict]) -> None:
    print("same labeled sets, earlier default head (wd 1e-4, 10% holdout, labeled-row stats) vs today's "
          "(mean over repeats):")
    keys = sorted({(r["strategy"], r["round"]) for r in rows})
    for strategy in sorted({k[0] for k in keys}):
        line = [f"  {strategy:16s}"]
        for _, k in [kk for kk in keys if kk[0] == strategy]:
            sel = [r for r in rows if r["strategy"] == strategy and r["round"] == k]
            line.append(f"{np.mean([r['earlier'] for r in sel]):.3f}/{np.mean([r['now'] for r in sel]):.3f}")
        print(" ".join(line))


# -- the table -------------------------------------------------------------------------------------------
def merged_results(paths: list[Path]):
    """One Results from several run directories of one setting (runs split over processes).

    Within a setting every run draws the same seed sets and initial heads (seeds derive from
    (seed, strategy, repeat, round)), so rows of different runs compare like rows of one run.
    """
    from alq.report.analysis import Results, load_results

    parts = [load_results(p) for p in paths]
    for part in parts:  # a run with --balance-by: its strategies are variants (margin+balance:predicted)
        if part.meta.get("balance_by"):
            suffix = f"+balance:{part.meta['balance_by']}"
            part.columns["strategy"] = [n + suffix for n in part.columns["strategy"]]
            part.meta["strategies"] = [n + suffix for n in part.meta.get("strategies", [])]
    cols: dict = {k: [] for k in parts[0].columns}
    seen = set()
    names: list[str] = []
    for part in parts:
        for i in range(len(part.columns["strategy"])):
            key = (part.columns["strategy"][i], part.columns["repeat"][i], part.columns["round"][i])
            if key in seen:
                continue
            seen.add(key)
            for k in cols:
                cols[k].append(part.columns[k][i])
        names += [n for n in part.strategies if n not in names]
    return Results(columns=cols, meta={**parts[0].meta, "strategies": names}, path=str(paths[0]))


def summarize_setting(name: str, results: Path, extra: list[Path] | None = None) -> dict:
    from alq.report.analysis import summarize

    s = summarize(merged_results([results, *(extra or [])]))
    per = s["per_strategy"]
    strat = s["penalty"]["strategies"]
    mat = np.asarray(s["penalty"]["matrix"]) if strat else np.zeros((0, 0))
    rows = {}
    for n in s["strategies"]:
        finals = next((f for f in (_final_values(p, n) for p in [results, *(extra or [])]) if f), [])
        rnd = strat.index("random") if "random" in strat else None
        i = strat.index(n)
        better = float(mat[i, rnd]) if rnd is not None else math.nan
        worse = float(mat[rnd, i]) if rnd is not None else math.nan
        rows[n] = {"final": per[n]["final"], "std": float(np.std(finals, ddof=1)) if len(finals) > 1 else math.nan,
                   "repeats": per[n]["repeats"], "labels_saved": per[n].get("labels_saved"),
                   "better_than_random": better, "worse_than_random": worse,
                   "imbalance": per[n].get("final_imbalance_ratio"), "n_labeled": per[n]["final_n_labeled"]}
    curve = s["curves"].get("random", {}).get("top1", [])
    drops = [a - b for a, b in zip(curve, curve[1:])]
    return {"rows": rows, "random_curve": curve, "max_drop": max(drops) if drops else None,
            "warnings": s.get("warnings", [])}


def _final_values(results: Path, strategy: str) -> list[float]:
    import pyarrow.parquet as pq

    from alq.io import parquet_metadata

    by = parquet_metadata(results).get("balance_by")
    suffix = f"+balance:{by}" if by else ""
    rows = [r for r in pq.read_table(results).to_pylist() if r["strategy"] + suffix == strategy]
    if not rows:
        return []
    last = max(r["round"] for r in rows)
    return [r["top1"] for r in rows if r["round"] == last]


def _fmt(v, spec=".3f", none="-") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none if v is None or (isinstance(v, float) and math.isnan(v)) else "inf"
    return format(v, spec)


FLAT_GAIN = 0.003  # "random's mean curve gains < 0.3 point per round"


def stopping_analysis(paths: list[Path]) -> dict:
    """Where "kappa >= 0.99 for 2 rounds" stops each strategy vs the round where random's mean curve flattens.

    Flattening round: the first round k >= 1 whose mean gain over round k - 1 is < ``FLAT_GAIN``. Per
    strategy and repeat: the stop round, |stop - flattening| <= 1, and accuracy at stop / final accuracy
    (the target: >= 0.98 for margin). Also the mean kappa per round, to see how close the rule came.
    """
    from alq.report.analysis import series, summarize
    from alq.stopping import stopping_summary

    res = merged_results(paths)
    s = summarize(res)
    st = stopping_summary(res, "top1")
    curve = s["curves"].get("random", {}).get("top1", [])
    gains = [b - a for a, b in zip(curve, curve[1:])]
    flat = next((k + 1 for k, g in enumerate(gains) if g < FLAT_GAIN), None)
    # a noisy mean curve dips once and climbs again: also the first round after which it never gains >= 0.3
    settled = next((k + 1 for k in range(len(gains)) if all(g < FLAT_GAIN for g in gains[k:])), None)
    out = {"random_curve": curve, "random_gains": gains, "flat_round": flat, "settled_round": settled,
           "strategies": {}}
    for name, e in (st or {}).get("strategies", {}).items():
        kap = series(res, name, "stop_kappa")
        rows = []
        for r in e["repeats"]:
            ratio = (r["at_stop"] / r["final"]) if r["at_stop"] is not None and r["final"] else None
            near = (abs(r["stop_round"] - flat) <= 1) if r["stop_round"] is not None and flat is not None else None
            rows.append({**r, "ratio_to_final": ratio, "within_one_of_flat": near})
        out["strategies"][name] = {"repeats": rows, "mean_kappa": [None if not np.isfinite(v) else float(v)
                                                                   for v in kap.mean()]}
    return out


def print_stopping(name: str, a: dict) -> None:
    print(f"stopping rule (kappa >= 0.99 for 2 rounds) on {name}: random's mean gains per round "
          + " ".join(f"{100 * g:+.2f}" for g in a["random_gains"])
          + f" points; first gain < {100 * FLAT_GAIN:.1f} point at round {a['flat_round']}, every later gain "
          f"< {100 * FLAT_GAIN:.1f} from round {a['settled_round']}")
    for n, e in a["strategies"].items():
        stops = ", ".join("-" if r["stop_round"] is None else str(r["stop_round"]) for r in e["repeats"])
        ratios = ", ".join("-" if r["ratio_to_final"] is None else f"{r['ratio_to_final']:.3f}" for r in e["repeats"])
        near = [r["within_one_of_flat"] for r in e["repeats"]]
        print(f"  {n:28s} stops at round {stops}; acc at stop / final {ratios}; within one round of "
              f"random's flattening: {near}; mean kappa per round "
              + " ".join("-" if k is None else f"{k:.3f}" for k in e["mean_kappa"]))


def print_setting(name: str, summary: dict, reference: list[dict]) -> None:
    s = SETTINGS[name]
    print(f"\n## {name}: {s['seed_size']} seed + {s['rounds']} x {s['budget']} on the {s['pool']} pool")
    print(f"{'strategy':16s} {'final top-1':>15s} {'labels saved':>13s} {'better/worse vs random':>23s} "
          f"{'final imbalance':>16s}")
    for n, r in summary["rows"].items():
        saved = r["labels_saved"]
        saved_s = f"{100 * saved:+.0f}%" if isinstance(saved, float) and math.isfinite(saved) else (
            "not reached" if saved is None else str(saved))
        print(f"{n:16s} {_fmt(r['final'])} +- {_fmt(r['std'])} {saved_s:>13s} "
              f"{_fmt(r['better_than_random'], '.2f'):>11s} / {_fmt(r['worse_than_random'], '.2f'):<10s} "
              f"{_fmt(r['imbalance'], '.2f'):>16s}")
    if summary["max_drop"] is not None:
        fall = summary["max_drop"]
        print(f"random's mean curve: {' '.join(_fmt(v) for v in summary['random_curve'])}; "
              + (f"largest fall between rounds {100 * fall:.2f} points" if fall > 0
                 else f"never falls (smallest gain {-100 * fall:.2f} points)"))
    if reference:
        by_round: dict[int, list] = {}
        for ref in reference:
            by_round.setdefault(ref["round"], []).append(ref)
        print("random sampling, alq head vs sklearn LogisticRegressionCV (same labels; mean over "
              f"{len({r['repeat'] for r in reference})} repeats):")
        for _k, refs in sorted(by_round.items()):
            a, b = np.mean([r["alq"] for r in refs]), np.mean([r["sklearn"] for r in refs])
            print(f"  {int(np.mean([r['n_labeled'] for r in refs])):6d} labels: alq {a:.4f}  sklearn {b:.4f}  "
                  f"diff {100 * (a - b):+.2f} points")
    for w in summary["warnings"]:
        print(w)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="*", default=[n for n in SETTINGS if n != "long"])
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--sklearn-repeats", type=int, default=SKLEARN_REPEATS)
    ap.add_argument("--option", action="append", default=[], help="strategy option key=value (exploration)")
    ap.add_argument("--tag", default="", help="separate run directory (exploration)")
    ap.add_argument("--clusters", type=Path, default=None, help="another clusters directory (exploration)")
    ap.add_argument("--with-runs", default="", help="also summarise these run tags of the same setting "
                    "(strategies run in other processes), e.g. part2")
    ap.add_argument("--summary-only", action="store_true", help="print the table of runs already made")
    ap.add_argument("--balance-by", default=None, help="run every strategy with --balance-by (e.g. predicted); "
                    "use with --tag, then summarise beside the plain run with --with-runs TAG")
    ap.add_argument("--stopping", action="store_true", help="print where the stopping rule fires vs the round "
                    "where random's mean curve flattens")
    ap.add_argument("--compare-heads", default="", help="strategies whose labeled sets are retrained with the "
                    "earlier and today's default head (e.g. random,balanced-random)")
    args = ap.parse_args(argv)
    if not have_data():
        print(f"skipped: {DATA} not found (set ALQ_FMNIST_DIR)")
        return
    from alq.cli.app import parse_options

    options = parse_options(args.option)
    for name in args.settings:
        t = time.perf_counter()
        if args.summary_only:
            results = CACHE / "runs" / (name + (f"-{args.tag}" if args.tag else "")) / "results.parquet"
        else:
            results = run_setting(name, [s for s in args.strategies.split(",") if s], args.repeats, options,
                                  args.tag, args.clusters, args.balance_by)
        extra = [CACHE / "runs" / f"{name}-{t}" / "results.parquet" for t in args.with_runs.split(",") if t]
        ref = []
        if args.sklearn_repeats and "random" in args.strategies.split(",") and SETTINGS[name]["pool"] == "full":
            ref = sklearn_reference(name, results, min(args.sklearn_repeats, args.repeats))
        print_setting(name, summarize_setting(name, results, extra), ref)
        if args.stopping:
            print_stopping(name, stopping_analysis([results, *extra]))
        if args.compare_heads:
            print_head_comparison(compare_heads(name, results, args.compare_heads.split(","), args.repeats))
        print(f"({name}: {time.perf_counter() - t:.0f} s)", flush=True)


@pytest.mark.bench
def test_label_efficiency():
    if not have_data():
        pytest.skip(f"{DATA} not found (set ALQ_FMNIST_DIR)")
    main([n for n in SETTINGS if n != "long"])


if __name__ == "__main__":
    main()
