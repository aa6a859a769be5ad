"""kcenter: k-center greedy in embedding space, no head needed (cold start).

Dispersion from nothing (DISTIL's cold-start P7 setting): with no labeled
or pending rows the first pick is a seeded random unlabeled row, then each
pick is the row farthest from every earlier pick. Labeled and pending rows,
when present, are the initial centres (as in ``coreset``). Distances are
Euclidean on the pool's embeddings; a head, if given, is not used.
"""

from __future__ import annotations

import numpy as np

from alq.strategies.base import Context, Selection, Strategy, register, unlabeled_indices
from alq.strategies.coreset import _progress, kcenter_rows


@register
class KCenterStrategy(Strategy):
    name = "kcenter"
    help = "k-center greedy on the embeddings from a seeded random row (cold start; no head needed)"
    needs_head = False
    score_meaning = "distance to the nearest labeled, pending or earlier-picked row when picked (inf: random first)"
    distributed = "driver"

    def select(self, ctx: Context) -> Selection:
        idx, scores, stats = kcenter_rows(ctx.pool, unlabeled_indices(ctx), np.flatnonzero(ctx.excluded),
                                          ctx.budget, head=None, device=ctx.device, rng=ctx.rng(),
                                          progress=_progress(ctx, "kcenter"))
        return Selection(indices=idx, scores=scores, summary={"kcenter": stats})
