"""``alq select``: choose the next batch to send to annotators."""

from __future__ import annotations

import typer

from alq.cli._strategies import catalog, check_strategy_options
from alq.cli._uris import URI_NOTE, Staged, path, where, where_all
from alq.cli.app import (  # noqa: I001
    ENGINE_OPTION,
    ESCAPE_FORMULAS_OPTION,
    JSON_OPTION,
    QUIET_OPTION,
    RAY_ADDRESS_OPTION,
    RAY_GPUS_OPTION,
    app,
    emit,
    engine_options,
    log,
    parse_options,
    progress_bar,
    warn,
)
from alq.errors import BadInputError

_ON_RAY = {
    "sharded": "ray: per-shard tasks",
    "partitioned": "ray: one task per partition",
    "driver": "ray: not distributed; runs on the driver after any distributed scoring pass",
}


def _strategy_help() -> str:
    lines = [f"[bold]{name}[/]: {cls.help} [dim]({_ON_RAY.get(cls.distributed, 'ray: driver')}"
             + ("; simulation only" if cls.simulation_only else "") + ")[/]"
             for name, cls in catalog().items()]
    return "\n\n".join(lines)


def select_cmd(
    pool: str = typer.Argument(..., parser=path, help="Pool directory (from `alq embed`)."),
    strategy: str = typer.Option(..., "--strategy", "-s", metavar="NAME", help="Strategy name (see Strategies "
                                 "above)."),
    budget: int = typer.Option(..., "--budget", "-b", help="Number of rows to select."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Selection to write (atomically): Parquet, or CSV / "
                            "JSON lines when the name ends in .csv / .jsonl; `-` writes CSV to stdout."),
    with_columns: str | None = typer.Option(None, "--with-columns", help="Comma-separated metadata columns the pool "
                                            "kept from the input (`alq embed`), e.g. file_path,url, added to the "
                                            "selection."),
    where_sql: str | None = typer.Option(None, "--where", help="SQL condition over the pool's kept metadata columns "
                                         "and id (DuckDB): only rows where it is true may be selected, e.g. "
                                         "--where \"camera = 'front' AND captured_at >= '2026-11-01'\"."),
    balance_by: str | None = typer.Option(None, "--balance-by", help="Spread the batch evenly over the values of a "
                                          "pool column (e.g. --balance-by camera), or of the head's predicted class "
                                          "(--balance-by predicted; column:NAME for a column called predicted); "
                                          "each value's share is the strategy's top rows among that value's rows "
                                          "(one pass per value; one in all for margin, entropy, least-confidence)."),
    head: str | None = typer.Option(None, "--head", parser=path, help="Head file from `alq train` (strategies that score)."),
    labels: str | None = typer.Option(None, "--labels", parser=path, help="Labels file: these rows are never selected."),
    pending: list[str] = typer.Option([], "--pending", parser=path, help="Ids still out for labeling (Parquet with `id`, or "
                                       "CSV/text one per line; e.g. earlier selections). Repeatable."),
    clusters: str | None = typer.Option(None, "--clusters", parser=path, help="Cluster directory from `alq cluster`."),
    dedup: str | None = typer.Option(None, "--dedup", parser=path, help="Near-duplicate groups from `alq dedup`: at "
                                     "most one row per group, none from a group that has a labeled or pending row. "
                                     "Example: --dedup dups/"),
    min_distance: float | None = typer.Option(None, "--min-distance", metavar="D", help="No two picks, and no pick "
                                              "and labeled or pending row, closer than D (Euclidean on the stored "
                                              "vectors), applied greedily to the strategy's ranking. Example: "
                                              "--min-distance 0.1"),
    scores: str | None = typer.Option(None, "--scores", parser=path, help="Scores directory from `alq score`: reused when "
                                          "fresh (same pool and head), else recomputed from the head."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same inputs + seed = same selection."),
    round_: int | None = typer.Option(None, "--round", help="Round number recorded in the output's `round` "
                                      "column (default: none, the column is left empty)."),
    allow_smaller: bool = typer.Option(False, "--allow-smaller", help="Take every unlabeled row if fewer than --budget."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --out replace a file that is not a selection."),
    escape_formulas: bool = ESCAPE_FORMULAS_OPTION,
    force_head: bool = typer.Option(False, "--force-head", help="Use a --head trained on another pool of the same "
                                    "dimension (refused otherwise; a head from before rows were appended is fine)."),
    candidates_ratio: str | None = typer.Option(None, "--candidates-ratio", metavar="auto|R",
                                                help="cluster-margin: k_m = r x budget candidates; auto (default) "
                                                     "= 0.1 x unlabeled / budget within [1.25, 10]."),
    partitions: int | None = typer.Option(None, "--partitions", help="partitioned-*: number of random partitions."),
    aggregate: str | None = typer.Option(None, "--aggregate", metavar="min|mean", help="Multi-label margin aggregate: min (default) or mean."),
    option: list[str] = typer.Option([], "--option", help="Extra strategy option key=value (repeatable)."),
    engine: str = ENGINE_OPTION,
    ray_address: str | None = RAY_ADDRESS_OPTION,
    ray_gpus_per_task: float = RAY_GPUS_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.guard import Output, check_outputs
    from alq.select import SelectRequest, run_select

    pool, out, head, labels, clusters, scores, dedup = map(where, (pool, out, head, labels, clusters, scores, dedup))
    pending = where_all(pending)
    check_outputs([Output(out, "selection")], [("POOL", pool), ("--head", head), ("--labels", labels),
                  ("--clusters", clusters), ("--scores", scores), ("--dedup", dedup), *(("--pending", p) for p in pending)],
                  overwrite=overwrite)
    options = parse_options(option)
    options.update({k: v for k, v in {"candidates_ratio": candidates_ratio, "partitions": partitions,
                                      "aggregate": aggregate}.items() if v is not None})
    check_strategy_options([strategy], options, flags=_FLAGS)
    to_stdout = str(out) == "-"
    if to_stdout and as_json:
        raise BadInputError("--out - writes the selection to stdout; it cannot also carry the --json summary",
                            hint="write the selection to a file, or drop --json")
    with Staged() as st:
        req = SelectRequest(pool=pool, strategy=strategy, budget=budget, seed=seed, head=st.input(head, "head file"),
                            labels=st.input(labels, "labels file"), pending=st.inputs(pending, "--pending file"),
                            clusters=clusters, options=options, dedup=dedup, min_distance=min_distance,
                            allow_smaller=allow_smaller, round=round_, engine=engine,
                            engine_options=engine_options(engine, ray_address, ray_gpus_per_task),
                            scores=scores,  # read in place, local or remote
                            force_head=force_head, escape_formulas=escape_formulas,
                            with_columns=[c.strip() for c in (with_columns or "").split(",") if c.strip()],
                            where=where_sql, balance_by=balance_by)
        with progress_bar(quiet=quiet) as progress:
            _, summary = run_select(req, st.output(out, "file"), progress=progress)
    if not to_stdout:
        summary["output"] = str(out)
    if summary.get("head_warning"):  # a warning a cron log must keep: printed even under -q and --json
        warn(summary["head_warning"])
    if to_stdout:  # stdout holds the rows: the human summary goes to stderr
        log(f"{summary['strategy']}: selected {summary['selected']:,} rows -> stdout ({summary['format']})",
            quiet=quiet)
        return
    emit(summary, as_json=as_json, quiet=quiet, render=_render)


_FLAGS = {"candidates_ratio": "--candidates-ratio", "partitions": "--partitions", "aggregate": "--aggregate"}


def _render(s: dict) -> None:
    """Human summary on stdout: what was selected, then the batch's predicted-class histogram."""
    where = f" -> {s['output']}" if s.get("output") else ""
    typer.echo(f"{s['strategy']}: selected {s['selected']:,} of {s['unlabeled']:,} unlabeled rows "
               f"(pool {s['pool_rows']:,}, labeled {s['labeled']:,}, pending {s['pending']:,}) "
               f"in {s['seconds']:.2f} s{where}")
    if s.get("budget") != s.get("budget_requested"):
        typer.echo(f"budget lowered from {s['budget_requested']:,} to {s['budget']:,} (--allow-smaller)")
    from alq.cli._render import fmt_value

    if s.get("where"):
        typer.echo(f"--where matched {s['where_matched']:,} pool rows; {s['where_excluded']:,} unlabeled rows "
                   "outside it were excluded")
    for key in ("scores", "head_note"):  # head_warning: on stderr (warn)
        if key in s:
            typer.echo(f"{key}: {fmt_value(s[key])}")
    for key, title in (("predicted_class_histogram", "predicted class of the batch"),
                       ("base_class_histogram", "class whose turn took each row (BASE)"),
                       ("balance_histogram", f"rows per value of --balance-by {s.get('balance_by')}")):
        hist = s.get(key) or {}
        if hist:
            width = max(len(str(c)) for c in hist)
            top = max(hist.values())
            typer.echo(f"{title}:")
            for cls, n in hist.items():
                typer.echo(f"  {cls:>{width}} {n:6d} {'#' * max(1, round(30 * n / top))}")


select_cmd.__doc__ = (
    "Select the next batch: BUDGET unlabeled, non-pending rows, ranked.\n\n"
    "Labeled rows (--labels) and rows still out for labeling (--pending) are never selected. "
    "Writes a Parquet with id, rank, score, strategy, budget, seed, round and predicted class "
    "(provenance in its metadata); the meaning of score depends on the strategy (below). "
    "Ties rank the smaller pool row first. A cron job keeps earlier selections that are not yet labeled "
    "and passes them as --pending.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq select pool/ --head head.pt --labels labels.parquet --pending sent.parquet "
    "--strategy margin --budget 10000 --out batch.parquet --json\n\n"
    "  alq select pool/ --head head.pt --labels labels.parquet --strategy margin --budget 10000 "
    "--where \"camera = 'front' AND captured_at >= '2026-11-01'\" --balance-by predicted --out batch.parquet\n\n"
    "Strategies:\n\n" + _strategy_help()
)
app.command("select")(select_cmd)
