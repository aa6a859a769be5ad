"""``alq labels``: import annotator output, summarise labels, track ids still out for labeling."""

from __future__ import annotations

import typer

from alq.cli._uris import URI_NOTE, Staged, path, remote_lock, where, where_all
from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit

labels_app = typer.Typer(
    name="labels",
    help=(
        "Labels: import annotator output into the labels file, show per-class counts, list pending ids.\n\n"
        "Example:\n\n"
        "  alq labels import batch3_done.csv --pool pool/ --out labels.parquet\n\n"
        "  alq labels show labels.parquet\n\n"
        "  alq labels pending --sent batch3.parquet --sent batch4.parquet --labels labels.parquet --out pending.parquet"
        "\n\n" + URI_NOTE
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def import_cmd(
    files: list[str] = typer.Argument(..., parser=path, help="Annotator files: CSV/TSV (header with id,label), Parquet, "
                                     "or a Label Studio JSON export (.json)."),
    pool: str = typer.Option(..., "--pool", "-p", parser=path, help="Pool directory: every id must be in it."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Labels file to create or merge into (written atomically)."),
    on_conflict: str = typer.Option("error", "--on-conflict", help="An id already labeled differently: error, "
                                    "keep-old or take-new."),
    id_column: str | None = typer.Option(None, "--id-column", help="Id column (or Label Studio data field). Default: "
                                         "alq_id when present, else id, else the pool's own id column name "
                                         "(e.g. image_id, as `alq embed` read it)."),
    label_column: str = typer.Option("label", "--label-column", help="Label column name."),
    from_name: str | None = typer.Option(None, "--from-name", help="Label Studio: the <Choices> control whose "
                                         "choice is the label (needed when a project has several; for CSV and "
                                         "JSON-MIN exports, its column)."),
    classes: str | None = typer.Option(None, "--classes", help="Allowed classes, comma-separated (cat,dog,bird): "
                                       "a label outside them is an error. Without it a new class only warns."),
    classes_from: str | None = typer.Option(None, "--classes-from", parser=path, help="Allowed classes: those of "
                                            "this head (.pt from `alq train`)."),
    delimiter: str | None = typer.Option(None, "--delimiter", help="Multi-label: labels in one string split on "
                                            "this (e.g. '|'). List columns in Parquet need no flag."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and report; write nothing."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq import fs
    from alq.errors import BadInputError
    from alq.guard import Output, check_outputs
    from alq.store import open_pool
    from alq.store.annotations import import_labels

    files, pool, out = where_all(files), where(pool), where(out)
    check_outputs([] if dry_run else [Output(out, "labels")], [*(("FILES", f) for f in files), ("--pool", pool)],
                  overwrite=None)
    if classes is not None and classes_from is not None:
        raise BadInputError("--classes and --classes-from exclude each other")
    allowed = [c.strip() for c in classes.split(",") if c.strip()] if classes is not None else None

    with remote_lock(None if dry_run else out, "`alq labels import`"), Staged() as st:
        local_files = st.inputs(files, "annotation file")
        if dry_run and fs.is_remote(out) and fs.exists(out):
            local_out = st.input(out, "labels file")  # read to validate the merge, never written back
        else:
            local_out = st.output(out, "file", resume=True)  # merged into: the current file comes first
        if classes_from is not None:
            from alq.model.head import load_head

            allowed = list(load_head(st.input(where(classes_from), "head")).classes)
        summary = import_labels(local_files, open_pool(pool), local_out, on_conflict=on_conflict,
                                id_column=id_column, label_column=label_column, delimiter=delimiter,
                                dry_run=dry_run, pool_path=pool, from_name=from_name, classes=allowed)
    summary["output"] = str(out)  # the output-path key every command shares (`out` kept)
    for line in summary["warnings"]:  # shown even with -q / --json: an unattended job's log must carry them
        typer.echo(f"warning: {line}", err=True)

    def render(s: dict) -> None:
        verb = "would write" if dry_run else "wrote"
        pending = f"; {s['not_annotated']} tasks not annotated yet" if s["not_annotated"] else ""
        typer.echo(f"{verb} {out}: {s['total']} labeled ids ({s['added']} new, {s['changed']} changed, "
                   f"{s['unchanged']} unchanged, {s['kept_old']} kept old) in {s['classes']} classes{pending}")
        _render_counts(s["class_counts"], s["total"], s["multilabel"])

    emit(summary, as_json=as_json, quiet=quiet, render=render)


import_cmd.__doc__ = (
    "Import annotator output into the labels file (merged atomically).\n\n"
    "Labels may be integers or strings; multi-label rows are a Parquet list column or a delimited string "
    "(--delimiter). A Label Studio export (JSON, JSON-MIN or CSV, of tasks from `alq export --format "
    "label-studio`) gives each annotated task's choice (several choices: multi-label), keyed by `alq_id` (its `id` "
    "is Label Studio's task id, never used); tasks not yet annotated are counted and stay pending. A project with "
    "several <Choices> controls needs --from-name. A class the labels file did not hold before is imported with a "
    "warning; --classes (or --classes-from HEAD) makes it an error. "
    "Ids not in the pool, conflicting labels (unless --on-conflict says otherwise), empty files "
    "and missing columns are refused with one line naming the file and line; nothing is written then.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq labels import batch1_done.csv batch2_done.parquet --pool pool/ --out labels.parquet\n\n"
    "  alq labels import tags.csv --delimiter '|' --pool pool/ --out labels.parquet --on-conflict take-new --json\n\n"
    "  alq labels import project-3-at-2026-12-01.csv --from-name choice --classes cat,dog,bird --pool pool/ "
    "--out labels.parquet"
)


def show_cmd(
    labels: str = typer.Argument(..., parser=path, help="Labels file (from `alq labels import`)."),
    pool: str | None = typer.Option(None, "--pool", "-p", parser=path, help="Also check ids against this pool and report "
                                        "the labeled fraction."),
    as_json: bool = JSON_OPTION,
) -> None:
    from alq.store import open_pool
    from alq.store.annotations import summarize_labels

    pool = where(pool)
    with Staged() as st:
        summary = summarize_labels(st.input(where(labels), "labels file"), open_pool(pool) if pool else None)

    def render(s: dict) -> None:
        head = f"{s['path']}: {s['rows']} labeled ids, {s['classes']} classes" + (" (multi-label)" if s["multilabel"] else "")
        if "labeled_fraction" in s:
            head += f", {100 * s['labeled_fraction']:.2f}% of the pool's {s['pool_count']} rows"
        typer.echo(head)
        _render_counts(s["class_counts"], s["rows"], s["multilabel"])

    emit(summary, as_json=as_json, render=render)


show_cmd.__doc__ = (
    "Show a labels file: per-class counts and shares.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq labels show labels.parquet --pool pool/\n\n"
    "  alq labels show labels.parquet --json"
)


def pending_cmd(
    sent: list[str] = typer.Option(..., "--sent", parser=path, help="Ids sent to annotators: a selection Parquet (`id` column) "
                                    "or CSV/text, one per line. Repeatable."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Pending-ids Parquet to write (for `alq select --pending`)."),
    labels: str | None = typer.Option(None, "--labels", parser=path, help="Labels file: ids labeled here are no longer pending."),
    pool: str | None = typer.Option(None, "--pool", "-p", parser=path, help="Check every sent id is in this pool."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.guard import Output, check_outputs
    from alq.store import open_pool
    from alq.store.annotations import pending_ids, write_pending

    sent, out, labels, pool = where_all(sent), where(out), where(labels), where(pool)
    check_outputs([Output(out, "pending")], [*(("--sent", s) for s in sent), ("--labels", labels), ("--pool", pool)],
                  overwrite=None)

    with Staged() as st:
        ids, files, summary = pending_ids(st.inputs(sent, "--sent file"), st.input(labels, "labels file"),
                                          open_pool(pool) if pool else None)
        write_pending(st.output(out, "file"), ids, files, summary)
    summary["out"] = summary["output"] = str(out)
    emit(summary, as_json=as_json, quiet=quiet, render=lambda s: typer.echo(
        f"wrote {out}: {s['pending']} ids still out for labeling ({s['sent_unique']} sent, {s['labeled']} labeled)"))


pending_cmd.__doc__ = (
    "Write the ids sent for labeling whose labels have not come back yet.\n\n"
    "The nightly bookkeeping: every selection sent out (--sent, repeatable) minus the ids in the labels file. "
    "Pass the result to `alq select --pending` so those rows are not selected twice.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq labels pending --sent batch1.parquet --sent batch2.parquet --labels labels.parquet --out pending.parquet"
)


def _render_counts(counts: dict, total: int, multilabel: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    table.add_column("class")
    table.add_column("count", justify="right")
    table.add_column("share" + (" of rows" if multilabel else ""), justify="right")
    for c, n in counts.items():
        table.add_row(str(c), str(n), f"{100 * n / max(total, 1):.1f}%")
    Console(highlight=False).print(table)


labels_app.command("import")(import_cmd)
labels_app.command("show")(show_cmd)
labels_app.command("pending")(pending_cmd)
app.add_typer(labels_app, name="labels")
