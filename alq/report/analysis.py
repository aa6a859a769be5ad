"""From results.parquet to every number of a report (ALGORITHMS.md, Evaluation).

- learning curves: mean and 95% Student-t interval over repeats, per round;
- labeling efficiency vs a baseline (random) at accuracy a:
  n_random(a) / n_strategy(a), n_X(a) = the fewest labels after which X's
  MEAN curve stays at or above a (its last upward crossing of a, linearly
  interpolated between rounds; DISTIL Sec. 4.1 uses the first crossing,
  which a noisy curve that touches a once and falls back would game);
- labels saved at a* = the baseline's FINAL accuracy (not its maximum):
  1 - n_strategy(a*) / n_random(a*) (Citovsky et al. 2021; Emam et al. 2021);
  a strategy whose mean curve ends below a* never reached it (no number);
- the pairwise penalty matrix (Ash et al. 2020; DISTIL App. G): for every
  ordered pair and round, a two-tailed paired t-test over repeats at
  ``alpha``; a significant win of i over j adds 1/(number of rounds) to
  cell (i, j). Round 0 (the shared seed set) counts as a round, as in
  DISTIL's worked examples;
- class balance (imbalance ratio, empty classes, entropy), the sorted
  class distribution of the labeled set per round (BASE Fig. 4), timings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alq.errors import BadInputError
from alq.io import parquet_metadata, read_parquet
from alq.report.stats import mean_ci, paired_ttest
from alq.staging import shown

MIN_REPEATS_FOR_TESTS = 3  # fewer repeats: a paired t-test has <= 1 degree of freedom (or none)
METRICS = ("top1", "top5", "macro_accuracy", "map", "pooled_ap")
REQUIRED = ("strategy", "repeat", "round", "n_labeled", "class_counts", "imbalance_ratio", "empty_classes",
            "class_entropy", "select_seconds", "train_seconds")


@dataclass
class Results:
    """results.parquet as columns (python/numpy) plus its alq.* metadata."""

    columns: dict
    meta: dict
    path: str = ""

    @property
    def strategies(self) -> list[str]:
        seen = list(dict.fromkeys(self.columns["strategy"]))
        order = [s for s in self.meta.get("strategies", []) if s in seen]
        return order + [s for s in seen if s not in order]

    @property
    def multilabel(self) -> bool:
        return bool(self.meta.get("multilabel", False))


def load_results(path: str | Path) -> Results:
    table = read_parquet(path)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise BadInputError(f"{path}: not an alq simulate results file (no column {missing[0]!r})")
    if table.num_rows == 0:
        raise BadInputError(f"{path}: has no rows (did the simulation run any round?)")
    import pyarrow as pa

    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    if pa.types.is_map(table.schema.field("class_counts").type):  # name -> count; older runs: a list
        cols["class_counts"] = [None if c is None else [n for _, n in c] for c in cols["class_counts"]]
    return Results(columns=cols, meta=parquet_metadata(table.schema), path=shown(path))  # a staged copy: its URI


@dataclass
class Series:
    """One per-round quantity of one strategy: values[repeat_index, round_index] (nan = missing)."""

    rounds: np.ndarray  # int (K,)
    repeats: np.ndarray  # int (S,)
    values: np.ndarray  # float (S, K)

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            out = np.array([_nanmean(self.values[:, k]) for k in range(len(self.rounds))])
        return out

    def ci(self) -> np.ndarray:
        return np.array([mean_ci(self.values[:, k])[1] for k in range(len(self.rounds))])


def _nanmean(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def series(res: Results, strategy: str, column: str) -> Series:
    s = np.asarray(res.columns["strategy"], dtype=object)
    m = s == strategy
    rounds_all = np.asarray(res.columns["round"], dtype=np.int64)[m]
    reps_all = np.asarray(res.columns["repeat"], dtype=np.int64)[m]
    raw = [res.columns[column][i] for i in np.flatnonzero(m)]
    vals = np.array([math.nan if v is None else float(v) for v in raw], dtype=np.float64)
    rounds = np.unique(rounds_all)
    repeats = np.unique(reps_all)
    out = np.full((len(repeats), len(rounds)), np.nan)
    out[np.searchsorted(repeats, reps_all), np.searchsorted(rounds, rounds_all)] = vals
    return Series(rounds=rounds, repeats=repeats, values=out)


# -- labeling efficiency --------------------------------------------------------------------------
def labels_to_reach(n: np.ndarray, curve: np.ndarray, a: float) -> float:
    """Fewest labels after which the (mean) curve stays at or above ``a``: its last upward crossing.

    n, curve : (K,) labeled-set sizes (increasing) and curve values per round;
    the curve is linear between rounds. Returns ``n[0]`` when no round is
    below ``a`` and ``inf`` when the last round is below it.
    """
    n = np.asarray(n, dtype=np.float64)
    y = np.asarray(curve, dtype=np.float64)
    ok = ~np.isnan(y) & ~np.isnan(n)
    n, y = n[ok], y[ok]
    below = np.flatnonzero(y < a)
    if y.size == 0 or (below.size and below[-1] == y.size - 1):
        return math.inf
    if below.size == 0:
        return float(n[0])
    k = int(below[-1]) + 1  # y[k - 1] < a <= y[k], and every later round is >= a
    n0, n1, y0, y1 = n[k - 1], n[k], y[k - 1], y[k]
    return float(n0 + (a - y0) * (n1 - n0) / (y1 - y0))


def labeling_efficiency(n_base, curve_base, n_strat, curve_strat, a: float) -> float:
    """n_base(a) / n_strat(a); nan (undefined) when either mean curve never reaches ``a``."""
    nb = labels_to_reach(n_base, curve_base, a)
    ns = labels_to_reach(n_strat, curve_strat, a)
    return math.nan if math.isinf(nb) or math.isinf(ns) else nb / ns


def final_value(curve) -> float:
    """The last non-missing value of a mean curve: a* for the baseline's curve."""
    y = np.asarray(curve, dtype=np.float64)
    return float(y[~np.isnan(y)][-1])


def labels_saved(n_base, curve_base, n_strat, curve_strat) -> tuple[float, float, float, float]:
    """(a*, n_base(a*), n_strat(a*), 1 - n_strat(a*)/n_base(a*)), a* = the baseline's final value.

    a* is the baseline's final (last non-missing) mean value, not its maximum.
    Saved is nan when the strategy's mean curve does not end at or above a*
    (it needs more labels than the run bought).
    """
    a_star = final_value(curve_base)
    nb = labels_to_reach(n_base, curve_base, a_star)
    ns = labels_to_reach(n_strat, curve_strat, a_star)
    saved = math.nan if math.isinf(ns) else 1.0 - ns / nb
    return a_star, nb, ns, saved


# -- significance -------------------------------------------------------------------------------
@dataclass
class PenaltyMatrix:
    strategies: list[str]
    matrix: np.ndarray  # (S, S): matrix[i, j] = fraction of rounds where i is significantly better than j
    rounds: dict = field(default_factory=dict)  # (i, j) -> number of rounds compared
    tests: list = field(default_factory=list)  # per (i, j, round): t, p, n, winner


def penalty_matrix(values: dict[str, Series], alpha: float = 0.05) -> PenaltyMatrix:
    """Pairwise penalty matrix over strategies (Ash et al. 2020, DISTIL App. G).

    Over the selection rounds (round >= 1): round 0 is the seed set, which every strategy of a repeat
    shares, so it can never differ and would only dilute each share (a 6-round run is "share of 6 rounds").
    """
    names = list(values)
    s = len(names)
    mat = np.zeros((s, s))
    pm = PenaltyMatrix(strategies=names, matrix=mat)
    for i in range(s):
        for j in range(i + 1, s):
            a, b = values[names[i]], values[names[j]]
            rounds = np.intersect1d(a.rounds, b.rounds)
            rounds = rounds[rounds > 0]
            if rounds.size == 0:
                continue
            pm.rounds[(names[i], names[j])] = pm.rounds[(names[j], names[i])] = int(rounds.size)
            for rnd in rounds:
                xa = dict(zip(a.repeats.tolist(), a.values[:, np.searchsorted(a.rounds, rnd)].tolist()))
                xb = dict(zip(b.repeats.tolist(), b.values[:, np.searchsorted(b.rounds, rnd)].tolist()))
                common = [r for r in sorted(set(xa) & set(xb)) if not (math.isnan(xa[r]) or math.isnan(xb[r]))]
                t, p, _ = paired_ttest([xa[r] for r in common], [xb[r] for r in common])
                winner = None
                if not math.isnan(p) and p < alpha:
                    winner = names[i] if t > 0 else names[j]
                    if t > 0:
                        mat[i, j] += 1.0 / rounds.size
                    else:
                        mat[j, i] += 1.0 / rounds.size
                pm.tests.append({"a": names[i], "b": names[j], "round": int(rnd), "n": len(common),
                                 "t": t, "p": p, "winner": winner})
    return pm


# -- everything ---------------------------------------------------------------------------------
def default_metric(res: Results) -> str:
    return "map" if res.multilabel else "top1"


def _num(x) -> float | None:
    """JSON-friendly float: None for nan (inf stays inf, written as Infinity)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _list(a) -> list:
    return [_num(v) for v in np.asarray(a, dtype=np.float64).tolist()]


def sorted_class_distribution(res: Results, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """(rounds, mean over repeats of the labeled set's class proportions sorted ascending), shape (K, C)."""
    s = np.asarray(res.columns["strategy"], dtype=object)
    idx = np.flatnonzero(s == strategy)
    rounds_all = np.asarray(res.columns["round"], dtype=np.int64)[idx]
    rounds = np.unique(rounds_all)
    out = []
    for rnd in rounds:
        rows = idx[rounds_all == rnd]
        dists = []
        for i in rows:
            c = np.asarray(res.columns["class_counts"][i], dtype=np.float64)
            dists.append(np.sort(c / c.sum()) if c.sum() else np.sort(c))
        out.append(np.mean(dists, axis=0))
    return rounds, np.array(out)


def final_class_order(res: Results, strategy: str) -> list[str]:
    """Class names from least to most labeled in ``strategy``'s last round (mean share over repeats): the
    classes under the sorted proportions of that round."""
    names = [str(c) for c in (res.meta.get("classes") or [])]
    s = np.asarray(res.columns["strategy"], dtype=object)
    idx = np.flatnonzero(s == strategy)
    if not idx.size:
        return []
    rounds_all = np.asarray(res.columns["round"], dtype=np.int64)[idx]
    last = idx[rounds_all == rounds_all.max()]
    shares = []
    for i in last:
        c = np.asarray(res.columns["class_counts"][i], dtype=np.float64)
        shares.append(c / c.sum() if c.sum() else c)
    mean = np.mean(shares, axis=0)
    if len(names) != len(mean):
        names = [str(k) for k in range(len(mean))]
    return [names[k] for k in np.argsort(mean, kind="stable")]


def summarize(res: Results, *, metric: str | None = None, baseline: str = "random", alpha: float = 0.05,
              grid: int = 50) -> dict:
    """Every number of the report, JSON-ready."""
    metric = metric or default_metric(res)
    if metric not in METRICS:
        raise BadInputError(f"--metric={metric!r} must be one of {', '.join(METRICS)}")
    if metric not in res.columns or all(v is None for v in res.columns[metric]):
        raise BadInputError(f"{res.path}: results have no {metric!r} values"
                            + (" (top-5 needs >= 5 classes)" if metric == "top5" else "")
                            + (" (mAP/pooled AP are multi-label only)" if metric in ("map", "pooled_ap") else ""))
    names = res.strategies
    curves = {n: series(res, n, metric) for n in names}
    sizes = {n: series(res, n, "n_labeled") for n in names}
    out: dict = {"results": res.path, "metric": metric, "baseline": baseline if baseline in names else None,
                 "alpha": alpha, "strategies": names, "classes": len(res.meta.get("classes", []) or []),
                 "multilabel": res.multilabel, "run": {k: res.meta.get(k) for k in (
                     "repeats", "budgets", "seed_size", "seed", "seed_strategy", "head_mode", "train", "inputs",
                     "complete")},
                 "per_strategy": {}, "curves": {}, "efficiency": None, "penalty": None, "class_distribution": {}}
    for n in names:
        c, sz = curves[n], sizes[n]
        mean, ci = c.mean(), c.ci()
        last = len(c.rounds) - 1
        final_vals = c.values[:, last]
        fm, fci = mean_ci(final_vals)
        bal = {col: series(res, n, col) for col in ("imbalance_ratio", "empty_classes", "class_entropy",
                                                    "select_seconds", "train_seconds")}
        ir = bal["imbalance_ratio"].values
        sel_rounds = bal["imbalance_ratio"].rounds > 0
        ent_m, ent_ci = mean_ci(bal["class_entropy"].values[:, last])
        out["curves"][n] = {
            "round": c.rounds.tolist(), "n_labeled": _list(sz.mean()), metric: _list(mean), "ci95": _list(ci),
            "repeats": [int(np.count_nonzero(~np.isnan(c.values[:, k]))) for k in range(len(c.rounds))],
            "imbalance_ratio": _list(_mean_with_inf(ir)), "empty_classes": _list(bal["empty_classes"].mean()),
            "class_entropy": _list(bal["class_entropy"].mean()),
            "class_entropy_ci95": _list(bal["class_entropy"].ci()),
            "select_seconds": _list(bal["select_seconds"].mean()),
            "train_seconds": _list(bal["train_seconds"].mean()),
        }
        after_seed = ir[:, sel_rounds]
        out["per_strategy"][n] = {
            "repeats": int(np.count_nonzero(~np.isnan(final_vals))), "final_round": int(c.rounds[last]),
            "final_n_labeled": _num(sz.mean()[last]), "final": _num(fm), "final_ci95": _num(fci),
            "mean_imbalance_ratio": _num(_flat_mean_with_inf(after_seed)) if after_seed.size else None,
            "final_imbalance_ratio": _num(_mean_with_inf(ir)[last]),
            "final_empty_classes": _num(bal["empty_classes"].mean()[last]),
            "final_class_entropy": _num(ent_m), "final_class_entropy_ci95": _num(ent_ci),
            "mean_select_seconds": _num(_flat_nanmean(bal["select_seconds"].values[:, sel_rounds])),
            "mean_train_seconds": _num(_flat_nanmean(bal["train_seconds"].values[:, sel_rounds])),
            "efficiency_at_final": None, "labels_saved": None, "n_to_reach_target": None,
        }
        rounds, dist = sorted_class_distribution(res, n)
        out["class_distribution"][n] = {"round": rounds.tolist(), "sorted_proportions": dist.tolist(),
                                        "final_classes": final_class_order(res, n)}
    if baseline in names:
        out["efficiency"] = _efficiency(out, curves, sizes, names, baseline, metric, grid)
    mat = penalty_matrix(curves, alpha)
    out["penalty"] = {"strategies": mat.strategies, "matrix": mat.matrix.tolist(),
                      "rounds": {f"{a}|{b}": k for (a, b), k in mat.rounds.items()},
                      "column_mean": mat.matrix.mean(axis=0).tolist() if len(names) else [],
                      "tests": [{**t, "t": _num(t["t"]), "p": _num(t["p"])} for t in mat.tests],
                      "min_repeats": int(min((out["per_strategy"][n]["repeats"] for n in names), default=0))}
    from alq.stopping import stopping_summary  # where "kappa >= 0.99 for 2 rounds" would have stopped

    out["stopping"] = stopping_summary(res, metric)
    out["warnings"] = []
    if out["penalty"]["min_repeats"] < MIN_REPEATS_FOR_TESTS:
        out["penalty"]["warning"] = too_few_repeats(out["penalty"]["min_repeats"])
        out["warnings"].append(out["penalty"]["warning"])
    elif len(names) > 1 and mat.rounds and not mat.matrix.any():
        out["penalty"]["note"] = low_power(out["penalty"]["min_repeats"])
    return out


def low_power(repeats: int) -> str:
    """What an all-zero penalty matrix says, and does not, with enough repeats to test at all."""
    return (f"no strategy is significantly better than another in any round; with {repeats} repeats a paired "
            f"t-test has {repeats - 1} degrees of freedom and finds only large, consistent differences, so "
            "zeros are not evidence of a tie: more --repeats give the tests power")

def too_few_repeats(repeats: int) -> str:
    return (f"{repeats} repeat(s) per strategy are too few for significance: the paired t-tests "
            f"need >= {MIN_REPEATS_FOR_TESTS}, so the penalty matrix says nothing (zeros are not ties); "
            f"rerun `alq simulate` with --repeats {MIN_REPEATS_FOR_TESTS} or more")


def _efficiency(out: dict, curves, sizes, names, baseline, metric, grid) -> dict:
    nb, yb = sizes[baseline].mean(), curves[baseline].mean()
    finite = yb[~np.isnan(yb)]
    starts = [float(curves[n].mean()[0]) for n in names if not math.isnan(curves[n].mean()[0])]
    lo = min(starts) if starts else float(finite.min())
    hi = float(finite.max())
    targets = np.linspace(lo, hi, grid) if hi > lo else np.array([hi])
    eff = {}
    a_star = final_value(yb)
    for n in names:
        ns, ys = sizes[n].mean(), curves[n].mean()
        eff[n] = _list([labeling_efficiency(nb, yb, ns, ys, a) for a in targets])
        _, n_b, n_s, saved = labels_saved(nb, yb, ns, ys)
        ps = out["per_strategy"][n]
        ps["n_to_reach_target"] = None if math.isinf(n_s) else _num(n_s)  # None: never reached a*
        ps["labels_saved"] = _num(saved)
        ps["efficiency_at_final"] = _num(labeling_efficiency(nb, yb, ns, ys, a_star))
    return {"baseline": baseline, "target": a_star, "baseline_n_to_reach_target": _num(labels_to_reach(nb, yb, a_star)),
            "grid": targets.tolist(), "efficiency": eff}


def _mean_with_inf(values: np.ndarray) -> np.ndarray:
    """Per-round mean over repeats where inf (an empty class) propagates; nan = no value."""
    return np.array([_nanmean(values[:, k]) for k in range(values.shape[1])])


def _flat_mean_with_inf(values: np.ndarray) -> float:
    return _nanmean(values.reshape(-1))


def _flat_nanmean(values: np.ndarray) -> float:
    return _nanmean(values.reshape(-1))
