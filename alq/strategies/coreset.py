"""coreset: k-center greedy from the labeled set (Sener & Savarese, ICLR 2018).

The labeled rows, and the rows still out for labeling (``--pending``: they
will be labeled, so covering them again is waste), are the initial centres;
each pick is the unlabeled row farthest from every centre and becomes one.
Distances are in the head's feature space (the input of its last linear
layer; the embedding itself for a linear head without normalisation). With
no labeled or pending rows the first pick is a seeded random row.

Nearest-centre distances are one float per unlabeled row, updated per pick
over the candidate rows (cached on the device when they fit
``ALQ_WORKING_MEMORY``, else streamed) with exact triangle-inequality
pruning; never an N x N or N x |labeled| matrix beyond one block.
"""

from __future__ import annotations

import numpy as np

from alq.device import torch_device
from alq.diversity.features import feature_transform, feature_width
from alq.diversity.kcenter import kcenter_greedy
from alq.diversity.rows import RowTable
from alq.strategies.base import Context, Selection, Strategy, register, unlabeled_indices


def kcenter_rows(pool, candidates: np.ndarray, centres: np.ndarray, budget: int, *, head=None, device=None,
                 rng: np.random.Generator, progress=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """k-center greedy over pool rows ``candidates`` from centres ``centres`` (sorted global indices).

    In the head's feature space when ``head`` is given, else the embedding
    space. Returns (global indices in pick order, distances, stats).
    """
    device = device or torch_device()
    transform = feature_transform(head, device) if head is not None else None
    width = feature_width(head) if head is not None else pool.dim
    with RowTable(pool, candidates, transform=transform, width=width, device=device) as table, \
            RowTable(pool, centres, transform=transform, width=width, device=device) as cent:
        pos, scores, stats = kcenter_greedy(table, budget, centres=cent, rng=rng, progress=progress)
        stats["rows_at"] = table.where
    return candidates[pos], scores, stats


def _progress(ctx: Context, task: str):
    return lambda done, total: ctx.report(task, done, total)


@register
class CoresetStrategy(Strategy):
    name = "coreset"
    help = ("k-center greedy from the labeled (and pending) rows in the head's feature space "
            "(Sener & Savarese 2018)")
    needs_head = True
    score_meaning = "distance to the nearest labeled, pending or earlier-picked row when picked (inf: random first)"
    distributed = "driver"

    def select(self, ctx: Context) -> Selection:
        idx, scores, stats = kcenter_rows(ctx.pool, unlabeled_indices(ctx), np.flatnonzero(ctx.excluded),
                                          ctx.budget, head=ctx.head, device=ctx.device, rng=ctx.rng(),
                                          progress=_progress(ctx, "coreset"))
        return Selection(indices=idx, scores=scores, summary={"coreset": stats})
