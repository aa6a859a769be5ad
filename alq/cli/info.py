"""``alq info``: say what an alq file or directory holds, and check it."""

from __future__ import annotations

import json

import typer

from alq.cli._uris import URI_NOTE, where
from alq.cli._uris import path as path_type
from alq.cli.app import JSON_OPTION, app, emit

_MAX_ROWS = 25


def info_cmd(
    path: str = typer.Argument(..., parser=path_type, help="A pool dir, labels/selection/any alq Parquet, head .pt, clusters/ or "
                                "scores/ dir, or .npy."),
    verify: bool = typer.Option(False, "--verify", help="Re-check checksums and shapes; exit 2 naming the first "
                                "bad shard or file."),
    as_json: bool = JSON_OPTION,
) -> None:
    from alq.errors import StoreError
    from alq.store.inspect import describe

    summary = describe(where(path), verify=verify)  # a remote pool is read in place, other files from a copy
    emit(summary, as_json=as_json, render=_render)
    if verify and summary.get("problems"):
        raise StoreError(summary["problems"][0], hint=f"{len(summary['problems'])} problem(s); restore the file "
                         "or rebuild it")


info_cmd.__doc__ = (
    "Say what an alq file or directory holds: pool, labels, head, selection, clusters, scores.\n\n"
    "With --verify, re-check every shard's checksum and shape (pools) or the file's integrity, and exit 2 "
    "naming the first bad one, so a cron job can stop before using a damaged pool.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq info pool/ --verify\n\n"
    "  alq info labels.parquet --json"
)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        from alq.io import _json_default

        s = json.dumps(v, default=_json_default)
        return s if len(s) <= 200 else s[:197] + "..."
    return str(v)


def _render(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=f"{s['path']} ({s['kind']})", show_header=False, show_edge=False, pad_edge=False,
                  title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    skip = {"path", "kind", "class_counts", "problems", "summary", "columns"}
    if s["kind"] in ("labels", "selection"):
        skip.add("metadata")  # its useful fields are already shown one per row
    for k, v in s.items():
        if k not in skip and v not in (None, {}, []):
            table.add_row(k, _fmt(v))
    if "columns" in s:
        table.add_row("columns", ", ".join(f"{k}: {t}" for k, t in s["columns"].items()))
    if "summary" in s:
        for k, v in s["summary"].items():
            table.add_row(k, _fmt(v))
    console.print(table)
    counts = s.get("class_counts")
    if counts:
        ct = Table(show_edge=False, pad_edge=False)
        ct.add_column("class")
        ct.add_column("count", justify="right")
        total = s.get("rows") or sum(counts.values())
        for i, (c, n) in enumerate(counts.items()):
            if i == _MAX_ROWS:
                ct.add_row(f"... {len(counts) - _MAX_ROWS} more", "")
                break
            ct.add_row(str(c), f"{n} ({100 * n / max(total, 1):.1f}%)")
        console.print(ct)
    if "problems" in s:
        if s["problems"]:
            for p in s["problems"][:10]:
                console.print(f"[red]bad:[/] {p}")
        else:
            console.print("[green]verified:[/] every checksum and shape matches")
app.command("info")(info_cmd)
