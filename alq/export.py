"""Selections out to annotation tools: the user's metadata joined back, CSV / JSON lines / Parquet.

``alq embed`` keeps the input's metadata columns (file paths, URLs...) beside
the ids in each shard's Parquet; :func:`pool_columns` reads them back for
selected pool rows, one shard at a time. :func:`write_rows` writes a table
in the format its output name asks for (``.csv``, ``.jsonl``/``.ndjson``,
anything else Parquet), atomically, or to stdout for ``-`` (CSV, or JSON
lines with ``fmt="jsonl"``).

Text formats (CSV, JSON lines, Label Studio) write values one way
(:func:`text_table`): NaN and +-Inf are missing (JSON ``null``, an empty CSV
cell, so DuckDB still types a score column as a number; a kcenter pick's
first score is ``inf``), timestamps are ISO-8601 in UTC (``2025-01-01T04:09:49Z``).
CSV cells that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, tab or carriage return, and not a plain number) get a
leading ``'`` (OWASP's CSV-injection rule), unless ``escape_formulas=False``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq.errors import BadInputError
from alq.io import atomic_path, strict_json, write_parquet

FORMATS = ("parquet", "csv", "jsonl")
_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def available_columns(pool) -> list[str]:
    """Metadata columns a pool keeps (all but ``id`` in its first shard's Parquet)."""
    if not pool.n_shards:
        return []
    return [f.name for f in pool.shard_schema(0) if f.name != "id"]


def pool_columns(pool, indices: np.ndarray, names: list[str]) -> pa.Table:
    """The metadata columns ``names`` of pool rows ``indices`` (global, in that order)."""
    have = available_columns(pool)
    missing = [c for c in names if c not in have]
    if missing:
        raise BadInputError(f"{pool.path}: the pool keeps no column {', '.join(map(repr, missing))} "
                            f"(it keeps: {', '.join(have) if have else 'only ids'})",
                            hint="`alq embed` keeps the input's scalar columns, or those named by --keep-columns")
    idx = np.asarray(indices, dtype=np.int64)
    shard, row = pool.locate(idx)
    parts, where = [], []
    for s in np.unique(shard):
        sel = np.flatnonzero(shard == s)
        t = pool.shard_table(int(s), columns=names)
        parts.append(t.take(pa.array(row[sel])))
        where.append(sel)
    if not parts:
        return pa.table({c: pa.array([], type=pa.string()) for c in names})
    table = pa.concat_tables(parts)
    order = np.argsort(np.concatenate(where), kind="stable")
    return table.take(pa.array(order))


def output_format(out: str | Path, fmt: str | None = None) -> str:
    """The format to write: ``fmt`` when given, else from the name (``-``: CSV)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise BadInputError(f"--format {fmt!r} must be one of {', '.join(FORMATS)}")
        return fmt
    if str(out) == "-":
        return "csv"
    return _SUFFIX.get(Path(out).suffix.lower(), "parquet")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def escape_formula(value: str) -> str:
    """``value`` with a leading ``'`` when a spreadsheet would read it as a formula (OWASP CSV injection);
    plain numbers (``-2``, ``+1.5e3``) are left alone: spreadsheets read those as numbers."""
    if value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _iso_utc(col: pa.ChunkedArray) -> pa.Array:
    """Timestamps as ``2025-01-01T04:09:49Z`` (UTC; naive ones are taken as UTC; a fraction only when one)."""
    import pyarrow.compute as pc

    t = col.type
    if t.tz is not None:
        col = col.cast(pa.timestamp(t.unit, tz="UTC"))
    whole = col.cast(pa.timestamp("s", tz=col.type.tz), safe=False)
    exact = pc.all(pc.equal(whole.cast(pa.timestamp(t.unit, tz=col.type.tz)), col)).as_py() in (True, None)
    if exact:
        return pc.strftime(whole, format="%Y-%m-%dT%H:%M:%SZ")
    return pc.binary_join_element_wise(pc.strftime(col, format="%Y-%m-%dT%H:%M:%S"), "Z", "")


def text_table(table: pa.Table, *, escape_formulas: bool = False) -> pa.Table:
    """``table`` as text formats write it: non-finite floats null, timestamps ISO-8601 UTC strings, and
    (``escape_formulas``, for CSV) formula-looking strings escaped with a leading ``'``."""
    import pyarrow.compute as pc

    cols = []
    for field, col in zip(table.schema, table.columns):
        t = field.type
        if pa.types.is_floating(t):
            col = pc.if_else(pc.is_finite(col), col, pa.scalar(None, t))
        elif pa.types.is_timestamp(t):
            col = _iso_utc(col)
        elif escape_formulas and (pa.types.is_string(t) or pa.types.is_large_string(t)):
            col = pa.array([None if v is None else escape_formula(v) for v in col.to_pylist()], type=t)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def _jsonl_lines(table: pa.Table):
    for rec in table.to_pylist():
        yield json.dumps(strict_json(rec), default=str, allow_nan=False) + "\n"  # default: dates, decimals


def _csv_bytes(table: pa.Table) -> bytes:
    import csv
    import io

    import pyarrow.csv as pacsv

    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(table.column_names)  # unquoted unless needed, as tools expect
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False))
    return head.getvalue().encode() + sink.getvalue().to_pybytes()


def write_rows(table: pa.Table, out: str | Path, *, meta: dict | None = None, fmt: str | None = None,
               escape_formulas: bool = True) -> str:
    """Write ``table`` to ``out`` (``-``: stdout) as CSV, JSON lines or Parquet; return the format used.

    CSV and JSON lines get :func:`text_table` (CSV cells that look like formulas escaped unless
    ``escape_formulas`` is False); Parquet keeps the types as they are."""
    kind = output_format(out, fmt)
    if kind != "parquet":
        table = text_table(table, escape_formulas=escape_formulas and kind == "csv")
    if str(out) == "-":
        if kind == "parquet":
            raise BadInputError("--out - writes CSV or JSON lines to stdout, not Parquet", hint="pass --format csv")
        stream = sys.stdout
        stream.flush()
        if kind == "csv":
            stream.buffer.write(_csv_bytes(table)) if hasattr(stream, "buffer") else stream.write(
                _csv_bytes(table).decode())
        else:
            stream.writelines(_jsonl_lines(table))
        stream.flush()
        return kind
    if kind == "parquet":
        write_parquet(out, table, meta)
    elif kind == "csv":
        with atomic_path(out, suffix=".csv") as tmp:
            tmp.write_bytes(_csv_bytes(table))
    else:
        with atomic_path(out, suffix=".jsonl") as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(_jsonl_lines(table))
    return kind


def export_selection(selection: str | Path, out: str | Path, *, fmt: str | None = None, pool=None,
                     columns: list[str] | None = None, escape_formulas: bool = True) -> dict:
    """``alq export``: a selection (+ pool metadata columns) as CSV / JSON lines / Parquet / Label Studio."""
    from alq.io import parquet_metadata, read_parquet

    selection = Path(selection)
    table = read_parquet(selection)
    meta = parquet_metadata(selection)
    if meta.get("kind") != "selection" or "id" not in table.column_names:
        raise BadInputError(f"{selection}: not an alq selection (from `alq select`)")
    columns = list(columns or [])
    if columns:
        if pool is None:
            raise BadInputError("--with-columns needs --pool (the pool the selection came from)")
        from alq.store.opener import open_pool

        p = open_pool(pool)
        ids = table.column("id").to_numpy(zero_copy_only=False)
        rows = p.lookup(ids.astype(np.int64) if p.id_type == "int64" else ids.astype(object))
        if (rows < 0).any():
            i = int(np.flatnonzero(rows < 0)[0])
            raise BadInputError(f"{selection}: row {i}: id {ids[i]!r} is not in {pool}",
                                hint="pass the pool this selection was made from")
        extra = pool_columns(p, rows, columns)
        for name in extra.column_names:
            if name not in table.column_names:
                table = table.append_column(extra.schema.field(name), extra.column(name))
    if fmt == "label-studio":
        from alq.labelstudio import to_tasks

        text = json.dumps(to_tasks(text_table(table), columns), indent=1, allow_nan=False) + "\n"
        if str(out) == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with atomic_path(out, suffix=".json") as tmp:
                tmp.write_text(text, encoding="utf-8")
        kind = fmt
    else:
        kind = write_rows(table, out, meta=meta, fmt=fmt, escape_formulas=escape_formulas)
    return {"selection": str(selection), "output": str(out), "format": kind, "rows": table.num_rows,
            "columns": table.column_names}
