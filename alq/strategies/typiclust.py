"""typiclust: the most typical row of each of the largest uncovered clusters (cold start; no head).

Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite
Strategies Suit High and Low Budgets" (ICML 2022). faiss k-means (seeded)
of the pool's embeddings into K = b + (labeled and pending rows) clusters
(the paper's |L| + b; exactly b with no labels; ``--option clusters=K``),
fitted on a seeded sample of at most 256 rows per cluster (and at most
``ALQ_WORKING_MEMORY`` of rows, but >= 40 per cluster) and assigned exactly
over the whole pool (a streamed map). Clusters are visited uncovered first (no labeled or
pending row), then by size (largest first), then by id; each visit takes
the unlabeled row of highest typicality in that cluster, round-robin
until b rows are taken. Typicality(x) = 1 / (mean L2 distance to its k
nearest neighbours within the cluster), k = ``--option knn=K`` (default 20)
capped at the cluster size - 1 (a singleton has typicality 0). Clusters
larger than ``--option typicality_sample=M`` (default 20,000) estimate it on
a seeded sample of M members (all unlabeled ones among them stay eligible
only if sampled).
"""

from __future__ import annotations

import numpy as np

from alq.config import working_memory_bytes
from alq.diversity.knn import build_index, kmeans, nearest_centroid
from alq.engine import LocalEngine
from alq.errors import BadInputError
from alq.strategies.base import Context, Selection, Strategy, register
from alq.strategies.facility_location import _int_option

DEFAULT_KNN = 20
DEFAULT_TYPICALITY_SAMPLE = 20_000
POINTS_PER_CENTROID = 256


def assign_rows(pool, lo: int, hi: int, centroids: np.ndarray) -> np.ndarray:
    """Map step: nearest centroid (int32) of every row in [lo, hi)."""
    out = np.empty(hi - lo, np.int32)
    for block in pool.iter_blocks(lo=lo, hi=hi):
        out[block.start - lo:block.stop - lo] = nearest_centroid(np.asarray(block.vectors, np.float32), centroids)[1]
    return out


def typicality(x: np.ndarray, k: int) -> np.ndarray:
    """1 / mean distance to the k nearest other rows of ``x`` (n, d); k capped at n - 1; 0 for n == 1."""
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n)
    index = build_index(x, inner_product=False, exact_max=max(n, 1))
    d2, nb = index.search(np.ascontiguousarray(x, np.float32), k + 1)
    own = nb == np.arange(n)[:, None]
    # drop the row itself (or, among exact duplicates, one zero distance), keep k
    order = np.argsort(own, axis=1, kind="stable")[:, :k]
    d = np.sqrt(np.clip(np.take_along_axis(d2, order, axis=1), 0, None).astype(np.float64))
    return 1.0 / np.maximum(d.mean(axis=1), 1e-12)


def pick_typical(labels: np.ndarray, excluded: np.ndarray, budget: int, vectors, *, k: int, sample: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Round-robin over clusters (uncovered, larger, smaller id first), most typical unlabeled row each visit.

    ``labels`` (N,) cluster of every row; ``vectors(rows)`` gives float32 embeddings.
    Returns (rows, typicality, cluster) in pick order.
    """
    n_clusters = int(labels.max()) + 1
    size = np.bincount(labels, minlength=n_clusters)
    covered = np.bincount(labels[excluded], minlength=n_clusters) > 0
    order = np.lexsort((np.arange(n_clusters), -size, covered))
    members = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(size)])
    queues: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    rows, scores, clusters = [], [], []
    active = [int(c) for c in order if size[c] > 0]
    while len(rows) < budget and active:
        still = []
        for c in active:
            if len(rows) == budget:
                still.append(c)
                continue
            if c not in queues:
                mem = members[starts[c]:starts[c + 1]]
                if len(mem) > sample:
                    mem = np.sort(rng.choice(mem, sample, replace=False))
                typ = typicality(vectors(mem), k)
                free = ~excluded[mem]
                cand, typ = mem[free], typ[free]
                rank = np.lexsort((cand, -typ))  # most typical first, ties: smaller row
                rest = np.setdiff1d(members[starts[c]:starts[c + 1]], mem)
                rest = rest[~excluded[rest]]  # unsampled members: eligible after the sampled ones
                queues[c] = (np.concatenate([cand[rank], rest]), np.concatenate([typ[rank], np.zeros(len(rest))]))
            cand, typ = queues[c]
            if len(cand):
                rows.append(int(cand[0]))
                scores.append(float(typ[0]))
                clusters.append(c)
                queues[c] = (cand[1:], typ[1:])
            if len(queues[c][0]):
                still.append(c)
        active = still
    return np.asarray(rows, np.int64), np.asarray(scores, np.float64), np.asarray(clusters, np.int64)


@register
class TypiClustStrategy(Strategy):
    name = "typiclust"
    help = "k-means into budget (+ labeled) clusters; most typical row of each uncovered cluster (cold start)"
    needs_head = False
    score_meaning = "typicality: 1 / mean distance to its k nearest neighbours in its cluster"
    distributed = "driver"

    def select(self, ctx: Context) -> Selection:
        k = _int_option(ctx, "knn", DEFAULT_KNN)
        sample = _int_option(ctx, "typicality_sample", DEFAULT_TYPICALITY_SAMPLE, 2)
        pool = ctx.pool
        n_excluded = int(np.count_nonzero(ctx.excluded))
        n_clusters = _int_option(ctx, "clusters", ctx.budget + n_excluded)
        if n_clusters > pool.count:
            raise BadInputError(f"--option clusters={n_clusters} exceeds the {pool.count} pool rows")
        rng = ctx.rng(5)
        cap = max(40 * n_clusters, working_memory_bytes() // (4 * pool.dim))
        n_fit = min(pool.count, POINTS_PER_CENTROID * n_clusters, cap)
        fit_rows = np.sort(rng.choice(pool.count, n_fit, replace=False))
        centroids = kmeans(pool.take(fit_rows, dtype=np.float32), n_clusters, seed=ctx.seed)
        engine = ctx.engine or LocalEngine()
        labels = np.concatenate(engine.map_pool(assign_rows, pool, centroids)).astype(np.int64)
        rows, typ, clusters = pick_typical(labels, ctx.excluded, ctx.budget,
                                           lambda r: pool.take(r, dtype=np.float32), k=k, sample=sample, rng=rng)
        return Selection(indices=rows, scores=typ, columns={"cluster": clusters},
                         summary={"typiclust": {"clusters": n_clusters, "fit_rows": int(n_fit),
                                                "clusters_used": int(len(np.unique(clusters)))}})
