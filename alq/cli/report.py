"""``alq report``: tables, plots and Markdown from an `alq simulate` results file."""

from __future__ import annotations

import typer

from alq.cli._uris import URI_NOTE, Staged, path, where
from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit, log


def report_cmd(
    results: str = typer.Argument(..., parser=path, help="results.parquet written by `alq simulate`."),
    out: str | None = typer.Option(None, "--out", "-o", parser=path, help="Report folder: PNG plots, report.md, "
                                   "report.json (default: none, the tables are only printed)."),
    metric: str | None = typer.Option(None, "--metric", metavar="top1|top5|macro_accuracy|map|pooled_ap",
                                      help="Curve metric: top1 (default), top5, macro_accuracy, map (multi-label "
                                           "default) or pooled_ap."),
    baseline: str | None = typer.Option(None, "--baseline", help="Strategy that labels saved and labeling "
                                        "efficiency are measured against (default random, when the run has it)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the paired t-tests."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    import sys

    from rich.console import Console

    from alq.guard import Output, check_outputs
    from alq.report import build_report
    from alq.report.tables import render_rich

    results, out = where(results), where(out)
    check_outputs([Output(out, "report")], [("RESULTS", results)], overwrite=None)
    with Staged() as st:
        local_results = st.input(results, "results file")
        if baseline is not None:
            from alq.errors import BadInputError
            from alq.report.analysis import load_results

            names = load_results(local_results).strategies
            if baseline not in names:
                raise BadInputError(f"--baseline {baseline!r} is not a strategy of {results} "
                                    f"(it has: {', '.join(names)})")
        summary = build_report(local_results, st.output(out, "dir"), metric=metric, baseline=baseline or "random",
                               alpha=alpha)
    if out is not None:
        summary["output"] = str(out)  # the output-path key every command shares (`report_dir` kept)
    if not as_json:
        for w in summary.get("warnings", []):
            log(f"[yellow]warning:[/] {w}", quiet=quiet)

    def render(s: dict) -> None:
        console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 200)
        render_rich(s, console)
        if s.get("report_dir"):
            console.print(f"Report written to {s['report_dir']}/report.md ({len(s['plots'])} plots)")

    emit(summary, as_json=as_json, quiet=quiet, render=render)


report_cmd.__doc__ = (
    "Summarise a simulation: which strategy saves the most labels, and is the difference real?\n\n"
    "Prints final accuracy ± 95% CI per strategy, labels saved and labeling efficiency vs --baseline at the "
    "baseline's final accuracy, class balance and timings, and the pairwise penalty matrix (paired t-tests over "
    "repeats). With --out, also writes PNG plots (learning curves with 95% bands, labeling efficiency, penalty "
    "matrix, per-round class distributions, imbalance ratio and class entropy, selection vs training time), "
    "report.md embedding them, and report.json. --json prints every number.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq report runs/exp1/results.parquet --out runs/exp1/report"
)
app.command("report")(report_cmd)
