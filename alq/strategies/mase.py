"""mase: margin selection in feature space (Emam et al. 2021, "Active Learning at the ImageNet Scale", Alg. 1).

Score: DDB(i) = min over c != y-hat_i of (z_i,y-hat - z_ic) / ||w_y-hat - w_c||,
the distance of the row's features (input of the head's last linear layer)
to the nearest decision boundary; the b smallest are selected, ties to the
smaller pool row. Multi-label heads: min_c |z_ic| / ||w_c|| (see
``alq.scoring.boundary``). One streamed pass; per range a running top-b.
"""

from __future__ import annotations

from alq.scoring.boundary import inverse_pair_norms, mase_partial
from alq.scoring.passes import _device_arg, _engine, merge_topk
from alq.strategies.base import Context, Selection, Strategy, register


@register
class MaseStrategy(Strategy):
    name = "mase"
    help = "smallest feature-space distance to any decision boundary (MASE, Emam et al. 2021)"
    score_meaning = "DDB: distance to the nearest decision boundary in feature space, ascending"
    distributed = "sharded"

    def select(self, ctx: Context) -> Selection:
        g = inverse_pair_norms(ctx.head)
        parts = _engine(ctx).map_pool(mase_partial, ctx.pool, ctx.head, g, int(ctx.budget), _device_arg(ctx), None,
                                      row_arrays={"excluded": ctx.excluded})
        idx, ddb = merge_topk(parts, int(ctx.budget))
        return Selection(indices=idx, scores=ddb)
