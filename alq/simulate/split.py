"""Split one labeled pool into an experiment pool and a held-out test set.

``alq simulate`` needs a test set from the same distribution as the pool
(same encoder, same classes); a test set from elsewhere leaves every
strategy at chance. :func:`split_pool` draws ``fraction`` of the labeled
rows, stratified by class for multi-class labels (each class gives
round(fraction x its size) rows, at least one when it has two or more),
uniformly for multi-label ones, and writes::

    OUT/pool/                 the other rows (ids, vectors, metadata columns kept)
    OUT/pool_labels.parquet   their labels
    OUT/test/                 the drawn rows
    OUT/test_labels.parquet   their labels

Ids are kept. The input is never modified; the same seed gives the same split.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from alq import fs
from alq.errors import BadInputError
from alq.io import apply_umask, replace_dir
from alq.store.labels import LabelSet, read_labels
from alq.store.opener import open_pool
from alq.store.writer import PoolWriter

PARTS = ("pool", "pool_labels.parquet", "test", "test_labels.parquet")


def test_rows(labels: LabelSet, rows: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Positions (into ``labels``) of the rows drawn for the test set, sorted."""
    n = len(rows)
    if labels.multilabel:
        k = int(round(fraction * n))
        return np.sort(rng.choice(n, size=k, replace=False)) if k else np.empty(0, np.int64)
    lab = np.asarray([str(c) for c in labels.labels], dtype=object)
    picks = []
    for c in sorted(set(lab.tolist())):
        members = np.flatnonzero(lab == c)
        k = int(round(fraction * len(members)))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)  # both sides keep the class
        else:
            k = 0
        if k:
            picks.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(picks)) if picks else np.empty(0, np.int64)


def _names(out) -> set[str]:
    """Top-level names in ``out`` (files and folders; none when it is absent)."""
    if fs.is_remote(out):
        from alq.fs.lock import REMOTE_LOCK

        return {rel.split("/", 1)[0] for rel in fs.listdir(out, recursive=True)} - {REMOTE_LOCK}  # ours, held
    return {p.name for p in out.iterdir()} if out.exists() else set()


def split_pool(pool_path: str | Path, labels_path: str | Path, out: str | Path, *, fraction: float, seed: int = 0,
               overwrite: bool = False, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Write OUT/{pool, pool_labels.parquet, test, test_labels.parquet}; return a summary."""

    if not 0 < fraction < 1:
        raise BadInputError(f"--test-fraction={fraction} must be between 0 and 1 (e.g. 0.2)")
    out = fs.normalize(out)  # a local Path, or an s3:// / gs:// prefix (the pools and labels are written there)
    from alq.store.debris import sole_writer

    with sole_writer(out, what="`alq split`"):  # a split a killed swap moved aside is back before the check
        return _split_locked(pool_path, labels_path, out, fraction=fraction, seed=seed, overwrite=overwrite,
                             progress=progress)


def _split_locked(pool_path, labels_path, out, *, fraction, seed, overwrite, progress) -> dict:
    from alq.export import available_columns

    names = _names(out)
    if names:
        if not overwrite:
            raise BadInputError(f"{out}: already exists and is not empty", hint="pass --overwrite, or another --out")
        if not all(n in PARTS or n.startswith(".") for n in names):  # .NAME.lock: writer locks
            raise BadInputError(f"{out}: --overwrite replaces only an `alq split` folder, and this one holds other "
                                "files", hint="choose another --out")
    pool = open_pool(pool_path)
    labels = read_labels(labels_path)
    rows = labels.resolve(pool, source=str(labels_path))
    if len(np.unique(rows)) != len(rows):
        raise BadInputError(f"{labels_path}: an id is labeled twice", hint="merge the labels with `alq labels`")
    picked = test_rows(labels, rows, fraction, np.random.default_rng([seed, 0x5B117]))
    if len(picked) == 0:
        raise BadInputError(f"--test-fraction={fraction} of {len(rows)} labeled rows draws no test row")
    in_test = np.zeros(pool.count, dtype=bool)
    in_test[rows[picked]] = True
    meta_names = available_columns(pool)
    # a local split is built whole beside OUT and swapped in as one directory: a kill never leaves a new
    # pool/ beside an old test/ (the test rows would leak into the pool). On a store each part commits alone.
    build = None if fs.is_remote(out) else _new_build(out)
    dest = out if build is None else build
    try:
        manifests, parts = _write_parts(pool, pool_path, labels, rows, picked, in_test, meta_names, dest,
                                        fraction=fraction, seed=seed, overwrite=overwrite, progress=progress)
        if build is not None:
            replace_dir(build, out)
    except BaseException:
        if build is not None:
            shutil.rmtree(build, ignore_errors=True)
        raise
    return {"output": str(out), **{key: str(fs.join(out, name)) for key, name in
                                   zip(("pool", "pool_labels", "test", "test_labels"), PARTS)},
            "rows": pool.count, "pool_rows": manifests["pool"].count, "test_rows": manifests["test"].count,
            "labeled_pool_rows": len(parts["pool"]), "test_fraction": fraction, "seed": seed,
            "test_class_counts": {str(k): v for k, v in parts["test"].class_counts().items()},
            "columns_kept": meta_names, "unlabeled_rows_kept_in_pool": int(pool.count - len(rows)),
            "drawn": "uniformly (multi-label)" if labels.multilabel else "stratified by class"}


def _new_build(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    apply_umask(build)
    return build


def _write_parts(pool, pool_path, labels, rows, picked, in_test, meta_names, out, *, fraction, seed, overwrite,
                 progress):
    from alq.export import pool_columns

    done = 0
    with contextlib.ExitStack() as stack:  # a failure aborts both writers: nothing half-written is left
        writers = {part: stack.enter_context(PoolWriter(fs.join(out, part), dim=pool.dim, dtype=str(pool.dtype),
                                                        normalize=pool.normalize, shard_rows=max(pool.shard_rows),
                                                        id_type=pool.id_type, overwrite=overwrite))
                   for part in ("pool", "test")}  # --overwrite (on a store): each pool is replaced by its commit
        for block in pool.iter_blocks():
            idx = np.arange(block.start, block.start + len(block.vectors))
            for part, mask in (("test", in_test[idx]), ("pool", ~in_test[idx])):
                if mask.any():
                    sel = idx[mask]
                    cols = pool_columns(pool, sel, meta_names) if meta_names else None
                    writers[part].add(np.asarray(block.vectors[mask]), pool.ids(sel), source=str(pool_path),
                                      source_row0=block.start, columns=cols)
            done += len(idx)
            if progress is not None:
                progress("split", done, pool.count)
        manifests = {part: w.close() for part, w in writers.items()}
    test_mask = np.zeros(len(rows), dtype=bool)
    test_mask[picked] = True
    parts = {}
    for part, mask in (("pool", ~test_mask), ("test", test_mask)):
        keep = np.flatnonzero(mask)
        sub = LabelSet(ids=np.asarray(labels.ids)[keep], labels=[labels.labels[i] for i in keep],
                       multilabel=labels.multilabel)
        with fs.staged_output(fs.join(out, f"{part}_labels.parquet")) as path:
            sub.write(path, split={"part": part, "test_fraction": fraction, "seed": seed,
                                   "source_pool": str(pool_path)})
        parts[part] = sub
    return manifests, parts
