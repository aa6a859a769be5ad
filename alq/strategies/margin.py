"""margin: the rows whose two most probable classes are closest (Scheffer et al. 2001; BASE baseline viii).

Score: p_i(1) - p_i(2), ranked smallest first. Multi-label heads: the per-class
binary margin |2 p_ic - 1| aggregated by ``--aggregate`` min (default) or mean.
Ties: smaller pool row first. One streamed pass (or a fresh ``alq score`` file).
"""

from __future__ import annotations

from alq.scoring.passes import uncertainty_topk
from alq.strategies.base import Context, Selection, Strategy, register


@register
class MarginStrategy(Strategy):
    name = "margin"
    help = "smallest gap p(1) - p(2) between the two top classes (multi-label: smallest binary margin, --aggregate)"
    score_meaning = "p(1) - p(2), ascending (multi-label: min or mean of |2p - 1| over classes)"
    distributed = "sharded"

    def select(self, ctx: Context) -> Selection:
        idx, values, info = uncertainty_topk(ctx, "margin", ctx.budget)
        return Selection(indices=idx, scores=values, summary=info)
