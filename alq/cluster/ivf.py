"""How the kNN graph's inverted-file index is made: how many lists, their centroids, their quantizer.

Below ``TWO_LEVEL_FROM`` rows: about 4 sqrt(N) lists, centroids by one
faiss k-means, a flat (exact) quantizer. Every query then pays a GEMM
against all 4 sqrt(N) centroids and scans nprobe lists of sqrt(N) / 4
rows: sqrt(N) work per query, N^1.5 for the graph (measured: 1M -> 5M
rows took 11x on the search; the quantizer alone was 250 s of it at 5M).

Above: lists of about ``ROWS_PER_LIST`` rows (N / 256 of them), so a
probe costs the same at any N, with

- centroids by two-level k-means (:mod:`alq.diversity.hkmeans`:
  sqrt(nlist) coarse cells, then k-means inside each, n sqrt(nlist) d per
  iteration instead of n nlist d), and
- a quantizer that is itself an IVF over those centroids, its lists the
  coarse cells: a query compares sqrt(nlist) coarse centroids and the fine
  centroids of ``QUANTIZER_NPROBE`` cells, not all nlist.

The planner (:mod:`alq.cluster.knn`) then measures recall and cost on its
sample exactly as for the flat quantizer, so a quantizer that misses a
query's nearest lists shows up as a larger nprobe, not as a silent loss.
With a GPU the flat quantizer is kept (a GEMM there is cheap).
"""

from __future__ import annotations

import math

import numpy as np

from alq.cluster.exactknn import _faiss, prepare
from alq.device import faiss_gpu_count, faiss_to_gpu
from alq.errors import BadInputError

LISTS_PER_SQRT_N = 4
TRAIN_ROWS_PER_LIST = 39  # faiss warns below 39 training points per centroid
TWO_LEVEL_FROM = 1_000_000  # rows from which the quantizer is two-level (and lists keep a fixed size)
ROWS_PER_LIST = 256
QUANTIZER_NPROBE = 8  # coarse cells a query's nearest lists are looked for in
ADD_QUANTIZER_NPROBE = 4  # the same when adding a row (only its nearest list is needed)


def ivf_lists(n: int) -> int:
    """About 4 sqrt(N) lists (the cost optimum for nprobe near 16 under a flat quantizer), or N / 256 when
    that is more (from 65,536 rows; used with the two-level quantizer); at least 39 rows per list."""
    lists = max(LISTS_PER_SQRT_N * math.sqrt(n), n / ROWS_PER_LIST)
    return int(max(1, min(n // TRAIN_ROWS_PER_LIST, round(lists))))


def plan_index(n: int, kind: str = "auto", *, flat_max_rows: int = 20_000) -> dict:
    """The index family before measurement: flat for small pools (or when asked), else IVF."""
    if kind == "auto":
        kind = "flat" if n <= flat_max_rows else "ivf"
    if kind == "flat":
        return {"kind": "flat"}
    if kind == "ivf":
        nlist = ivf_lists(n)
        plan = {"kind": "ivf", "nlist": nlist, "train_rows": int(min(n, TRAIN_ROWS_PER_LIST * nlist))}
        if n >= TWO_LEVEL_FROM and faiss_gpu_count() == 0:
            plan.update(quantizer="two-level", quantizer_nprobe=QUANTIZER_NPROBE)
        return plan
    raise BadInputError(f"index kind {kind!r} must be auto, flat or ivf")


def block_rows_for(pool, k: int) -> int:
    return pool.block_rows(pool.dim * (pool.dtype.itemsize + 4) + (k + 1) * 12 * 2)


def add_rows(index, pool, n: int, normalize: str | None, progress, stage: str = "index|index: adding rows") -> None:
    add_rows_range(index, pool, 0, n, normalize, progress, stage)


def add_rows_range(index, pool, lo: int, hi: int, normalize: str | None, progress=None, stage: str = "index"):
    """Add pool rows [lo, hi) to the index, in bounded native calls (signals are seen between them)."""
    step = block_rows_for(pool, 0)
    done = 0
    for block in pool.iter_blocks(block_rows=step, lo=lo, hi=hi):
        x = prepare(block.vectors, normalize, block.start)
        for i in range(0, len(x), 16384):
            index.add(x[i:i + 16384])
        done += len(x)
        if progress is not None:
            progress(stage, done, hi - lo)


def flat_index(pool, n: int, normalize, progress):
    faiss = _faiss()
    index = faiss_to_gpu(faiss.IndexFlatL2(pool.dim))
    add_rows(index, pool, n, normalize, progress)
    return index


def ivf_index(pool, n: int, plan: dict, normalize, seed: int, progress):
    """An ``IndexIVFFlat`` over rows [0, n), trained on a seeded sample of ``plan["train_rows"]`` rows."""
    faiss = _faiss()
    d = pool.dim
    rng = np.random.default_rng([seed, 7])
    sample = np.sort(rng.choice(n, size=plan["train_rows"], replace=False))
    if progress is not None:
        progress("index|index: k-means training", 0, 1)
    train = prepare(pool.take(sample, dtype=np.float32), normalize)
    if plan.get("quantizer") == "two-level":
        index = _two_level_ivf(train, d, plan, seed)
    else:
        quantizer = faiss.IndexFlatL2(d)
        cpu = faiss.IndexIVFFlat(quantizer, d, plan["nlist"], faiss.METRIC_L2)
        cpu.cp.seed = int(seed) % (2**31)
        cpu.cp.niter = 10
        index = faiss_to_gpu(cpu)
        gcp = getattr(index, "cp", None)  # a GPU IVF index trains with its own clustering parameters
        if index is not cpu and gcp is not None:
            gcp.seed, gcp.niter = cpu.cp.seed, cpu.cp.niter
        index.train(train)
    del train
    quantizer = faiss.downcast_index(index.quantizer) if plan.get("quantizer") == "two-level" else None
    if quantizer is not None:
        quantizer.nprobe = min(ADD_QUANTIZER_NPROBE, quantizer.nlist)
    add_rows(index, pool, n, normalize, progress)
    if quantizer is not None:
        quantizer.nprobe = min(int(plan["quantizer_nprobe"]), quantizer.nlist)
    return index


def _two_level_ivf(train: np.ndarray, d: int, plan: dict, seed: int):
    """IndexIVFFlat whose quantizer is an IVF over the fine centroids of a two-level k-means (module docstring)."""
    from alq.diversity.hkmeans import two_level_kmeans

    faiss = _faiss()
    cents = two_level_kmeans(train, plan["nlist"], seed=int(seed) % (2**31), niter=10)
    coarse = faiss.IndexFlatL2(d)
    coarse.add(np.ascontiguousarray(cents.coarse, dtype=np.float32))
    quantizer = faiss.IndexIVFFlat(coarse, d, len(cents.coarse), faiss.METRIC_L2)
    quantizer.is_trained = True
    quantizer.add(np.ascontiguousarray(cents.fine, dtype=np.float32))
    quantizer.nprobe = min(int(plan["quantizer_nprobe"]), len(cents.coarse))
    index = faiss.IndexIVFFlat(quantizer, d, plan["nlist"], faiss.METRIC_L2)
    if not index.is_trained:  # pragma: no cover - faiss marks it trained when the quantizer holds nlist centroids
        raise RuntimeError("two-level quantizer: the IVF index is not trained")
    return index
