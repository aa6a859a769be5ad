"""The report's PNG plots, drawn with matplotlib's object API (Agg; no pyplot state).

Each function takes the summary dict of :func:`alq.report.analysis.summarize`
and writes one PNG atomically. One colour per strategy across all plots.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from alq.io import atomic_path

PLOTS = ("learning_curves", "labeling_efficiency", "penalty_matrix", "class_distribution", "class_balance", "timing")
LABELS = {"top1": "top-1 accuracy", "top5": "top-5 accuracy", "macro_accuracy": "macro accuracy",
          "map": "mAP", "pooled_ap": "pooled AP"}


def _colors(names: list[str]) -> dict:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _arr(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _log_axis(ax, values) -> None:
    """Log-scale y with plain-number tick labels (1, 2, 5, 10, ... rather than 2x10^0)."""
    from matplotlib import ticker

    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=np.float64)
    ax.set_yscale("log")
    narrow = v.size and np.log10(v.max() / v.min()) < 1.5
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def band(y: np.ndarray, ci: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """The 95% band y +- ci clipped to the metric's range [lo, hi] (t intervals of few repeats overshoot it)."""
    return np.clip(y - ci, lo, hi), np.clip(y + ci, lo, hi)


def round_axis(ax) -> None:
    """Rounds are whole numbers: integer ticks only (no 1.5)."""
    from matplotlib import ticker

    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))


def _few_repeats(s: dict) -> str:
    repeats = (s.get("run") or {}).get("repeats")
    return f" - only {repeats} repeat(s): bands are wide" if isinstance(repeats, int) and repeats < 3 else ""


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def learning_curves(s: dict, path: Path) -> Path:
    metric = s["metric"]
    col = _colors(s["strategies"])
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for n in s["strategies"]:
        c = s["curves"][n]
        x, y, ci = _arr(c["n_labeled"]), _arr(c[metric]), _arr(c["ci95"])
        y, ci = 100 * y, 100 * ci
        ax.plot(x, y, marker="o", ms=3, color=col[n], label=n)
        ok = ~np.isnan(ci)
        if ok.any():
            lo, hi = band(y[ok], ci[ok], 0.0, 100.0)
            ax.fill_between(x[ok], lo, hi, color=col[n], alpha=0.18, linewidth=0)
    ax.set_xlabel("labeled examples")
    ax.set_ylabel(f"{LABELS.get(metric, metric)} (%)")
    ax.set_title("Learning curves (mean and 95% CI over repeats)" + _few_repeats(s), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def labeling_efficiency(s: dict, path: Path) -> Path:
    col = _colors(s["strategies"])
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    eff = s["efficiency"]
    if eff is None:
        ax.text(0.5, 0.5, "no baseline strategy in the results:\nlabeling efficiency needs one (--baseline)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _save(fig, path)
    grid = _arr(eff["grid"])
    for n in s["strategies"]:
        ax.plot(grid * 100, _arr(eff["efficiency"][n]), color=col[n], label=n,
                linestyle="--" if n == eff["baseline"] else "-")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.axvline(eff["target"] * 100, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel(f"target {LABELS.get(s['metric'], s['metric'])} (%)")
    ax.set_ylabel(f"labeling efficiency: n_{eff['baseline']}(a) / n_strategy(a)")
    ax.set_title(f"Labeling efficiency vs {eff['baseline']} (dotted: {eff['baseline']}'s final value)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def penalty_matrix(s: dict, path: Path) -> Path:
    pm = s["penalty"]
    names = pm["strategies"]
    mat = np.array(pm["matrix"], dtype=np.float64).reshape(len(names), len(names))
    size = max(4.0, 1.5 + 0.7 * len(names))
    fig = Figure(figsize=(size + 1.5, size + 0.5), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(mat, cmap="Reds", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j:
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if mat[i, j] > 0.6 else "black")
    note = "" if not pm.get("warning") else f"\n(only {pm['min_repeats']} repeat(s): too few for significance)"
    ax.set_title(f"Penalty matrix\nrow significantly beats column:\nshare of rounds (paired t-test, "
                 f"alpha={s['alpha']}){note}", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path)


def class_distribution(s: dict, path: Path) -> Path:
    return _save(class_distribution_figure(s), path)


_MAX_CLASS_NAMES = 30  # more classes than this: the x axis says "classes", without names


def class_distribution_figure(s: dict) -> Figure:
    """BASE Fig. 4: per strategy, one histogram per round of the labeled set's class
    proportions, sorted from least to most labeled class. The right axis is the proportion scale
    (every round's histogram is drawn to it); the x axis names the classes of the last round."""
    from matplotlib import ticker

    names = s["strategies"]
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.6 * nrows), layout="constrained")
    col = _colors(names)
    for k, n in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        d = s["class_distribution"][n]
        dist = np.array(d["sorted_proportions"], dtype=np.float64)
        rounds = d["round"]
        if dist.size == 0:
            continue
        step = max(float(dist.max()), 1e-12) * 0.9
        x = np.arange(dist.shape[1])
        for r in range(len(rounds) - 1, -1, -1):  # round 0 on top, like BASE
            base = (len(rounds) - 1 - r) * step
            ax.fill_between(x, base, base + dist[r], step="mid", color=col[n], alpha=0.55, linewidth=0)
            ax.plot(x, base + dist[r], drawstyle="steps-mid", color="black", linewidth=0.4)
        ticks = [(len(rounds) - 1 - r) * step for r in range(len(rounds))]
        every = max(1, len(rounds) // 8)
        ax.set_yticks(ticks[::every], [str(rounds[r]) for r in range(len(rounds))][::every])
        ax.set_ylabel("round")
        top = float(dist.max())
        scale = ax.twinx()  # the proportion scale, read from the last round's baseline (0)
        scale.set_ylim(ax.get_ylim())
        scale.set_yticks([0.0, top / 2, top])
        scale.yaxis.set_major_formatter(ticker.PercentFormatter(xmax=1.0, decimals=0 if top >= 0.1 else 1))
        scale.set_ylabel("share of the labeled set", fontsize=8)
        classes = d.get("final_classes") or []
        if classes and len(classes) == dist.shape[1] and len(classes) <= _MAX_CLASS_NAMES:
            ax.set_xticks(x, classes, rotation=90 if max(len(c) for c in classes) > 3 else 0, fontsize=7)
            ax.set_xlabel(f"classes, least to most labeled (names: round {rounds[-1]})")
        else:
            ax.set_xlabel("classes, least to most labeled")
        ax.set_title(n, fontsize=10)
    fig.suptitle("Class distribution of the labeled set per round (proportions, mean over repeats)", fontsize=10)
    return fig


def class_balance(s: dict, path: Path) -> Path:
    names = s["strategies"]
    col = _colors(names)
    fig = Figure(figsize=(11, 4.3), layout="constrained")
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    gaps = False
    finite: list[float] = []
    for n in names:
        c = s["curves"][n]
        r = np.array(c["round"])
        ir = _arr(c["imbalance_ratio"])
        gaps |= bool(np.isinf(ir).any())
        ax1.plot(r, np.where(np.isinf(ir), np.nan, ir), marker="o", ms=3, color=col[n], label=n)
        finite += ir[np.isfinite(ir)].tolist()
        ent, ci = _arr(c["class_entropy"]), _arr(c["class_entropy_ci95"])
        ax2.plot(r, ent, marker="o", ms=3, color=col[n], label=n)
        ok = ~np.isnan(ci)
        if ok.any():
            lo, hi = band(ent[ok], ci[ok], 0.0, 1.0)
            ax2.fill_between(r[ok], lo, hi, color=col[n], alpha=0.18, linewidth=0)
    _log_axis(ax1, finite)
    ax1.set_xlabel("round")
    ax1.set_ylabel("imbalance ratio (most / least labeled class)")
    ax1.set_title("Class imbalance ratio" + (" (gaps: some class has no label)" if gaps else ""), fontsize=10)
    ax2.set_xlabel("round")
    ax2.set_ylabel("class entropy / log C")
    ax2.set_title("Normalised class entropy (1 = balanced)", fontsize=10)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        round_axis(ax)
    ax2.legend(fontsize=8)
    return _save(fig, path)


def timing(s: dict, path: Path) -> Path:
    names = s["strategies"]
    col = _colors(names)
    fig = Figure(figsize=(11, 4.3), layout="constrained")
    axes = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for ax, key, title in zip(axes, ("select_seconds", "train_seconds"), ("selection", "training")):
        positive = True
        shown: list[float] = []
        for n in names:
            c = s["curves"][n]
            r = np.array(c["round"])
            v = _arr(c[key])
            keep = r > 0 if key == "select_seconds" else np.ones(len(r), dtype=bool)
            ax.plot(r[keep], v[keep], marker="o", ms=3, color=col[n], label=n)
            positive &= bool(np.all(v[keep][~np.isnan(v[keep])] > 0))
            shown += v[keep][~np.isnan(v[keep])].tolist()
        if positive and shown:
            _log_axis(ax, shown)
        ax.set_xlabel("round")
        ax.set_ylabel("seconds (mean over repeats)")
        ax.set_title(f"{title} seconds per round", fontsize=10)
        ax.grid(alpha=0.3)
        round_axis(ax)
    axes[1].legend(fontsize=8)
    return _save(fig, path)


def render_all(s: dict, out_dir: Path) -> dict[str, Path]:
    """Write every plot into ``out_dir``; returns name -> path."""
    fns = {"learning_curves": learning_curves, "labeling_efficiency": labeling_efficiency,
           "penalty_matrix": penalty_matrix, "class_distribution": class_distribution,
           "class_balance": class_balance, "timing": timing}
    return {name: fns[name](s, out_dir / f"{name}.png") for name in PLOTS}
