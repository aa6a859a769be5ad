"""badge: k-means++ seeding over gradient embeddings (Ash et al., ICLR 2020).

g_i = (p_i - e_{yhat_i}) (x) [h_i, 1], the gradient of the loss at the
predicted label with respect to the head's last layer (weights and bias),
h_i = the input of that layer. The first pick is the row of largest
||g_i|| (ties: smallest row), then rows are drawn with probability
proportional to their squared distance to the nearest pick (D^2), from the
selection's seeded generator. g (N x C(e+1) floats) is never formed:
squared distances come from ||a||^2, ||h'||^2 and the two inner products
(ALGORITHMS.md, Diversity), over the factors [a_i, h'_i] (C + e + 1 floats
per row), cached on the device when they fit ``ALQ_WORKING_MEMORY`` and
otherwise spilled once to a temporary file and streamed.
"""

from __future__ import annotations

import numpy as np

from alq.device import torch_device
from alq.diversity.features import badge_transform
from alq.diversity.kmeanspp import kmeanspp_seeding
from alq.diversity.metric import GradientEmbedding
from alq.diversity.rows import RowTable
from alq.strategies.base import Context, Selection, Strategy, register, unlabeled_indices
from alq.strategies.coreset import _progress


def badge_rows(pool, candidates: np.ndarray, budget: int, *, head, device=None, rng: np.random.Generator,
               progress=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """BADGE over pool rows ``candidates`` (sorted global indices): (global indices, D^2 when drawn, stats)."""
    device = device or torch_device()
    transform, width = badge_transform(head, device)
    with RowTable(pool, candidates, transform=transform, width=width, device=device) as table:
        pos, scores, stats = kmeanspp_seeding(table, budget, metric=GradientEmbedding(head.n_classes), rng=rng,
                                              progress=progress)
        stats["rows_at"] = table.where
    return candidates[pos], scores, stats


@register
class BadgeStrategy(Strategy):
    name = "badge"
    help = "k-means++ seeding on gradient embeddings, never materialised (Ash et al. 2020)"
    needs_head = True
    score_meaning = "squared gradient-embedding distance to the nearest earlier pick when drawn (first: ||g||^2)"
    distributed = "driver"

    def select(self, ctx: Context) -> Selection:
        idx, scores, stats = badge_rows(ctx.pool, unlabeled_indices(ctx), ctx.budget, head=ctx.head,
                                        device=ctx.device, rng=ctx.rng(), progress=_progress(ctx, "badge"))
        return Selection(indices=idx, scores=scores, summary={"badge": stats})
