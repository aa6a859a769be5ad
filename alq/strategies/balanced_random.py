"""balanced-random: b/C uniformly random rows per TRUE class (simulation only).

The "cheating" Balanced Random Sampler of Emam et al. 2021 (BASE, baseline
ii): it reads the oracle's labels, so it only runs inside ``alq simulate``,
where ``ctx.true_labels`` is an :class:`alq.simulate.oracle.RowLabels`
(true class index of every pool row; CSR class lists for multi-label).

Round-robin over classes in a seeded random order, each class taking its
next row in a seeded random order: every class gets floor(b/C) or
ceil(b/C) rows (the remainder goes to the first classes of the order), and
a class that runs out of unlabeled rows passes its share on to the others.
Multi-label: a row belongs to every class it carries and is taken once.
"""

from __future__ import annotations

import numpy as np

from alq.errors import AlqFailure, BadInputError
from alq.strategies.base import Context, Selection, Strategy, register


@register
class BalancedRandomStrategy(Strategy):
    name = "balanced-random"
    help = "b/C random rows per class from the TRUE labels (BASE's cheating baseline; simulation only)"
    needs_head = False
    simulation_only = True
    score_meaning = "round-robin pass (0 = the first pick of each class)"
    distributed = "driver"

    def select(self, ctx: Context) -> Selection:
        labels = ctx.true_labels
        if labels is None:
            raise BadInputError("--strategy balanced-random reads the true labels and only runs inside `alq simulate`")
        if len(labels) != ctx.pool.count:
            raise AlqFailure(f"true labels cover {len(labels)} rows but the pool has {ctx.pool.count}")
        rng = ctx.rng()
        class_rank = np.empty(labels.n_classes, dtype=np.int64)
        class_rank[rng.permutation(labels.n_classes)] = np.arange(labels.n_classes)
        keys = rng.random(ctx.pool.count)
        if labels.multilabel:
            idx, passes = _round_robin_multilabel(labels, ctx.excluded, keys, class_rank, ctx.budget)
        else:
            idx, passes = _round_robin(labels.y, ctx.excluded, keys, class_rank, ctx.budget)
        return Selection(indices=idx, scores=passes.astype(np.float64))


def _round_robin(y: np.ndarray, excluded: np.ndarray, keys: np.ndarray, class_rank: np.ndarray,
                 budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Multi-class round-robin, vectorised: order rows by (pass, class rank). No validation."""
    cand = np.flatnonzero(~excluded).astype(np.int64)
    cls = y[cand]
    order = np.lexsort((keys[cand], cls))  # by class, then by random key
    cand, cls = cand[order], cls[order]
    first = np.searchsorted(cls, cls, side="left")
    passes = np.arange(len(cand), dtype=np.int64) - first  # position of the row within its class
    take = np.lexsort((class_rank[cls], passes))[:budget]
    return cand[take], passes[take]


def _round_robin_multilabel(labels, excluded: np.ndarray, keys: np.ndarray, class_rank: np.ndarray,
                            budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Multi-label round-robin: each class in turn takes its next untaken row. No validation."""
    members = labels.class_members()
    queues = []
    for rows in members:
        rows = rows[~excluded[rows]]
        queues.append(rows[np.argsort(keys[rows], kind="stable")])
    visit = np.argsort(class_rank)
    taken = np.zeros(len(excluded), dtype=bool)
    ptr = np.zeros(len(queues), dtype=np.int64)
    out, passes = [], []
    p = 0
    while len(out) < budget:
        progressed = False
        for c in visit:
            q = queues[c]
            while ptr[c] < len(q) and taken[q[ptr[c]]]:
                ptr[c] += 1
            if ptr[c] < len(q):
                row = int(q[ptr[c]])
                taken[row] = True
                out.append(row)
                passes.append(p)
                progressed = True
                if len(out) == budget:
                    break
        if not progressed:
            break
        p += 1
    if len(out) < budget:  # only rows without any label are left: take them in random order
        rest = np.flatnonzero(~excluded & ~taken)
        rest = rest[np.argsort(keys[rest], kind="stable")][:budget - len(out)]
        out.extend(rest.tolist())
        passes.extend([p] * len(rest))
    return np.asarray(out, dtype=np.int64), np.asarray(passes, dtype=np.int64)
