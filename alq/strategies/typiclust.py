"""typiclust: the most typical row of each of the largest uncovered clusters (cold start; no head).

Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite
Strategies Suit High and Low Budgets" (ICML 2022). faiss k-means (seeded)
of the pool's embeddings into K = b + (labeled and pending rows) clusters
(the paper's |L| + b; exactly b with no labels; ``--option clusters=K``),
fitted on a seeded sample of at most 256 rows per cluster (and at most
``ALQ_WORKING_MEMORY`` of rows, but >= 40 per cluster) and assigned exactly
over the whole pool (a streamed map). Above ``FLAT_MAX_CLUSTERS`` clusters (a large cold-start
budget) flat k-means costs n K d per iteration, out of reach at K = 100,000,
so the clusters come from two-level k-means (``alq.diversity.hkmeans``:
sqrt(K) coarse cells, fine centroids split among them by size; n sqrt(K) d per
iteration); ``--option kmeans=flat|two-level`` forces either. Clusters are visited uncovered first (no labeled or
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
from alq.diversity.hkmeans import TwoLevelCentroids, two_level_kmeans
from alq.diversity.knn import kmeans, nearest_centroid
from alq.engine import LocalEngine
from alq.errors import BadInputError
from alq.strategies.base import Context, Selection, Strategy, register
from alq.strategies.facility_location import _int_option

DEFAULT_KNN = 20
DEFAULT_TYPICALITY_SAMPLE = 20_000
POINTS_PER_CENTROID = 256
# flat k-means up to this many clusters, two-level above. Quality (bench_cold_start.py, Fashion-MNIST,
# seed set of 200, 3 repeats): top-1 0.7207 flat vs 0.7325 two-level (random 0.7202, kcenter 0.5039)
FLAT_MAX_CLUSTERS = 2_000
KMEANS_CHOICES = ("auto", "flat", "two-level")
EXACT_TYPICALITY_ROWS = 2_048
BATCH_TYPICALITY_ROWS = 64
QUEUE_CHUNK = 1_024  # clusters whose members are read in one take
TWO_LEVEL_POINTS_PER_CENTROID = 16  # fit rows per fine centroid when the pool has more (1.6M rows at K = 100k)


def assign_rows(pool, lo: int, hi: int, centroids) -> np.ndarray:
    """Map step: cluster (int32) of every row in [lo, hi): nearest centroid, or two-level assignment."""
    out = np.empty(hi - lo, np.int32)
    for block in pool.iter_blocks(lo=lo, hi=hi):
        x = np.asarray(block.vectors, np.float32)
        if isinstance(centroids, TwoLevelCentroids):
            out[block.start - lo:block.stop - lo] = centroids.assign(x)
        else:
            out[block.start - lo:block.stop - lo] = nearest_centroid(x, centroids)[1]
    return out


def kmeans_kind(ctx: Context, n_clusters: int) -> str:
    kind = ctx.option("kmeans", "auto")
    if kind not in KMEANS_CHOICES:
        raise BadInputError(f"--option kmeans={kind!r} must be one of: {', '.join(KMEANS_CHOICES)}")
    if kind == "auto":
        return "flat" if n_clusters <= FLAT_MAX_CLUSTERS else "two-level"
    return kind


def typicality(x: np.ndarray, k: int) -> np.ndarray:
    """1 / mean distance to the k nearest other rows of ``x`` (n, d); k capped at n - 1; 0 for n == 1.

    Plain BLAS over query chunks: a cluster is small next to the pool (about n / b rows at a large
    budget), where a faiss index per cluster costs milliseconds of set-up each. float64 up to
    ``EXACT_TYPICALITY_ROWS`` members (ties between rows then rank the same as a brute-force
    reference), float32 GEMM above.
    """
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n)
    dtype = np.float64 if n <= EXACT_TYPICALITY_ROWS else np.float32
    x = np.asarray(x, dtype=dtype)
    sq = (x * x).sum(axis=1)
    out = np.empty(n)
    step = max(1, (1 << 24) // n)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        d2 = sq[lo:hi, None] + sq[None, :] - 2.0 * (x[lo:hi] @ x.T)
        d2[np.arange(hi - lo), np.arange(lo, hi)] = np.inf  # not its own neighbour
        near = np.partition(d2, k - 1, axis=1)[:, :k]
        out[lo:hi] = np.sqrt(np.clip(near, 0, None).astype(np.float64)).mean(axis=1)
    return 1.0 / np.maximum(out, 1e-12)


def typicality_many(xs: list[np.ndarray], k: int) -> list[np.ndarray]:
    """:func:`typicality` of many small clusters at once: same-size-class clusters as one batched GEMM.

    At a large budget there are about b clusters of n / b rows each; one numpy call per cluster then
    costs more in overhead than in arithmetic. Clusters of up to ``BATCH_TYPICALITY_ROWS`` rows are
    padded to the next power of two and computed together (float64, padding at +inf); larger ones
    one at a time.
    """
    out: list[np.ndarray | None] = [None] * len(xs)
    buckets: dict[int, list[int]] = {}
    for i, x in enumerate(xs):
        n = len(x)
        if n <= 1 or n > BATCH_TYPICALITY_ROWS:
            out[i] = typicality(x, k)
        else:
            buckets.setdefault(1 << (n - 1).bit_length(), []).append(i)
    for m, ids in buckets.items():
        for lo in range(0, len(ids), max(1, (1 << 22) // (m * m))):
            part = ids[lo:lo + max(1, (1 << 22) // (m * m))]
            sizes = np.array([len(xs[i]) for i in part])
            x = np.zeros((len(part), m, xs[part[0]].shape[1]))
            for j, i in enumerate(part):
                x[j, :sizes[j]] = xs[i]
            sq = np.einsum("gmd,gmd->gm", x, x)
            d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * np.matmul(x, x.transpose(0, 2, 1))
            pad = np.arange(m)[None, :] >= sizes[:, None]
            d2[np.broadcast_to(pad[:, None, :], d2.shape)] = np.inf
            d2[:, np.arange(m), np.arange(m)] = np.inf  # not its own neighbour
            kk = np.minimum(k, sizes - 1)
            near = np.sqrt(np.clip(np.sort(d2, axis=2)[:, :, :kk.max()], 0, None))
            near[np.broadcast_to(np.arange(kk.max())[None, None, :] >= kk[:, None, None], near.shape)] = 0.0
            mean = near.sum(axis=2) / kk[:, None]
            for j, i in enumerate(part):
                out[i] = 1.0 / np.maximum(mean[j, :sizes[j]], 1e-12)
    return out  # type: ignore[return-value]


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
    pending = iter(active)  # first visits come in this order: queues are built ahead in chunks

    def build_queues() -> None:
        chunk = [c for _, c in zip(range(QUEUE_CHUNK), pending)]
        mems = []
        for c in chunk:
            mem = members[starts[c]:starts[c + 1]]
            if len(mem) > sample:
                mem = np.sort(rng.choice(mem, sample, replace=False))
            mems.append(mem)
        union = np.unique(np.concatenate(mems)) if mems else np.empty(0, np.int64)
        vec = vectors(union)
        typs = typicality_many([vec[np.searchsorted(union, mem)] for mem in mems], k)
        for c, mem, typ in zip(chunk, mems, typs):
            free = ~excluded[mem]
            cand, typ = mem[free], typ[free]
            rank = np.lexsort((cand, -typ))  # most typical first, ties: smaller row
            rest = np.setdiff1d(members[starts[c]:starts[c + 1]], mem) if len(mem) < size[c] else mem[:0]
            rest = rest[~excluded[rest]]  # unsampled members: eligible after the sampled ones
            queues[c] = (np.concatenate([cand[rank], rest]), np.concatenate([typ[rank], np.zeros(len(rest))]))

    while len(rows) < budget and active:
        still = []
        for c in active:
            if len(rows) == budget:
                still.append(c)
                continue
            if c not in queues:
                build_queues()
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
        kind = kmeans_kind(ctx, n_clusters)
        per_centroid = 40 if kind == "flat" else TWO_LEVEL_POINTS_PER_CENTROID
        cap = max(per_centroid * n_clusters, working_memory_bytes() // (4 * pool.dim))
        n_fit = min(pool.count, POINTS_PER_CENTROID * n_clusters, cap)
        fit_rows = np.sort(rng.choice(pool.count, n_fit, replace=False))
        fit = pool.take(fit_rows, dtype=np.float32)
        if kind == "flat":
            centroids = kmeans(fit, n_clusters, seed=ctx.seed)
        else:
            centroids = two_level_kmeans(fit, n_clusters, seed=ctx.seed,
                                         progress=lambda done, total: ctx.report("typiclust k-means", done, total))
        del fit
        engine = ctx.engine or LocalEngine()
        labels = np.concatenate(engine.map_pool(assign_rows, pool, centroids)).astype(np.int64)
        rows, typ, clusters = pick_typical(labels, ctx.excluded, ctx.budget,
                                           lambda r: pool.take(r, dtype=np.float32), k=k, sample=sample, rng=rng)
        return Selection(indices=rows, scores=typ, columns={"cluster": clusters},
                         summary={"typiclust": {"clusters": n_clusters, "fit_rows": int(n_fit), "kmeans": kind,
                                                "clusters_used": int(len(np.unique(clusters)))}})
