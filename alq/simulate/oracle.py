"""The oracle of a simulation: the true label of every pool row, by row index.

A labels file is keyed by id; a simulation needs the label of a pool *row*
in O(1) and the class counts of any set of rows. :class:`RowLabels` holds
that in row order: an int64 class index per row (multi-class) or a CSR
list of class indices per row (multi-label; never an N x C matrix). It is
what ``Context.true_labels`` carries to simulation-only strategies such as
``balanced-random``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alq.errors import BadInputError
from alq.store.labels import LabelSet
from alq.store.pool import Pool


@dataclass
class RowLabels:
    """True labels of pool rows 0..N-1 over the class list ``classes``.

    Multi-class: ``y`` int64 (N,) class indices. Multi-label: ``indptr``
    int64 (N+1,) and ``indices`` int64 (nnz,), the classes of row i being
    ``indices[indptr[i]:indptr[i+1]]``.
    """

    classes: list
    multilabel: bool = False
    y: np.ndarray | None = None
    indptr: np.ndarray | None = None
    indices: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.y) if not self.multilabel else len(self.indptr) - 1

    def targets(self, rows: np.ndarray) -> np.ndarray:
        """Training targets of ``rows``: class indices (n,) or multi-hot float32 (n, C)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.multilabel:
            return self.y[rows]
        out = np.zeros((len(rows), self.n_classes), dtype=np.float32)
        for r, i in enumerate(rows):
            out[r, self.indices[self.indptr[i]:self.indptr[i + 1]]] = 1.0
        return out

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """Labels per class among ``rows``, int64 (C,)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.multilabel:
            return np.bincount(self.y[rows], minlength=self.n_classes).astype(np.int64)
        flat = np.concatenate([self.indices[self.indptr[i]:self.indptr[i + 1]] for i in rows]) if len(rows) else \
            np.empty(0, dtype=np.int64)
        return np.bincount(flat, minlength=self.n_classes).astype(np.int64)

    def class_members(self) -> list[np.ndarray]:
        """For each class, the rows carrying it (ascending)."""
        if not self.multilabel:
            order = np.argsort(self.y, kind="stable")
            bounds = np.searchsorted(self.y[order], np.arange(self.n_classes + 1))
            return [order[bounds[c]:bounds[c + 1]] for c in range(self.n_classes)]
        row_of = np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr))
        order = np.argsort(self.indices, kind="stable")
        bounds = np.searchsorted(self.indices[order], np.arange(self.n_classes + 1))
        return [row_of[order[bounds[c]:bounds[c + 1]]] for c in range(self.n_classes)]

    def labels_of(self, rows: np.ndarray) -> list:
        """Original label values of ``rows`` (a tuple per row for multi-label)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.multilabel:
            return [self.classes[c] for c in self.y[rows].tolist()]
        return [tuple(self.classes[c] for c in self.indices[self.indptr[i]:self.indptr[i + 1]].tolist())
                for i in rows]


def union_classes(*label_sets: LabelSet) -> list:
    """Sorted union of the label sets' classes (alq's stable class order)."""
    values: set = set()
    for ls in label_sets:
        values.update(ls.classes)
    try:
        return sorted(values)
    except TypeError:
        raise BadInputError("labels mix integer and string classes across files; use one type") from None


def row_labels(pool: Pool, labels: LabelSet, classes: list, *, source: str, require_all: bool = True,
               ) -> tuple[RowLabels, np.ndarray]:
    """Map a labels file onto pool rows. Returns (RowLabels over the labeled rows, their pool rows).

    With ``require_all`` every pool row must have exactly one label row;
    otherwise the returned RowLabels covers only the labeled rows, in pool
    order, and the second value says which pool rows they are.
    """
    rows = labels.resolve(pool, source=source)
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    dup = np.flatnonzero(srt[1:] == srt[:-1])
    if dup.size:
        r = int(order[dup[0] + 1])
        raise BadInputError(f"{source}: row {r}: id {_show(labels.ids[r])} is labeled twice",
                            hint="merge the labels with `alq labels`")
    if require_all and len(rows) != pool.count:
        have = np.zeros(pool.count, dtype=bool)
        have[rows] = True
        missing = int(np.flatnonzero(~have)[0])
        raise BadInputError(f"{source}: pool row {missing} (id {_show(pool.ids([missing])[0])}) has no label; "
                            f"{pool.count - len(rows)} of {pool.count} rows are unlabeled",
                            hint="a simulation needs every pool row labeled")
    index = {c: i for i, c in enumerate(classes)}
    if not labels.multilabel:
        y = np.fromiter((index[c] for c in labels.labels), dtype=np.int64, count=len(labels))
        return RowLabels(classes=list(classes), y=y[order]), srt
    per_row = [sorted({index[c] for c in labels.labels[i]}) for i in order.tolist()]
    lengths = np.fromiter((len(r) for r in per_row), dtype=np.int64, count=len(per_row))
    indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    flat = np.fromiter((c for r in per_row for c in r), dtype=np.int64, count=int(indptr[-1]))
    return RowLabels(classes=list(classes), multilabel=True, indptr=indptr, indices=flat), srt


def _show(v) -> str:
    return repr(v.item() if hasattr(v, "item") else v)
