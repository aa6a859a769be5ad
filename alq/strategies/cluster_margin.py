"""cluster-margin: lowest-margin candidates, diversified by round-robin over HAC clusters.

Citovsky et al. 2021, "Batch Active Learning at Scale" (ALGORITHMS.md,
Cluster-Margin):

1. M = the k_m = r x b lowest-margin unlabeled rows (``candidates_ratio`` r;
   default ``auto``: r = 0.1 x unlabeled / b within [1.25, 10], the paper's
   large-scale proportion, see :func:`candidates_ratio`; all unlabeled rows
   when k_m exceeds them). Margins are a map
   over shards (:func:`lowest_margin_partial`) with an exact streaming top-k
   reduce; multi-label heads use the aggregated binary margin.
   The set M is kept without sorting by margin (:class:`LowestK`).
2. Group M by the pool's clusters (``alq cluster``), order the clusters by
   their size within M, smallest first, ties in a seeded random order (not
   by cluster id: ids follow pool-row order, and at fine cuts most clusters
   tie at size 1, so id order would fill the batch from the first rows of
   the pool).
3. Round-robin: visit the clusters in that order, take one uniformly random
   member of each, drop emptied clusters, repeat until b rows are taken.

Randomness: one uniform key per candidate, drawn from the selection's
generator in pool-row order, then one per cluster among the candidates in
cluster-id order (the tie order of equal sizes); "a uniformly random
member" of a cluster is its remaining member with the smallest key. That is the same distribution
(a uniform random permutation per cluster), independent of block sizes
and engines, and lets pass p take the p-th member of every cluster at once:
the batch is the candidates sorted by (pass, cluster order), first b.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

from alq.errors import BadInputError
from alq.scoring.stream import iter_logits, probabilities
from alq.scoring.uncertainty import AGGREGATES, margin, multilabel_margin
from alq.strategies.base import Context, Selection, Strategy, register

DEFAULT_CANDIDATES_RATIO = "auto"
# auto: r = clip(AUTO_POOL_FRACTION x unlabeled / b, AUTO_MIN_RATIO, AUTO_MAX_RATIO). The paper's
# large-scale runs took k_m = 10 x 100K = 1M candidates from ~10M rows (a tenth of the pool) and its
# small CIFAR runs r = 1.25; a fixed r = 10 at b = 2,000 on 60,000 rows makes M a third of the pool
# and cluster-margin little better than random (measured: tests/bench/bench_label_efficiency.py).
AUTO_POOL_FRACTION = 0.1
AUTO_MIN_RATIO = 1.25
AUTO_MAX_RATIO = 10.0


def candidates_ratio(value, budget: int, n_unlabeled: int) -> float:
    """The ratio r of k_m = r x b: a number >= 1, or ``auto`` (scaled with the batch-to-pool ratio)."""
    return float(_exact_ratio(value, budget, n_unlabeled))


def candidates_count(value, budget: int, n_unlabeled: int) -> int:
    """k_m = ceil(r x b), at most ``n_unlabeled``, in exact rational arithmetic.

    In floats, ``0.1 x 80760 / 1000 x 1000`` is 8076.000000000001 and its
    ceiling one candidate too many; here r is a fraction (``auto``:
    unlabeled / (10 b) clipped to [5/4, 10]; a given ratio: its decimal value).
    """
    b = max(int(budget), 0)
    return int(min(int(n_unlabeled), math.ceil(_exact_ratio(value, budget, n_unlabeled) * b)))


def _exact_ratio(value, budget: int, n_unlabeled: int) -> Fraction:
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        r = Fraction(str(AUTO_POOL_FRACTION)) * int(n_unlabeled) / max(int(budget), 1)
        return min(Fraction(str(AUTO_MAX_RATIO)), max(Fraction(str(AUTO_MIN_RATIO)), r))
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"--candidates-ratio={value!r} must be 'auto' or a number >= 1") from None
    if not math.isfinite(ratio) or ratio < 1:
        raise BadInputError(f"--candidates-ratio={ratio:g} must be >= 1 (k_m = r x budget candidates)")
    # the shortest decimal that reads back as this float: "1.1" is 11/10, not 1.100000000000000088...
    return Fraction(repr(ratio))


class LowestK:
    """The k smallest (score, row) pairs of a stream, kept in row order; exact, ties by smaller row.

    Like :class:`~alq.scoring.topk.StreamingTopK` but never sorts by score:
    Cluster-Margin only needs the *set* M (its members are used in row
    order), and k_m = r x b can be most of the pool, where sorting would
    dominate. Rows must arrive in increasing order (blocks, then ranges).
    Memory: at most 2k pairs plus the incoming block.
    """

    def __init__(self, k: int):
        self.k = int(k)
        self.scores: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.n = 0

    def push(self, scores: np.ndarray, rows: np.ndarray) -> None:
        if len(scores) == 0 or self.k <= 0:
            return
        self.scores.append(np.asarray(scores, dtype=np.float64))
        self.rows.append(np.asarray(rows, dtype=np.int64))
        self.n += len(scores)
        if self.n > 2 * self.k:
            self._compact()

    def _compact(self) -> None:
        s = np.concatenate(self.scores)
        r = np.concatenate(self.rows)
        if len(s) > self.k:
            keep = smallest_mask(s, self.k)
            s, r = s[keep], r[keep]
        self.scores, self.rows, self.n = [s], [r], len(s)

    def merge(self, other: LowestK) -> LowestK:
        for s, r in zip(other.scores, other.rows):
            self.push(s, r)
        return self

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows ascending, their scores)."""
        if not self.scores:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        self._compact()
        return self.rows[0], self.scores[0]


def smallest_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k smallest scores; ties at the k-th value go to the earliest positions."""
    kth = np.partition(scores, k - 1)[k - 1]
    mask = scores < kth
    need = k - int(np.count_nonzero(mask))
    if need > 0:
        mask[np.flatnonzero(scores == kth)[:need]] = True
    return mask


def lowest_margin_partial(pool, lo: int, hi: int, head, k: int, aggregate: str, *,
                          excluded: np.ndarray) -> LowestK:
    """Map task: the k lowest (margin, row) among not-excluded rows [lo, hi).

    ``excluded`` is this range's slice of the pool mask. Multi-label heads
    use min/mean of the per-class binary margins |2p - 1|.
    """
    from alq.device import torch_device

    top = LowestK(k)
    for block, _, logits in iter_logits(pool, head, lo=lo, hi=hi, device=torch_device()):
        p = probabilities(head, logits)
        m = multilabel_margin(p, aggregate) if head.multilabel else margin(p)
        m = m.cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        keep = ~excluded[block.start - lo:block.stop - lo]
        top.push(m[keep], block.indices[keep])
    return top


def lowest_margin_rows(ctx: Context, k: int, aggregate: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows ascending, margins) of the k lowest-margin unlabeled rows (ties: smaller row)."""
    from alq.engine import LocalEngine

    engine = ctx.engine or LocalEngine()
    parts = engine.map_pool(lowest_margin_partial, ctx.pool, ctx.head, k, aggregate,
                            row_arrays={"excluded": ctx.excluded})
    top = LowestK(k)
    for part in parts:
        top.merge(part)
    return top.result()


def round_robin(rows: np.ndarray, clusters: np.ndarray, budget: int, keys: np.ndarray,
                cluster_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Cluster-Margin's round-robin over the candidates.

    rows : int64 (m,) candidate pool rows, ascending; clusters : int64 (m,)
    their cluster ids; keys : float64 (m,) uniform random keys;
    cluster_keys : float64 (number of distinct clusters,) uniform keys of the
    distinct cluster ids in increasing id order (None: ties by cluster id).
    Clusters are visited smallest (within the candidates) first, equal sizes
    in increasing cluster key (then id); within a cluster members come in
    increasing key order (ties by row).
    Returns (positions into rows in pick order, pass of each pick, number of
    clusters among the candidates). O(m log m) in a few sorts, no Python loop.
    """
    m = len(rows)
    if budget > m:
        raise BadInputError(f"round-robin needs budget={budget} <= {m} candidates")
    uniq, inverse, counts = np.unique(clusters, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    n_clusters = len(uniq)
    # visiting order of clusters: (size within M, cluster id); uniq is sorted by id already
    if cluster_keys is not None and len(cluster_keys) != n_clusters:
        raise ValueError(f"cluster_keys has {len(cluster_keys)} keys for {n_clusters} clusters")
    tie = np.arange(n_clusters) if cluster_keys is None else np.asarray(cluster_keys, dtype=np.float64)
    cluster_rank = np.empty(n_clusters, dtype=np.int64)
    cluster_rank[np.lexsort((np.arange(n_clusters), tie, counts))] = np.arange(n_clusters, dtype=np.int64)
    # members of each cluster in (key, row) order: stable sorts, rows are ascending on input
    by_key = np.argsort(keys, kind="stable")
    within = by_key[np.argsort(inverse[by_key], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    passes = np.empty(m, dtype=np.int64)
    passes[within] = np.arange(m, dtype=np.int64) - starts[inverse[within]]
    # pick order = (pass, cluster rank): one int64 key, partial selection of the first `budget`
    order_key = passes * n_clusters + cluster_rank[inverse]
    if budget < m:
        first = np.argpartition(order_key, budget - 1)[:budget]
    else:
        first = np.arange(m)
    pick = first[np.argsort(order_key[first], kind="stable")]
    return pick, passes[pick], n_clusters


@register
class ClusterMarginStrategy(Strategy):
    name = "cluster-margin"
    help = ("lowest-margin candidates (r x budget, --candidates-ratio; default auto: r = 0.1 x unlabeled / budget "
            "within [1.25, 10], the paper's large-scale proportion) taken round-robin over their clusters, smallest "
            "first, equal sizes in seeded random order (Citovsky et al. 2021); needs --clusters from `alq cluster`")
    needs_head = True
    needs_clusters = True
    score_meaning = ("the row's margin p(1) - p(2) (multi-label: aggregated binary margin); rows are ranked "
                     "by round-robin order, not by score")
    distributed = "sharded"

    def select(self, ctx: Context) -> Selection:
        option = ctx.option("candidates_ratio", DEFAULT_CANDIDATES_RATIO)
        ratio = candidates_ratio(option, ctx.budget, ctx.n_unlabeled)
        aggregate = str(ctx.option("aggregate", "min"))
        if aggregate not in AGGREGATES:
            raise BadInputError(f"--aggregate={aggregate!r} must be one of {', '.join(AGGREGATES)}")
        if ctx.clusters is None or len(ctx.clusters) != ctx.pool.count:
            raise BadInputError("cluster-margin needs one cluster id per pool row (--clusters from `alq cluster`)")
        b = int(ctx.budget)
        k_m = candidates_count(option, b, ctx.n_unlabeled)
        # M in pool-row order: the random keys do not depend on margin ties or block sizes
        rows, margins = lowest_margin_rows(ctx, k_m, aggregate)
        ctx.report("cluster-margin: margins", 1, 1)
        clusters = np.asarray(ctx.clusters, dtype=np.int64)[rows]
        rng = ctx.rng()
        keys = rng.random(len(rows))
        cluster_keys = rng.random(len(np.unique(clusters)))
        pick, passes, n_cand_clusters = round_robin(rows, clusters, b, keys, cluster_keys)
        chosen_clusters = clusters[pick]
        summary = {
            "candidates": int(k_m), "candidates_ratio": ratio, "candidate_clusters": int(n_cand_clusters),
            "clusters_covered": int(len(np.unique(chosen_clusters))),
            "round_robin_passes": int(passes.max()) + 1 if len(passes) else 0,
            "candidate_margin_max": float(margins.max()) if len(margins) else None,
        }
        return Selection(indices=rows[pick], scores=margins[pick], columns={"cluster": chosen_clusters},
                         summary=summary)
