"""``alq train`` as a library call: a head trained on the labeled rows of a pool.

The bridge between the store and the model: :func:`train_on_pool` resolves
a :class:`~alq.store.labels.LabelSet` against a pool, reads only the labeled
rows' embeddings (``pool.take``) and the pool's standardisation statistics,
and hands arrays to :func:`alq.model.train.train_head`, which knows nothing
of pools or label files.
"""

from __future__ import annotations

import numpy as np

from alq.errors import BadInputError
from alq.model.head import Head
from alq.model.options import TrainOptions
from alq.model.standardize import pool_column_stats
from alq.model.train import train_head
from alq.store.labels import LabelSet

MULTILABEL_MODES = ("auto", "yes", "no")


def train_on_pool(pool, labels, opts: TrainOptions, *, multilabel: str = "auto", device=None,
                  meta: dict | None = None, source: str = "labels") -> Head:
    """Train a head on the pool rows of a :class:`~alq.store.labels.LabelSet`.

    Only the labeled rows' embeddings are read (``pool.take``), as float32.
    ``multilabel``: ``auto`` follows the labels file, ``yes`` trains sigmoid
    outputs (single labels become one-element sets), ``no`` refuses list labels.
    The head records the pool fingerprint it was trained on.
    """
    if multilabel not in MULTILABEL_MODES:
        raise BadInputError(f"--multilabel={multilabel!r} must be one of {', '.join(MULTILABEL_MODES)}")
    if len(labels) == 0:
        raise BadInputError(f"{source}: the labels file holds no rows", hint="import labels with `alq labels`")
    is_ml = labels.multilabel if multilabel == "auto" else multilabel == "yes"
    if labels.multilabel and not is_ml:
        raise BadInputError(f"--multilabel no, but {source} holds lists of classes", hint="use --multilabel auto")
    if is_ml and not labels.multilabel:
        labels = LabelSet(ids=labels.ids, labels=[(c,) for c in labels.labels], multilabel=True)
    idx = labels.resolve(pool, source=source)
    order = np.argsort(idx, kind="stable")  # read rows in pool order; the fit does not depend on row order
    classes = labels.classes
    y = labels.targets(classes)[order]
    x = pool.take(idx[order], dtype=np.float32)
    info = {"pool_fingerprint": pool.fingerprint, **(meta or {})}
    standardizer = None
    if opts.normalize == "standardize":
        standardizer = pool_column_stats(pool).standardizer()
    return train_head(x, y, classes, multilabel=is_ml, opts=opts, device=device, meta=info,
                      standardizer=standardizer)
