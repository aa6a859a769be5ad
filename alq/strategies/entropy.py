"""entropy: the rows with the most uncertain predicted distribution (DISTIL's entropy sampling).

Score: -sum_c p_ic log p_ic, ranked largest first. Multi-label heads: the sum
of the per-class binary entropies. Ties: smaller pool row first.
"""

from __future__ import annotations

from alq.scoring.passes import uncertainty_topk
from alq.strategies.base import Context, Selection, Strategy, register


@register
class EntropyStrategy(Strategy):
    name = "entropy"
    help = "largest predictive entropy -sum p log p (multi-label: sum of binary entropies)"
    score_meaning = "entropy in nats, descending (multi-label: sum of binary entropies)"
    distributed = "sharded"

    def select(self, ctx: Context) -> Selection:
        idx, values, info = uncertainty_topk(ctx, "entropy", ctx.budget)
        return Selection(indices=idx, scores=values, summary=info)
