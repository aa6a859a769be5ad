"""Human rendering of a command's summary: a short two-column table with rounded numbers.

The default for commands without their own rendering (train, cluster,
simulate, synth, transform...): one row per field, floats to 4 significant
digits, lists and dicts as their values (``a=1, b=2``; nested ones in
brackets), long lists cut after their first items with the count. ``--json``
still carries every number in full.
"""

from __future__ import annotations

import sys

_MAX_ITEMS = 6  # dicts of dicts up to twice this are one row per entry (key_values)
_MAX_LIST = 12  # list items shown before "... (N items)"


def fmt_value(v, *, nested: bool = False) -> str:
    """A short, rounded rendering of one summary value: its values, never a Python repr."""
    if isinstance(v, bool) or v is None:
        return str(v).lower() if isinstance(v, bool) else "-"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        if not v:
            return "[]" if nested else "-"
        text = ", ".join(fmt_value(x, nested=True) for x in v[:_MAX_LIST])
        if len(v) > _MAX_LIST:
            text += f", ... ({len(v):,} items)"
        return f"[{text}]" if nested else text
    if isinstance(v, dict):
        if not v:
            return "()" if nested else "-"
        text = ", ".join(f"{k}={fmt_value(x, nested=True)}" for k, x in v.items())
        return f"({text})" if nested else text
    return str(v)


def key_values(summary: dict, *, file=None) -> None:
    """Print ``summary`` as a borderless key/value table on stdout (or ``file``)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, highlight=False, soft_wrap=False)
    table = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in summary.items():
        if value in (None, {}, []):
            continue
        if isinstance(value, dict) and len(value) <= 2 * _MAX_ITEMS and any(isinstance(v, dict) for v in value.values()):
            for sub, v in value.items():  # e.g. simulate's final: one row per strategy
                table.add_row(f"{key}.{sub}", fmt_value(v))
            continue
        table.add_row(str(key), fmt_value(value))
    console.print(table)
