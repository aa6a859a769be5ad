"""The labels file: one Parquet table of (id, label), merged by ``alq labels``.

Columns: ``id`` (int64 or string, like the pool) and ``label`` (int64 or
string; for multi-label tasks a list of them). Key-value metadata records
``kind=labels`` and ``multilabel``. Class order everywhere in alq is the
sorted order of the distinct labels (numeric for ints, lexicographic for
strings), so a head's class index is stable across runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq.errors import BadInputError
from alq.io import parquet_metadata, read_parquet, write_parquet
from alq.store.base import Pool
from alq.store.readers import is_parquet, iter_text_ids, plain_int

KIND = "labels"


@dataclass
class LabelSet:
    ids: np.ndarray  # int64 or object (str)
    labels: list  # per row: a label (multi-class) or a tuple of labels (multi-label)
    multilabel: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def classes(self) -> list:
        """Distinct labels in alq's stable class order."""
        if self.multilabel:
            values = {c for row in self.labels for c in row}
        else:
            values = set(self.labels)
        return sorted(values)

    def class_counts(self, classes: list | None = None) -> dict:
        classes = self.classes if classes is None else classes
        counts = dict.fromkeys(classes, 0)
        rows = self.labels if self.multilabel else ([c] for c in self.labels)
        for row in rows:
            for c in row:
                if c in counts:
                    counts[c] += 1
        return counts

    def targets(self, classes: list) -> np.ndarray:
        """Class indices (multi-class, shape (n,)) or a multi-hot matrix (n, C)."""
        index = {c: i for i, c in enumerate(classes)}
        unknown = [c for c in (self.classes) if c not in index]
        if unknown:
            raise BadInputError(f"labels contain classes the head does not know: {unknown[:5]}",
                                hint="retrain the head with `alq train`")
        if self.multilabel:
            y = np.zeros((len(self.labels), len(classes)), dtype=np.float32)
            for r, row in enumerate(self.labels):
                for c in row:
                    y[r, index[c]] = 1.0
            return y
        return np.fromiter((index[c] for c in self.labels), dtype=np.int64, count=len(self.labels))

    def resolve(self, pool: Pool, *, source: str = "labels") -> np.ndarray:
        """Global pool indices of the labeled ids; an id not in the pool is an error."""
        idx = pool.lookup(self.ids)
        missing = np.flatnonzero(idx < 0)
        if missing.size:
            r = int(missing[0])
            raise BadInputError(f"{source}: row {r}: id {_show(self.ids[r])} is not in the pool "
                                f"({missing.size} unknown ids in all)")
        return idx

    def to_table(self) -> pa.Table:
        id_type = pa.int64() if np.issubdtype(np.asarray(self.ids).dtype, np.integer) else pa.string()
        ids = pa.array(np.asarray(self.ids).tolist(), type=id_type)
        scalar = _label_type(self.labels, self.multilabel)
        if self.multilabel:
            lab = pa.array([list(r) for r in self.labels], type=pa.list_(scalar))
        else:
            lab = pa.array(list(self.labels), type=scalar)
        return pa.table({"id": ids, "label": lab})

    def write(self, path: str | Path, **metadata) -> None:
        write_parquet(path, self.to_table(), {"kind": KIND, "multilabel": self.multilabel,
                                              "classes": len(self.classes), **metadata})


def _label_type(labels: list, multilabel: bool) -> pa.DataType:
    flat = [c for row in labels for c in row] if multilabel else list(labels)
    if flat and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in flat):
        return pa.int64()
    return pa.string()


def _show(v) -> str:
    return repr(v.item() if hasattr(v, "item") else v)


def read_labels(path: str | Path) -> LabelSet:
    """Read a labels file written by ``alq labels`` (or any Parquet with id, label)."""
    table = read_parquet(path)
    for col in ("id", "label"):
        if col not in table.column_names:
            raise BadInputError(f"{path}: no {col!r} column (has {', '.join(table.column_names)})")
    meta = parquet_metadata(table.schema)
    lab_type = table.schema.field("label").type
    multilabel = bool(meta.get("multilabel", pa.types.is_list(lab_type) or pa.types.is_large_list(lab_type)))
    ids = table.column("id").to_numpy(zero_copy_only=False)
    ids = ids.astype(np.int64) if np.issubdtype(ids.dtype, np.integer) else ids.astype(object)
    raw = table.column("label").to_pylist()
    if any(v is None for v in raw):
        raise BadInputError(f"{path}: row {raw.index(None)} has an empty label")
    labels = [tuple(v) for v in raw] if multilabel else raw
    return LabelSet(ids=ids, labels=labels, multilabel=multilabel)


def read_id_list(path: str | Path, *, column: str = "id") -> np.ndarray:
    """Ids from a Parquet (``id`` column, e.g. a selection) or a CSV/text file, one per line.

    Used for ``--pending`` files: rows sent to annotators and not yet returned.
    """
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: file not found")
    if is_parquet(p):  # by content: x.pq, x.PARQUET
        table = read_parquet(p)
        if column not in table.column_names:
            raise BadInputError(f"{p}: no {column!r} column (has {', '.join(table.column_names)})")
        arr = table.column(column).to_numpy(zero_copy_only=False)
    else:  # the same rules as `alq embed --ids` (alq.store.readers)
        values = [v for _, v in iter_text_ids(p, header_names=(column,))]
        ints = [plain_int(v) for v in values]
        if all(i is not None for i in ints):
            arr = np.array(ints, dtype=np.int64)
        else:
            arr = np.array(values, dtype=object)
    return arr.astype(np.int64) if np.issubdtype(arr.dtype, np.integer) else arr.astype(object)
