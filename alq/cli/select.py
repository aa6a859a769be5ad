"""``alq select``: choose the next batch to send to annotators."""

from __future__ import annotations

from pathlib import Path

import typer

from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit, parse_options, progress_bar
from alq.strategies import load_all


def _strategy_help() -> str:
    lines = [f"[bold]{name}[/]: {cls.help}" + (" [dim](simulation only)[/]" if cls.simulation_only else "")
             for name, cls in sorted(load_all().items())]
    return "\n\n".join(lines)


def select_cmd(
    pool: Path = typer.Argument(..., help="Pool directory (from `alq embed`)."),
    strategy: str = typer.Option(..., "--strategy", "-s", help="Strategy name (listed below)."),
    budget: int = typer.Option(..., "--budget", "-b", help="Number of rows to select."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Selection Parquet to write (atomically)."),
    head: Path | None = typer.Option(None, "--head", help="Head file from `alq train` (strategies that score)."),
    labels: Path | None = typer.Option(None, "--labels", help="Labels file: these rows are never selected."),
    pending: list[Path] = typer.Option([], "--pending", help="Ids still out for labeling (Parquet with `id`, or "
                                       "CSV/text one per line; e.g. earlier selections). Repeatable."),
    clusters: Path | None = typer.Option(None, "--clusters", help="Cluster directory from `alq cluster`."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same inputs + seed = same selection."),
    round_: int | None = typer.Option(None, "--round", help="Round number recorded in the output."),
    allow_smaller: bool = typer.Option(False, "--allow-smaller", help="Take every unlabeled row if fewer than --budget."),
    candidates_ratio: float | None = typer.Option(None, "--candidates-ratio", help="cluster-margin: k_m = r x budget (default 10)."),
    partitions: int | None = typer.Option(None, "--partitions", help="partitioned-*: number of random partitions."),
    aggregate: str | None = typer.Option(None, "--aggregate", help="Multi-label margin aggregate: min (default) or mean."),
    option: list[str] = typer.Option([], "--option", help="Extra strategy option key=value (repeatable)."),
    engine: str = typer.Option("local", "--engine", help="local or ray."),
    ray_address: str | None = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS", help="Ray cluster address."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.select import SelectRequest, run_select

    options = parse_options(option)
    options.update({k: v for k, v in {"candidates_ratio": candidates_ratio, "partitions": partitions,
                                      "aggregate": aggregate}.items() if v is not None})
    engine_options = {"address": ray_address} if engine == "ray" and ray_address else {}
    req = SelectRequest(pool=pool, strategy=strategy, budget=budget, seed=seed, head=head, labels=labels,
                        pending=list(pending), clusters=clusters, options=options, allow_smaller=allow_smaller,
                        round=round_, engine=engine, engine_options=engine_options)
    with progress_bar(quiet=quiet) as progress:
        _, summary = run_select(req, out, progress=progress)
    emit(summary, as_json=as_json, quiet=quiet)


select_cmd.__doc__ = (
    "Select the next batch: BUDGET unlabeled, non-pending rows, ranked.\n\n"
    "Labeled rows (--labels) and rows still out for labeling (--pending) are never selected. "
    "Writes a Parquet with id, rank, score, strategy, budget, seed, round and predicted class.\n\n"
    "Example:\n\n"
    "  alq select pool/ --head head.pt --labels labels.parquet --pending sent.parquet "
    "--strategy margin --budget 10000 --out batch.parquet --json\n\n"
    "Strategies:\n\n" + _strategy_help()
)
app.command("select")(select_cmd)
