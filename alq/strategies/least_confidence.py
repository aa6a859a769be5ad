"""least-confidence: the rows whose most probable class is least probable (BASE baseline vii).

Score: max_c p_ic, ranked smallest first. Multi-label heads: the confidence of
each binary decision max(p, 1 - p) = (1 + |2p - 1|) / 2, aggregated by
``--aggregate`` min (default) or mean. Ties: smaller pool row first.
"""

from __future__ import annotations

from alq.scoring.passes import uncertainty_topk
from alq.strategies.base import Context, Selection, Strategy, register


@register
class LeastConfidenceStrategy(Strategy):
    name = "least-confidence"
    help = "smallest top-class probability max_c p_c (multi-label: least confident binary decision, --aggregate)"
    score_meaning = "max_c p_c, ascending (multi-label: min or mean of max(p, 1 - p) over classes)"
    distributed = "sharded"

    def select(self, ctx: Context) -> Selection:
        idx, values, info = uncertainty_topk(ctx, "least_confidence", ctx.budget)
        return Selection(indices=idx, scores=values, summary=info)
