"""Annotator files: CSV/TSV or Parquet rows of (id, label), read and typed against the pool's id type.

:func:`read_annotations` reads one file (a Label Studio export too) into
:class:`Annotations`; :func:`type_labels` gives CSV text labels a type. Any
error names the file and line/row. The merge into the labels file is
:mod:`alq.store.annotations`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq.errors import BadInputError
from alq.io import read_parquet
from alq.store.readers import is_parquet


@dataclass
class Annotations:
    """Rows of one annotator file, ids already in the pool's id type."""

    path: Path
    ids: np.ndarray  # int64 or object (str)
    labels: list  # scalars, or tuples when multilabel
    multilabel: bool
    label_kind: str | None  # "int", "string", or None (untyped CSV text that may become either)
    lines: list[int] | None = None  # CSV line number (or export task) of each row (None: Parquet, 0-based rows)
    raw_text: bool = False  # labels are CSV text, convertible to int if the merged set is int
    unit: str = "line"  # what ``lines`` count: "line" (CSV), "task" or "record" (a Label Studio export)
    not_annotated: int = 0  # Label Studio tasks in the file with no annotation yet (still pending)

    def where(self, i: int) -> str:
        """``file: line 7`` (CSV), ``file: task 3`` (Label Studio) or ``file: row 5`` (Parquet), for messages."""
        return f"{self.path}: {self.unit} {self.lines[i]}" if self.lines is not None else f"{self.path}: row {i}"


def _where(path: Path, i: int) -> str:
    return f"{path}: row {i}"


def read_annotations(path: str | Path, *, id_type: str, id_column: str | None = None, label_column: str = "label",
                     delimiter: str | None = None, from_name: str | None = None,
                     pool_id_columns: tuple[str, ...] | list[str] = ()) -> Annotations:
    """Read one annotator file (CSV/TSV/TXT, Parquet, or a Label Studio export) into typed ids and labels.

    ``id_column`` None picks the id column: ``alq_id`` (what alq's exports carry) when present, else
    ``id`` or one of ``pool_id_columns`` (the names the pool's ids came from at ``alq embed``); a Label
    Studio export (whose ``id`` is Label Studio's task id) without ``alq_id`` is refused.
    ``from_name``: the Label Studio ``<Choices>`` control to read (for CSV and JSON-MIN, its column).
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq") or is_parquet(path):  # by content too: x.PARQUET, a file with no suffix
        return _read_parquet(path, id_type, id_column, label_column, delimiter, pool_id_columns)
    if suffix == ".json":  # a Label Studio export (alq/labelstudio.py)
        from alq.labelstudio import read_export, typed_ids

        rows = read_export(path, id_field=id_column, from_name=from_name, label_field=label_column)
        ids = typed_ids(rows.ids, id_type, path, unit=rows.unit, places=rows.places)
        return Annotations(path, ids, rows.labels(), rows.multilabel, None, lines=rows.places, raw_text=True,
                           unit=rows.unit, not_annotated=rows.not_annotated)
    return _read_text(path, id_type, id_column, label_column, delimiter, sep="\t" if suffix == ".tsv" else ",",
                      from_name=from_name, pool_id_columns=pool_id_columns)


def _pick_id_column(path: Path, names: list[str], id_column: str | None, label_studio: bool,
                    pool_id_columns) -> str:
    """The column holding pool ids: named, ``alq_id``, ``id``, or the pool's own id column name."""
    from alq.labelstudio import ID_FIELD

    if id_column:
        if id_column not in names:
            raise BadInputError(f"{path}: no {id_column!r} column (has {', '.join(names)})",
                                hint="pass --id-column NAME")
        return id_column
    if ID_FIELD in names:
        return ID_FIELD
    if label_studio:
        raise BadInputError(f"{path}: a Label Studio export: its `id` column is Label Studio's task id, not the "
                            f"pool id, and it has no `{ID_FIELD}` column",
                            hint="import tasks made by `alq export --format label-studio`, or pass --id-column NAME "
                                 "for the column that holds the pool id")
    own = [c for c in pool_id_columns if c in names and c != "id"]
    if "id" in names:
        if own:
            raise BadInputError(f"{path}: both an 'id' column and {own[0]!r} (the pool's id column at `alq embed`)",
                                hint=f"pass --id-column {own[0]} or --id-column id")
        return "id"
    if own:
        return own[0]
    like = [c for c in names if c.lower().endswith("_id")]
    raise BadInputError(f"{path}: no 'id' column (header has {', '.join(names)})",
                        hint=f"pass --id-column {like[0]}" if len(like) == 1 else "pass --id-column / --label-column")


def _read_text(path: Path, id_type: str, id_column: str | None, label_column: str, delimiter: str | None,
               sep: str, *, from_name: str | None = None, pool_id_columns=()) -> Annotations:
    """CSV/TSV with a header; blank lines skipped; errors give the file's real line numbers.

    A Label Studio CSV export (a header with its task ``id`` and ``annotation_id``) is read as one:
    ids from ``alq_id``, the choice from the control's column (``{"choices": [...]}`` for several), rows
    with no choice counted as not annotated yet.
    """
    from alq.labelstudio import csv_choice, is_export_header

    raw_ids: list[str] = []
    raw_labels: list[str] = []
    lines: list[int] = []
    label_studio = False
    not_annotated = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=sep, strict=True)
            start = 1  # the line the row being read starts on, for quoting errors
            header = next(reader, None)
            while header is not None and not any(h.strip() for h in header):
                header = next(reader, None)
            if header is None:
                raise BadInputError(f"{path}: empty file (expected a header line such as "
                                    f"`{id_column},{label_column}`)")
            header = [h.strip() for h in header]
            label_studio = is_export_header(header)
            id_column = _pick_id_column(path, header, id_column, label_studio, pool_id_columns)
            label_column = from_name or label_column
            if label_column not in header:
                if label_studio:
                    raise BadInputError(f"{path}: a Label Studio export holds each choice in the column named after "
                                        f"its control, and it has no {label_column!r} column (header has "
                                        f"{', '.join(header)})", hint="pass --from-name NAME, the <Choices> control")
                raise BadInputError(f"{path}: no {label_column!r} column (header has {', '.join(header)})",
                                    hint="pass --id-column / --label-column")
            ci, cl = header.index(id_column), header.index(label_column)
            start = reader.line_num + 1
            for row in reader:
                if reader.line_num != start and any("\n" in v or "\r" in v for v in row):
                    raise BadInputError(f"{path}: line {start}: a quoted field spans lines {start}-"
                                        f"{reader.line_num} (an unterminated quote?)")
                start = reader.line_num + 1
                if not row or not any(v.strip() for v in row):
                    continue
                if len(row) != len(header):
                    raise BadInputError(f"{path}: line {reader.line_num}: {len(row)} fields, the header has "
                                        f"{len(header)}")
                if label_studio and not row[cl].strip():
                    not_annotated += 1  # a task exported before anyone annotated it
                    continue
                raw_ids.append(row[ci].strip())
                raw_labels.append(row[cl].strip())
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise BadInputError(f"{path}: line {start}: bad quoting ({exc}: an unterminated quote?)") from None
    if not raw_ids:
        if not_annotated:
            raise BadInputError(f"{path}: none of its {not_annotated} rows is annotated yet",
                                hint="export again once annotators have labeled some")
        raise BadInputError(f"{path}: no rows after the header")
    a = Annotations(path, np.empty(0), [], False, None, lines=lines, raw_text=True, not_annotated=not_annotated)
    for i, v in enumerate(raw_ids):
        if not v:
            raise BadInputError(f"{a.where(i)}: empty id")
    if id_type == "int64":
        ids = np.empty(len(raw_ids), dtype=np.int64)
        for i, v in enumerate(raw_ids):
            if not _ASCII_INT.fullmatch(v):  # int() would take 1_0, ١٢ and +12 (ids the file does not hold)
                raise BadInputError(f"{a.where(i)}: id {v!r} is not an integer (the pool uses integer ids)")
            n = int(v)
            if not _INT64[0] <= n <= _INT64[1]:
                raise BadInputError(f"{a.where(i)}: id {v} does not fit in a 64-bit integer (the pool's "
                                    "ids are int64)")
            ids[i] = n
    else:
        ids = np.array(raw_ids, dtype=object)
    if label_studio:
        choices = [csv_choice(v, a.where(i)) for i, v in enumerate(raw_labels)]
        multilabel = any(len(c) > 1 for c in choices)
        a.ids, a.labels, a.multilabel = ids, [c if multilabel else c[0] for c in choices], multilabel
        return a
    if delimiter:
        labels = [tuple(t.strip() for t in v.split(delimiter) if t.strip()) for v in raw_labels]
    else:
        for i, v in enumerate(raw_labels):
            if not v:
                raise BadInputError(f"{a.where(i)}: empty label")
            if v.lower() == "nan":
                raise BadInputError(f"{a.where(i)}: missing label ({v!r}); a NaN is not a class",
                                    hint="drop the row, or give it a label")
        labels = raw_labels
    a.ids, a.labels, a.multilabel = ids, labels, bool(delimiter)
    return a


def _read_parquet(path: Path, id_type: str, id_column: str | None, label_column: str, delimiter: str | None,
                  pool_id_columns=()) -> Annotations:
    table = read_parquet(path)
    id_column = _pick_id_column(path, table.column_names, id_column, False, pool_id_columns)
    if label_column not in table.column_names:
        raise BadInputError(f"{path}: no {label_column!r} column (has {', '.join(table.column_names)})",
                            hint="pass --id-column / --label-column")
    if table.num_rows == 0:
        raise BadInputError(f"{path}: no rows")
    id_col = table.column(id_column).combine_chunks()
    if id_col.null_count:
        i = int(np.flatnonzero(id_col.is_null().to_numpy(zero_copy_only=False))[0])
        raise BadInputError(f"{_where(path, i)}: empty id")
    if pa.types.is_integer(id_col.type):
        if id_type != "int64":
            raise BadInputError(f"{path}: ids are integers but the pool uses string ids")
        ids = id_col.cast(pa.int64()).to_numpy(zero_copy_only=False)
    elif pa.types.is_string(id_col.type) or pa.types.is_large_string(id_col.type):
        if id_type != "string":
            raise BadInputError(f"{path}: ids are strings but the pool uses integer ids")
        ids = np.array(id_col.to_pylist(), dtype=object)
    else:
        raise BadInputError(f"{path}: id column {id_column!r} has type {id_col.type}; expected integers or strings")
    lab = table.column(label_column).combine_chunks()
    lt = lab.type
    is_list = pa.types.is_list(lt) or pa.types.is_large_list(lt) or pa.types.is_fixed_size_list(lt)
    scalar = lt.value_type if is_list else lt
    if pa.types.is_floating(scalar) and not is_list:
        lab, kind = _integral_floats(path, lab), "int"  # 3.0 is the class 3, as in CSV; NaN is refused
    elif pa.types.is_integer(scalar):
        kind = "int"
    elif pa.types.is_string(scalar) or pa.types.is_large_string(scalar):
        kind = "string"
    else:
        raise BadInputError(f"{path}: label column {label_column!r} has type {lt}; expected integers or strings "
                            "(or lists of them for multi-label)")
    values = lab.to_pylist()
    for i, v in enumerate(values):
        if v is None or (not is_list and kind == "string" and not v.strip()):
            raise BadInputError(f"{_where(path, i)}: empty label")
        if is_list and any(c is None for c in v):
            raise BadInputError(f"{_where(path, i)}: label list holds a null")
    if is_list:
        labels = [tuple(v) for v in values]
        multilabel = True
    elif delimiter and kind == "string":
        labels = [tuple(t.strip() for t in v.split(delimiter) if t.strip()) for v in values]
        multilabel = True
    else:
        labels = values
        multilabel = False
    return Annotations(path, ids, labels, multilabel, kind)


_INTEGRAL_FLOAT = re.compile(r"-?[0-9]+\.0*")
_ASCII_INT = re.compile(r"-?[0-9]+")
_INT64 = (-(2**63), 2**63 - 1)


def _integral_floats(path: Path, lab: pa.Array) -> pa.Array:
    values = lab.to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
    if bad.size:
        i = int(bad[0])
        what = "missing label (NaN)" if np.isnan(values[i]) else f"label {float(values[i])!r} is not a whole number"
        raise BadInputError(f"{_where(path, i)}: {what}", hint="labels are integers or strings")
    return pa.array(values.astype(np.int64))


def as_int(v: str) -> int | None:
    """``3`` and ``3.0`` (what spreadsheets and pandas write for integer columns) are the integer 3;
    ``007``, ``+1`` and ``3.5`` stay strings."""
    if _INTEGRAL_FLOAT.fullmatch(v):
        v = v.split(".")[0]
    try:
        n = int(v)
    except ValueError:
        return None
    return n if str(n) == v else None


def type_labels(a: Annotations, kind: str | None) -> tuple[list, str]:
    """Give CSV text labels a type: int when every label is an integer and the merged set allows it."""
    if not a.raw_text:
        return a.labels, a.label_kind
    flat = [c for row in a.labels for c in row] if a.multilabel else a.labels
    if kind == "string":
        return a.labels, "string"
    parsed = [as_int(v) for v in flat]
    if all(p is not None for p in parsed):
        if a.multilabel:
            it = iter(parsed)
            return [tuple(next(it) for _ in row) for row in a.labels], "int"
        return parsed, "int"
    if kind == "int":
        bad = next(i for i, p in enumerate(parsed) if p is None)
        row = bad if not a.multilabel else next(i for i, r in enumerate(a.labels)
                                                if any(as_int(c) is None for c in r))
        raise BadInputError(f"{a.where(row)}: label {flat[bad]!r} is not an integer, but the labels "
                            "so far are integers")
    return a.labels, "string"
