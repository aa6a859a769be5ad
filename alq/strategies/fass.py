"""fass: filter by entropy, then greedy facility location (Wei, Iyer & Bilmes, ICML 2015).

FASS (Filtered Active Submodular Selection): keep the ``--option
filter_multiple=R`` x b (default 5, as DISTIL) unlabeled rows of largest
predictive entropy (exact streaming top-k over the pool), then pick b of
them greedily maximising facility location over the head's features (the
input of its last linear layer): f(S) = sum over the kept rows i of
max(c_i, max_{j in S} s_ij), s = cosine similarity clipped at 0, c_i the
best similarity of i to the labeled and pending rows (they are already
chosen: f(S u L) as in the paper). Lazy greedy on the dense similarity
while (R b)^2 floats fit ``ALQ_WORKING_MEMORY``, else on each kept row's
``--option knn=K`` (default 20) most similar kept rows via faiss.
"""

from __future__ import annotations

import numpy as np

from alq.diversity.features import feature_transform, feature_width
from alq.scoring.stream import iter_logits, probabilities
from alq.scoring.topk import StreamingTopK
from alq.scoring.uncertainty import entropy, multilabel_entropy
from alq.strategies.base import Context, Selection, Strategy, register
from alq.strategies.facility_location import DEFAULT_KNN, _int_option, facility_rows

DEFAULT_FILTER_MULTIPLE = 5


def entropy_topk(pool, lo: int, hi: int, head, k: int, device, *, excluded: np.ndarray) -> StreamingTopK:
    """Map step: the k largest-entropy unlabeled rows of [lo, hi) (key = -entropy)."""
    top = StreamingTopK(k)
    for block, _, z in iter_logits(pool, head, lo=lo, hi=hi, device=device):
        p = probabilities(head, z)
        h = (multilabel_entropy(p) if head.multilabel else entropy(p)).cpu().numpy()
        keep = ~excluded[block.start - lo:block.stop - lo]
        top.push(-h[keep], block.indices[keep])
    return top


@register
class FassStrategy(Strategy):
    name = "fass"
    help = "entropy filter to R x budget, then greedy facility location on head features (Wei et al. 2015)"
    needs_head = True
    score_meaning = "marginal gain in facility-location value when picked"
    distributed = "driver"

    def select(self, ctx: Context) -> Selection:
        from alq.engine import LocalEngine

        multiple = ctx.option("filter_multiple", DEFAULT_FILTER_MULTIPLE)
        if not isinstance(multiple, (int, float, np.integer, np.floating)) or multiple < 1:
            from alq.errors import BadInputError

            raise BadInputError(f"--option filter_multiple={multiple!r} must be a number >= 1")
        knn = _int_option(ctx, "knn", DEFAULT_KNN, 2)
        m = int(min(ctx.n_unlabeled, max(ctx.budget, round(float(multiple) * ctx.budget))))
        engine = ctx.engine or LocalEngine()
        parts = engine.map_pool(entropy_topk, ctx.pool, ctx.head, m, ctx.device,
                                row_arrays={"excluded": ctx.excluded})
        top = StreamingTopK(m)
        for part in parts:
            top.merge(part)
        kept, _ = top.result()
        candidates = np.sort(kept)
        transform = feature_transform(ctx.head, ctx.device)
        idx, gains, stats = facility_rows(ctx.pool, candidates, np.flatnonzero(ctx.excluded), ctx.budget,
                                          transform=transform, width=feature_width(ctx.head), device=ctx.device,
                                          knn=knn, seed=ctx.seed)
        stats["filter_multiple"] = float(multiple)
        return Selection(indices=idx, scores=gains, summary={"fass": stats})
