"""Annotator output -> the labels file: read, validate against the pool, merge.

``import_labels`` reads CSV/TSV or Parquet files of (id, label) rows
(:mod:`alq.store.annotation_files`), checks
every id is in the pool and every label is well formed, resolves conflicts
(with the existing labels file and within the new files) by a declared
policy, and writes the merged :class:`~alq.store.labels.LabelSet`
atomically. Any error names the file and line/row and writes nothing.

``pending_ids`` does the cron bookkeeping: ids sent to annotators (earlier
selections) minus the ids whose labels came back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from alq.errors import BadInputError
from alq.fs.lock import exclusive_lock
from alq.io import parquet_metadata, sha256_file, write_parquet
from alq.store.annotation_files import as_int, read_annotations, type_labels
from alq.store.base import Pool
from alq.store.labels import KIND, LabelSet, read_id_list, read_labels

POLICIES = ("error", "keep-old", "take-new")
MAX_HISTORY = 50


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
            n = c if isinstance(c, int) else as_int(str(c).strip())
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
        typed, a_kind = type_labels(a, kind)
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
