"""``alq export``: a selection out to annotators, as CSV, JSON lines or Label Studio tasks."""

from __future__ import annotations

import typer

from alq.cli._uris import URI_NOTE, Staged, path, where
from alq.cli.app import ESCAPE_FORMULAS_OPTION, JSON_OPTION, QUIET_OPTION, app, emit, log

FORMATS = ("csv", "jsonl", "parquet", "label-studio")


def export_cmd(
    selection: str = typer.Argument(..., parser=path, help="Selection Parquet from `alq select`."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="File to write, or `-` for stdout."),
    fmt: str | None = typer.Option(None, "--format", "-f", metavar="csv|jsonl|parquet|label-studio", help="csv, jsonl, parquet or label-studio (a JSON list "
                                   "of tasks); default from --out's suffix (`-`: csv)."),
    pool: str | None = typer.Option(None, "--pool", parser=path, help="Pool the selection came from (for --with-columns)."),
    with_columns: str | None = typer.Option(None, "--with-columns", help="Comma-separated metadata columns the "
                                            "pool kept (e.g. url,file_path), added to each row or task."),
    escape_formulas: bool = ESCAPE_FORMULAS_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.errors import BadInputError
    from alq.export import export_selection

    if fmt is not None and fmt not in FORMATS:
        raise BadInputError(f"--format {fmt!r} must be one of {', '.join(FORMATS)}")
    if str(out) == "-" and as_json:
        raise BadInputError("--out - writes the rows to stdout; it cannot also carry the --json summary",
                            hint="write to a file, or drop --json")
    columns = [c.strip() for c in (with_columns or "").split(",") if c.strip()]
    selection, out, pool = where(selection), where(out), where(pool)
    with Staged() as st:
        summary = export_selection(st.input(selection, "selection"), st.output(out, "file"), fmt=fmt, pool=pool,
                                   columns=columns, escape_formulas=escape_formulas)
    summary["output"] = str(out)
    if str(out) == "-":
        log(f"exported {summary['rows']} rows -> stdout ({summary['format']})", quiet=quiet)
        return
    emit(summary, as_json=as_json, quiet=quiet, render=lambda s: typer.echo(
        f"exported {s['rows']} rows of {s['selection']} -> {s['output']} ({s['format']})"))


export_cmd.__doc__ = (
    "Write a selection in the format an annotation tool imports: CSV, JSON lines, or Label Studio tasks.\n\n"
    "Label Studio tasks are `{\"data\": {...}}` with the --with-columns fields (refer to them as $url in the "
    "labeling config) plus alq_id, alq_rank and alq_score; `alq labels import` reads Label Studio's JSON export "
    "back. JSON is strict (a non-finite score is null).\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq export batch.parquet --pool pool/ --with-columns url --format label-studio --out tasks.json\n\n"
    "  alq export batch.parquet --pool pool/ --with-columns file_path --out -\n\n"
    "  alq labels import ls-export.json --pool pool/ --out labels.parquet"
)
app.command("export")(export_cmd)
