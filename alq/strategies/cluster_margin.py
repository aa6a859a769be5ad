"""cluster-margin: lowest-margin candidates, diversified by round-robin over HAC clusters.

Citovsky et al. 2021, "Batch Active Learning at Scale" (ALGORITHMS.md,
Cluster-Margin):

1. M = the k_m = r x b lowest-margin unlabeled rows (``candidates_ratio`` r,
   default 10; all unlabeled rows when k_m exceeds them). Margins are a map
   over shards (:func:`lowest_margin_partial`) with an exact streaming top-k
   reduce; multi-label heads use the aggregated binary margin.
2. Group M by the pool's clusters (``alq cluster``), order the clusters by
   their size within M, smallest first, ties by cluster id.
3. Round-robin: visit the clusters in that order, take one uniformly random
   member of each, drop emptied clusters, repeat until b rows are taken.

Randomness: one uniform key per candidate, drawn from the selection's
generator in pool-row order; "a uniformly random member" of a cluster is
its remaining member with the smallest key. That is the same distribution
(a uniform random permutation per cluster), independent of block sizes
and engines, and lets pass p take the p-th member of every cluster at once:
the batch is the candidates sorted by (pass, cluster order), first b.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from alq.errors import BadInputError
from alq.scoring.stream import iter_logits, probabilities
from alq.scoring.topk import StreamingTopK
from alq.scoring.uncertainty import AGGREGATES, margin, multilabel_margin
from alq.strategies.base import Context, Selection, Strategy, register

DEFAULT_CANDIDATES_RATIO = 10.0


def lowest_margin_partial(pool, lo: int, hi: int, head, k: int, aggregate: str, *,
                          excluded: np.ndarray) -> StreamingTopK:
    """Map task: the k lowest (margin, row) among not-excluded rows [lo, hi).

    ``excluded`` is this range's slice of the pool mask. Multi-label heads
    use min/mean of the per-class binary margins |2p - 1|.
    """
    from alq.device import torch_device

    top = StreamingTopK(k)
    for block, _, logits in iter_logits(pool, head, lo=lo, hi=hi, device=torch_device()):
        p = probabilities(head, logits)
        m = multilabel_margin(p, aggregate) if head.multilabel else margin(p)
        m = m.cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        keep = ~excluded[block.start - lo:block.stop - lo]
        top.push(m[keep], block.indices[keep])
    return top


def lowest_margin_rows(ctx: Context, k: int, aggregate: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, margins) of the k lowest-margin unlabeled rows, sorted by (margin, row)."""
    from alq.engine import LocalEngine

    engine = ctx.engine or LocalEngine()
    parts = engine.map_pool(lowest_margin_partial, ctx.pool, ctx.head, k, aggregate,
                            row_arrays={"excluded": ctx.excluded})
    top = StreamingTopK(k)
    for part in parts:
        top.merge(part)
    return top.result()


def round_robin(rows: np.ndarray, clusters: np.ndarray, budget: int, keys: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Cluster-Margin's round-robin over the candidates; returns (positions into rows, pass number).

    rows : int64 (m,) candidate pool rows; clusters : int64 (m,) their cluster
    ids; keys : float64 (m,) uniform random keys. Clusters are visited
    smallest (within the candidates) first, ties by cluster id; within a
    cluster members come in increasing key order (ties by row).
    """
    m = len(rows)
    if budget > m:
        raise BadInputError(f"round-robin needs budget={budget} <= {m} candidates")
    uniq, inverse, counts = np.unique(clusters, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    # visiting order of clusters: (size within M, cluster id)
    order = np.lexsort((uniq, counts))
    cluster_rank = np.empty(len(uniq), dtype=np.int64)
    cluster_rank[order] = np.arange(len(uniq), dtype=np.int64)
    # position of each candidate within its cluster's random order = its pass
    within = np.lexsort((rows, keys, inverse))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    passes = np.empty(m, dtype=np.int64)
    passes[within] = np.arange(m, dtype=np.int64) - starts[inverse[within]]
    pick = np.lexsort((cluster_rank[inverse], passes))[:budget]
    return pick, passes[pick]


@register
class ClusterMarginStrategy(Strategy):
    name = "cluster-margin"
    help = ("lowest-margin candidates (r x budget, --candidates-ratio, default 10) taken round-robin over "
            "their clusters, smallest first (Citovsky et al. 2021); needs --clusters from `alq cluster`")
    needs_head = True
    needs_clusters = True
    score_meaning = ("the row's margin p(1) - p(2) (multi-label: aggregated binary margin); rows are ranked "
                     "by round-robin order, not by score")
    distributed = "sharded"

    def select(self, ctx: Context) -> Selection:
        ratio = float(ctx.option("candidates_ratio", DEFAULT_CANDIDATES_RATIO))
        if not math.isfinite(ratio) or ratio < 1:
            raise BadInputError(f"--candidates-ratio={ratio:g} must be >= 1 (k_m = r x budget candidates)")
        aggregate = str(ctx.option("aggregate", "min"))
        if aggregate not in AGGREGATES:
            raise BadInputError(f"--aggregate={aggregate!r} must be one of {', '.join(AGGREGATES)}")
        if ctx.clusters is None or len(ctx.clusters) != ctx.pool.count:
            raise BadInputError("cluster-margin needs one cluster id per pool row (--clusters from `alq cluster`)")
        b = int(ctx.budget)
        k_m = int(min(ctx.n_unlabeled, math.ceil(ratio * b)))
        rows, margins = lowest_margin_rows(ctx, k_m, aggregate)
        ctx.report("cluster-margin: margins", 1, 1)
        # candidates in pool-row order: the keys do not depend on margin ties or block sizes
        by_row = np.argsort(rows, kind="stable")
        rows, margins = rows[by_row], margins[by_row]
        clusters = np.asarray(ctx.clusters, dtype=np.int64)[rows]
        keys = ctx.rng().random(len(rows))
        pick, passes = round_robin(rows, clusters, b, keys)
        chosen_clusters = clusters[pick]
        summary = {
            "candidates": int(k_m), "candidates_ratio": ratio, "candidate_clusters": int(len(np.unique(clusters))),
            "clusters_covered": int(len(np.unique(chosen_clusters))),
            "round_robin_passes": int(passes.max()) + 1 if len(passes) else 0,
            "candidate_margin_max": float(margins.max()) if len(margins) else None,
        }
        return Selection(indices=rows[pick], scores=margins[pick], columns={"cluster": chosen_clusters},
                         summary=summary)
