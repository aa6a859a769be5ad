"""The report's tables, as rows of strings shared by the terminal (rich) and Markdown.

One formatting path for both, so the terminal, report.md and ``--json``
always show the same numbers.
"""

from __future__ import annotations

import math

from alq.report.plots import LABELS

DASH = "-"


def pct(x, ci=None) -> str:
    if x is None:
        return DASH
    s = f"{100 * x:.2f}"
    if ci is not None and not (isinstance(ci, float) and math.isnan(ci)):
        s += f" ± {100 * ci:.2f}"
    return s


def signed_pct(x) -> str:
    return DASH if x is None else f"{100 * x:+.1f}%"


def ratio(x) -> str:
    if x is None:
        return DASH
    return "inf" if math.isinf(x) else f"{x:.2f}"


def num(x, digits: int = 3) -> str:
    return DASH if x is None else f"{x:.{digits}f}"


def seconds(x) -> str:
    if x is None:
        return DASH
    return f"{x:.3g}"


def summary_table(s: dict) -> tuple[list[str], list[list[str]]]:
    metric = LABELS.get(s["metric"], s["metric"])
    base = s["baseline"]
    headers = ["strategy", "repeats", "labels", f"final {metric} % ± 95% CI",
               f"labels saved vs {base or 'baseline'}", "efficiency at a*", "imbalance ratio (mean)",
               "imbalance ratio (final)", "empty classes (final)", "class entropy (final)", "select s/round",
               "train s/round"]
    rows = []
    for n in s["strategies"]:
        p = s["per_strategy"][n]
        if base is None:
            saved = eff = DASH
        elif p["n_to_reach_target"] is None:
            saved = eff = "not reached"
        else:
            saved, eff = signed_pct(p["labels_saved"]), (DASH if p["efficiency_at_final"] is None
                                                        else f"{p['efficiency_at_final']:.2f}x")
        rows.append([n, str(p["repeats"]), f"{p['final_n_labeled']:.0f}", pct(p["final"], p["final_ci95"]),
                     saved, eff, ratio(p["mean_imbalance_ratio"]), ratio(p["final_imbalance_ratio"]),
                     num(p["final_empty_classes"], 1), num(p["final_class_entropy"]),
                     seconds(p["mean_select_seconds"]), seconds(p["mean_train_seconds"])])
    return headers, rows


def penalty_table(s: dict) -> tuple[list[str], list[list[str]]]:
    names = s["penalty"]["strategies"]
    mat = s["penalty"]["matrix"]
    headers = ["row beats column"] + names
    rows = [[a] + [DASH if i == j else f"{mat[i][j]:.2f}" for j in range(len(names))] for i, a in enumerate(names)]
    return headers, rows


def target_line(s: dict) -> str:
    eff = s["efficiency"]
    if eff is None:
        return "No baseline strategy in the results: labels saved and labeling efficiency are not computed."
    metric = LABELS.get(s["metric"], s["metric"])
    n = eff["baseline_n_to_reach_target"]
    return (f"Target: {eff['baseline']}'s final {metric} a* = {pct(eff['target'])}%, reached for good by "
            f"{eff['baseline']} at {n:.0f} labels. Labels saved = 1 - n_strategy(a*) / n_{eff['baseline']}(a*); "
            f"efficiency = n_{eff['baseline']}(a*) / n_strategy(a*), where n_X(a) = the fewest labels after which "
            f"X's mean curve stays at or above a (its last upward crossing, linear interpolation between rounds; "
            f"a curve that ends below a* has not reached it).")


def render_rich(s: dict, console) -> None:
    for table in _rich_tables(*summary_table(s), title=f"alq report: {s['results']}", console=console):
        console.print(table)
    console.print(target_line(s))
    for table in _rich_tables(*penalty_table(s), title=f"Penalty matrix: share of {_rounds_note(s)} selection "
                              f"rounds in which row is significantly better (paired t-test, alpha={s['alpha']})",
                              console=console):
        console.print(table)
    if s["penalty"].get("note"):
        console.print(s["penalty"]["note"], markup=False)
    if s.get("stopping"):  # alq.stopping: the round where the stopping rule fires, per strategy
        from alq.stopping import stopping_table

        for table in _rich_tables(*stopping_table(s), title=f"Stopping rule: {s['stopping']['rule']}", console=console):
            console.print(table)
    for w in s.get("warnings", []):
        console.print(w, markup=False)


_HEADER_WIDTH = 14  # headers wrap to this width (or their column's widest cell): tables stay predictable


def _widths(headers: list[str], rows: list[list[str]]) -> list[int]:
    """Each column's width: its widest cell, its header's longest word, or 14 for the header's lines."""
    return [max([len(r[i]) for r in rows] + [max(len(w) for w in h.split()), min(len(h), _HEADER_WIDTH)])
            for i, h in enumerate(headers)]


def _table(headers: list[str], rows: list[list[str]], cols: list[int], widths: list[int], title: str):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i in cols:  # a fixed width: cells never wrap (numbers stay on one line), headers wrap to it
        t.add_column(headers[i], justify="left" if i == 0 else "right", min_width=widths[i], max_width=widths[i])
    for r in rows:
        t.add_row(*(r[i] for i in cols))
    return t


def column_groups(headers: list[str], rows: list[list[str]], width: int) -> list[list[int]]:
    """Column indices split into groups whose tables each fit ``width`` characters, every group starting
    with column 0 (the strategy): a narrow terminal gets two tables, never a cut one."""
    widths = _widths(headers, rows)
    cost = [w + 3 for w in widths]  # a column: its width, one space either side, one border
    groups, cur, used = [], [0], 1 + cost[0]
    for i in range(1, len(headers)):
        if len(cur) > 1 and used + cost[i] > width:
            groups.append(cur)
            cur, used = [0], 1 + cost[0]
        cur.append(i)
        used += cost[i]
    groups.append(cur)
    return groups


def _rich_tables(headers: list[str], rows: list[list[str]], *, title: str, console) -> list:
    """The table as rich tables that fit the console (see :func:`column_groups`)."""
    widths = _widths(headers, rows)
    groups = column_groups(headers, rows, console.width)
    return [_table(headers, rows, cols, widths, title + (f" ({g + 1}/{len(groups)})" if len(groups) > 1 else ""))
            for g, cols in enumerate(groups)]


def _rounds_note(s: dict) -> str:
    counts = sorted(set(s["penalty"]["rounds"].values()))
    return "/".join(map(str, counts)) if counts else "0"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def esc(x: str) -> str:
        return x.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(s: dict, plots: dict) -> str:
    run = s["run"] or {}
    budgets = run.get("budgets") or []
    metric = LABELS.get(s["metric"], s["metric"])
    parts = ["# Active-learning simulation report\n",
             f"Results: `{s['results']}`" + ("" if run.get("complete", True) else " (run not complete)") + "\n",
             f"- strategies: {', '.join(s['strategies'])}",
             f"- repeats: {run.get('repeats')}; seed set: {run.get('seed_size')} "
             f"({run.get('seed_strategy')}); rounds: {len(budgets)}, labels per round: "
             f"{', '.join(map(str, sorted(set(budgets))))}",
             f"- head: {run.get('head_mode')} each round; classes: {s['classes']}"
             + ("; multi-label" if s["multilabel"] else ""),
             f"- metric: {metric}\n",
             *[f"> **{w}**\n" for w in s.get("warnings", [])],
             "## Summary\n", markdown_table(*summary_table(s)), "", target_line(s), "",
             "## Learning curves\n", "![learning curves](learning_curves.png)\n",
             "## Labeling efficiency\n", "![labeling efficiency](labeling_efficiency.png)\n",
             "## Significance: pairwise penalty matrix\n",
             f"Cell (row, column) = share of the {_rounds_note(s)} selection rounds (the seed round, shared by "
             f"every strategy, is not counted) in which row has a significantly higher "
             f"{metric} than column (two-tailed paired t-test over repeats, alpha = {s['alpha']}).\n",
             markdown_table(*penalty_table(s)), "",
             *([f"> **{s['penalty']['warning']}**\n"] if s["penalty"].get("warning") else []),
             *([f"> {s['penalty']['note']}\n"] if s["penalty"].get("note") else []),
             "![penalty matrix](penalty_matrix.png)\n",
             "## Class balance\n",
             "Class distribution of the labeled set per round, sorted from least to most labeled class "
             "(as in BASE, Fig. 4):\n", "![class distribution](class_distribution.png)\n",
             "![class balance](class_balance.png)\n",
             "## Time\n", "![timing](timing.png)\n"]
    if s.get("stopping"):  # alq.stopping
        from alq.stopping import STOPPING_NOTE, stopping_table

        parts += ["## Stopping rule\n", STOPPING_NOTE.format(rule=s["stopping"]["rule"]) + "\n",
                  markdown_table(*stopping_table(s)), ""]
    return "\n".join(parts)
