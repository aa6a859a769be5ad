"""Annotator output -> the labels file: read, validate against the pool, merge.

``import_labels`` reads CSV/TSV or Parquet files of (id, label) rows, checks
every id is in the pool and every label is well formed, resolves conflicts
(with the existing labels file and within the new files) by a declared
policy, and writes the merged :class:`~alq.store.labels.LabelSet`
atomically. Any error names the file and line/row and writes nothing.

``pending_ids`` does the cron bookkeeping: ids sent to annotators (earlier
selections) minus the ids whose labels came back.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq.errors import BadInputError
from alq.io import parquet_metadata, read_parquet, sha256_file, write_parquet
from alq.store.base import Pool
from alq.store.labels import KIND, LabelSet, read_id_list, read_labels
from alq.store.lock import exclusive_lock
from alq.store.readers import is_parquet

POLICIES = ("error", "keep-old", "take-new")
MAX_HISTORY = 50


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


def _as_int(v: str) -> int | None:
    """``3`` and ``3.0`` (what spreadsheets and pandas write for integer columns) are the integer 3;
    ``007``, ``+1`` and ``3.5`` stay strings."""
    if _INTEGRAL_FLOAT.fullmatch(v):
        v = v.split(".")[0]
    try:
        n = int(v)
    except ValueError:
        return None
    return n if str(n) == v else None


def _type_labels(a: Annotations, kind: str | None) -> tuple[list, str]:
    """Give CSV text labels a type: int when every label is an integer and the merged set allows it."""
    if not a.raw_text:
        return a.labels, a.label_kind
    flat = [c for row in a.labels for c in row] if a.multilabel else a.labels
    if kind == "string":
        return a.labels, "string"
    parsed = [_as_int(v) for v in flat]
    if all(p is not None for p in parsed):
        if a.multilabel:
            it = iter(parsed)
            return [tuple(next(it) for _ in row) for row in a.labels], "int"
        return parsed, "int"
    if kind == "int":
        bad = next(i for i, p in enumerate(parsed) if p is None)
        row = bad if not a.multilabel else next(i for i, r in enumerate(a.labels)
                                                if any(_as_int(c) is None for c in r))
        raise BadInputError(f"{a.where(row)}: label {flat[bad]!r} is not an integer, but the labels "
                            "so far are integers")
    return a.labels, "string"


def _kind_of(labels: LabelSet) -> str | None:
    flat = [c for row in labels.labels for c in row] if labels.multilabel else labels.labels
    if not flat:
        return None
    return "int" if isinstance(flat[0], (int, np.integer)) else "string"


def _label_eq(a, b) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return sorted(a, key=str) == sorted(b, key=str)
    return a == b


def _show(v) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(repr(c) for c in v) + "]"
    return repr(v.item() if hasattr(v, "item") else v)


def import_labels(files: list[str | Path], pool: Pool, out: str | Path, *, on_conflict: str = "error",
                  id_column: str | None = None, label_column: str = "label", delimiter: str | None = None,
                  dry_run: bool = False, pool_path: str | Path | None = None, from_name: str | None = None,
                  classes: list | None = None) -> dict:
    """Merge annotator ``files`` into the labels file ``out`` (created if absent); return a summary.

    ``classes``: the allowed classes; a label outside them is an error. Without it, a class the labels
    file did not hold before is imported with a warning (``summary["warnings"]``, ``new_classes``).
    ``summary["not_annotated"]``: Label Studio tasks in the files with no annotation yet.
    """
    if classes is not None and not classes:
        raise BadInputError("--classes is empty", hint="give the allowed classes, e.g. --classes cat,dog,bird")
    if on_conflict not in POLICIES:
        raise BadInputError(f"--on-conflict={on_conflict!r} must be one of {', '.join(POLICIES)}")
    if not files:
        raise BadInputError("no annotation files given")
    out = Path(out)
    for f in files:
        if Path(f).resolve() == out.resolve():
            raise BadInputError(f"{f}: the file to import is the output labels file")
    opts = dict(id_column=id_column, label_column=label_column, delimiter=delimiter, from_name=from_name,
                pool_id_columns=tuple(pool.manifest.extra.get("id_columns") or ()))
    if dry_run:
        return _import(files, pool, out, on_conflict, opts, dry_run, pool_path, classes)
    with exclusive_lock(out, what="`alq labels import`"):
        return _import(files, pool, out, on_conflict, opts, dry_run, pool_path, classes)


def _allowed(classes: list, kind: str) -> set:
    """``--classes`` in the labels' type: the strings a command line gives become ints for integer labels."""
    if kind == "int":
        out = set()
        for c in classes:
            n = c if isinstance(c, int) else _as_int(str(c).strip())
            if n is None:
                raise BadInputError(f"--classes: {c!r} is not an integer, but the labels are integers")
            out.add(n)
        return out
    return {str(c).strip() for c in classes}


def _import(files, pool, out, on_conflict, opts, dry_run, pool_path, classes) -> dict:
    existing: LabelSet | None = None
    history: list = []
    if out.exists():
        meta = parquet_metadata(out)
        if meta.get("kind") not in (None, KIND):
            raise BadInputError(f"{out}: is an alq {meta.get('kind')} file, not a labels file")
        existing = read_labels(out)
        history = list(meta.get("imports") or [])
        if pool.count and len(existing):
            existing.resolve(pool, source=str(out))
    index: dict = {}
    ids: list = []
    labels: list = []
    origin: list = []  # where each current label came from (a path, or (Annotations, row)), for messages
    multilabel = existing.multilabel if existing is not None and len(existing) else None
    kind = _kind_of(existing) if existing is not None else None
    out_name = str(out)
    if existing is not None:
        for i, (k, v) in enumerate(zip(existing.ids.tolist(), existing.labels)):
            index[k] = i
            ids.append(k)
            labels.append(v)
            origin.append(out_name)
    n_old = len(ids)
    stats = {"rows_read": 0, "added": 0, "changed": 0, "unchanged": 0, "kept_old": 0, "not_annotated": 0}
    imports = []
    known = set(existing.classes) if existing is not None and len(existing) else None
    new_classes: dict = {}  # class -> [where first seen, rows], classes the labels file did not hold
    for f in files:
        a = read_annotations(f, id_type=pool.id_type, **opts)
        if multilabel is not None and a.multilabel != multilabel:
            if multilabel:
                raise BadInputError(f"{a.path}: single labels, but the labels so far are multi-label",
                                    hint="pass --delimiter for delimited label lists")
            raise BadInputError(f"{a.path}: multi-label rows, but the labels so far are single labels")
        multilabel = a.multilabel
        typed, a_kind = _type_labels(a, kind)
        if kind is not None and a_kind != kind:
            raise BadInputError(f"{a.path}: labels are {a_kind}s but the labels so far are {kind}s")
        kind = a_kind if kind is None else kind
        allowed = _allowed(classes, kind) if classes is not None else None
        for i, v in enumerate(typed):
            for c in (v if a.multilabel else (v,)):
                if allowed is not None and c not in allowed:
                    shown = ", ".join(str(x) for x in sorted(allowed))
                    raise BadInputError(f"{a.where(i)}: label {_show(c)} is not one of --classes ({shown})",
                                        hint="fix the label, or add the class to --classes")
                if known is not None and c not in known:
                    seen = new_classes.setdefault(c, [a.where(i), 0])
                    seen[1] += 1
        idx = pool.lookup(a.ids)
        unknown = np.flatnonzero(idx < 0)
        if unknown.size:
            r = int(unknown[0])
            raise BadInputError(f"{a.where(r)}: id {_show(a.ids[r])} is not in the pool "
                                f"{pool_path or ''}".rstrip() + f" ({unknown.size} unknown ids in this file)",
                                hint="embed those rows first, or check the id column")
        added = changed = unchanged = kept = 0
        for i, (k, v) in enumerate(zip(a.ids.tolist(), typed)):
            j = index.get(k)
            if j is None:
                index[k] = len(ids)
                ids.append(k)
                labels.append(v)
                origin.append((a, i))
                added += 1
            elif _label_eq(labels[j], v):
                unchanged += 1
            elif on_conflict == "error":
                was = origin[j] if isinstance(origin[j], str) else origin[j][0].where(origin[j][1])
                raise BadInputError(f"{a.where(i)}: id {_show(k)} labeled {_show(v)}, but {was} says "
                                    f"{_show(labels[j])}", hint="pass --on-conflict keep-old or take-new")
            elif on_conflict == "take-new":
                labels[j] = v
                origin[j] = (a, i)
                changed += 1
            else:
                kept += 1
        stats["rows_read"] += len(a.ids)
        stats["added"] += added
        stats["changed"] += changed
        stats["unchanged"] += unchanged
        stats["kept_old"] += kept
        stats["not_annotated"] += a.not_annotated
        imports.append({"file": str(a.path.name), "sha256": sha256_file(a.path), "rows": len(a.ids),
                        "added": added, "changed": changed, "kept_old": kept,
                        **({"not_annotated": a.not_annotated} if a.not_annotated else {})})
    id_arr = np.array(ids, dtype=np.int64) if pool.id_type == "int64" else np.array(ids, dtype=object)
    merged = LabelSet(ids=id_arr, labels=labels, multilabel=bool(multilabel))
    counts = merged.class_counts()
    summary = {"out": str(out), "files": [str(f) for f in files], **stats, "before": n_old, "total": len(merged),
               "multilabel": merged.multilabel, "classes": len(counts), "class_counts": counts,
               "on_conflict": on_conflict, "written": not dry_run,
               "new_classes": sorted(new_classes, key=str),
               "warnings": [f"{w}: new class {_show(c)} ({n} row{'s' if n != 1 else ''}), not in {out} before "
                            "(a typo? --classes makes a class outside the list an error)"
                            for c, (w, n) in sorted(new_classes.items(), key=lambda kv: str(kv[0]))]}
    if not dry_run:
        merged.write(out, pool_fingerprint=pool.fingerprint, imports=(history + imports)[-MAX_HISTORY:])
    return summary


def summarize_labels(path: str | Path, pool: Pool | None = None) -> dict:
    """Per-class counts of a labels file (and, with a pool, how much of it is labeled)."""
    labels = read_labels(path)
    meta = parquet_metadata(path)
    counts = labels.class_counts()
    out = {"path": str(path), "rows": len(labels), "multilabel": labels.multilabel, "classes": len(counts),
           "class_counts": counts, "pool_fingerprint": meta.get("pool_fingerprint"),
           "imports": len(meta.get("imports") or [])}
    if labels.multilabel:
        out["no_positive"] = sum(1 for row in labels.labels if not row)
    if pool is not None:
        labels.resolve(pool, source=str(path))
        out["pool_count"] = pool.count
        out["labeled_fraction"] = round(len(labels) / max(pool.count, 1), 6)
        out["pool_matches"] = meta.get("pool_fingerprint") in (None, pool.fingerprint)
    return out


def pending_ids(sent: list[str | Path], labels: str | Path | None = None,
                pool: Pool | None = None) -> tuple[np.ndarray, list[str], dict]:
    """Ids sent for labeling (in order, first sending wins) that have no label yet.

    Returns (ids, the file each came from, summary).
    """
    if not sent:
        raise BadInputError("no --sent files given")
    parts, files = [], []
    kind = None
    for f in sent:
        ids = read_id_list(f)
        if len(ids) == 0:
            raise BadInputError(f"{f}: holds no ids")
        k = "int64" if ids.dtype.kind in "iu" else "string"
        if kind is not None and k != kind:
            raise BadInputError(f"{f}: ids are {k} but earlier --sent files hold {kind} ids")
        kind = k
        if pool is not None:
            idx = pool.lookup(ids)
            if (idx < 0).any():
                r = int(np.flatnonzero(idx < 0)[0])
                raise BadInputError(f"{f}: row {r}: id {_show(ids[r])} is not in the pool")
        parts.append(ids)
        files.extend([Path(f).name] * len(ids))
    all_ids = np.concatenate(parts)
    files_arr = np.array(files, dtype=object)
    key = all_ids if kind == "int64" else all_ids.astype(str)
    _, first = np.unique(key, return_index=True)
    first.sort()
    uniq, uniq_files = all_ids[first], files_arr[first]
    n_labeled = 0
    if labels is not None:
        lab = read_labels(labels)
        lk = "int64" if np.asarray(lab.ids).dtype.kind in "iu" else "string"
        if len(lab) and lk != kind:
            raise BadInputError(f"{labels}: ids are {lk} but the --sent files hold {kind} ids")
        lab_key = np.asarray(lab.ids) if kind == "int64" else np.asarray(lab.ids).astype(str)
        ukey = uniq if kind == "int64" else uniq.astype(str)
        done = np.isin(ukey, lab_key)
        n_labeled = int(done.sum())
        uniq, uniq_files = uniq[~done], uniq_files[~done]
    summary = {"sent": int(len(all_ids)), "sent_unique": int(len(first)), "labeled": n_labeled,
               "pending": int(len(uniq)), "sent_files": [str(f) for f in sent],
               "labels": str(labels) if labels is not None else None}
    return uniq, list(uniq_files), summary


def write_pending(path: str | Path, ids: np.ndarray, files: list[str], summary: dict) -> None:
    id_arr = pa.array(ids.tolist(), type=pa.int64() if ids.dtype.kind in "iu" else pa.string())
    table = pa.table({"id": id_arr, "sent_in": pa.array(files, type=pa.string())})
    write_parquet(path, table, {"kind": "pending", **{k: summary[k] for k in ("sent", "labeled", "pending")},
                                "sent_files": [Path(f).name for f in summary["sent_files"]]})
