"""k-nearest-neighbour search over a pool with faiss: the graph for large-pool HAC.

The index is built on the driver by streaming the pool's blocks into it;
the queries are a map over shards (``search_partial``: each shard range's
rows against the index) so that an engine can run them in parallel. faiss
uses the GPU build's devices when present (``alq.device.faiss_gpu_count``).

Index choice (``plan_index``): exact ``IndexFlatL2`` up to
``FLAT_MAX_ROWS`` rows (brute force is 2 N^2 d flops: 50k x 128 is about
10 s on 2 cores); above it an inverted-file index ``IndexIVFFlat`` with
about 2 sqrt(N) lists, trained on a seeded sample, whose ``nprobe`` is
raised until the measured recall@k on a seeded sample of queries (against a
streamed brute-force search) reaches ``TARGET_RECALL``. The measured recall
is reported, so a user can see how approximate the graph is.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from alq.device import faiss_gpu_count, faiss_set_nprobe, faiss_to_gpu
from alq.errors import BadInputError, MissingFeatureError

FLAT_MAX_ROWS = 50_000
TARGET_RECALL = 0.95
RECALL_QUERIES = 1000
MAX_NPROBE = 256


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a runtime dependency
        raise MissingFeatureError("faiss is not installed (pip install faiss-cpu, or faiss-gpu)") from None
    return faiss


def prepare(vectors: np.ndarray, normalize: str | None, row0: int | None = None) -> np.ndarray:
    """float32, C-contiguous, l2-normalised when asked: what faiss and the distances see. Shape (n, d).

    ``row0`` (the pool index of the first row) lets an error name the offending row.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if normalize == "l2":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            bad = int(np.flatnonzero(norms[:, 0] == 0)[0])
            where = f"pool row {row0 + bad}" if row0 is not None else "a pool row"
            raise BadInputError(f"--normalize l2: {where} is all zeros and has no direction",
                                hint="drop --normalize or remove that row")
        x = x / norms
    return x


def plan_index(n: int, kind: str = "auto") -> dict:
    if kind == "auto":
        kind = "flat" if n <= FLAT_MAX_ROWS else "ivf"
    if kind == "flat":
        return {"kind": "flat"}
    if kind == "ivf":
        nlist = int(max(1, min(n // 39, round(2 * math.sqrt(n)))))
        return {"kind": "ivf", "nlist": nlist, "train_rows": int(min(n, 40 * nlist))}
    raise BadInputError(f"index kind {kind!r} must be auto, flat or ivf")


class IndexRef:
    """A faiss index that pickles (as its serialized bytes), so map tasks can receive it."""

    def __init__(self, index, *, nprobe: int | None = None):
        self.index = index
        self.nprobe = nprobe
        self._apply_nprobe()

    def _apply_nprobe(self):
        if self.nprobe is not None:
            faiss_set_nprobe(self.index, self.nprobe)

    def __getstate__(self):
        faiss = _faiss()
        index = self.index
        if faiss_gpu_count() > 0 and hasattr(faiss, "index_gpu_to_cpu"):
            try:
                index = faiss.index_gpu_to_cpu(index)
            except (RuntimeError, AttributeError):
                pass
        return {"bytes": faiss.serialize_index(index), "nprobe": self.nprobe}

    def __setstate__(self, state):
        faiss = _faiss()
        self.index = _to_gpu(faiss.deserialize_index(state["bytes"]))
        self.nprobe = state["nprobe"]
        self._apply_nprobe()

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(squared L2 distances (n, k) float32, labels (n, k) int64; -1 where fewer than k found)."""
        return self.index.search(x, int(k))


def _to_gpu(index):
    return faiss_to_gpu(index)


def block_rows_for(pool, k: int) -> int:
    return pool.block_rows(pool.dim * (pool.dtype.itemsize + 4) + (k + 1) * 12 * 2)


def build_index(pool, *, hi: int | None = None, normalize: str | None = None, kind: str = "auto",
                seed: int = 0, k_for_recall: int = 10, progress=None) -> tuple[IndexRef, dict]:
    """Index rows [0, hi) of the pool (all by default). Returns (index, info for clusters.json)."""
    faiss = _faiss()
    n = pool.count if hi is None else int(hi)
    if n < 1:
        raise BadInputError("cannot index an empty pool")
    plan = plan_index(n, kind)
    d = pool.dim
    if plan["kind"] == "flat":
        index = _to_gpu(faiss.IndexFlatL2(d))
    else:
        quantizer = faiss.IndexFlatL2(d)
        cpu = faiss.IndexIVFFlat(quantizer, d, plan["nlist"], faiss.METRIC_L2)
        cpu.cp.seed = int(seed) % (2**31)
        cpu.cp.niter = 10
        index = _to_gpu(cpu)
        gcp = getattr(index, "cp", None)  # a GPU IVF index trains with its own clustering parameters
        if index is not cpu and gcp is not None:
            gcp.seed, gcp.niter = cpu.cp.seed, cpu.cp.niter
        rng = np.random.default_rng([seed, 7])
        sample = np.sort(rng.choice(n, size=plan["train_rows"], replace=False))
        index.train(prepare(pool.take(sample, dtype=np.float32), normalize))
    step = block_rows_for(pool, 0)
    done = 0
    for block in pool.iter_blocks(block_rows=step, lo=0, hi=n):
        index.add(prepare(block.vectors, normalize, block.start))
        done += len(block.vectors)
        if progress is not None:
            progress("index", done, n)
    info = {"index": plan["kind"], "gpu": faiss_gpu_count() > 0}
    ref = IndexRef(index)
    if plan["kind"] == "ivf":
        info.update(nlist=plan["nlist"], train_rows=plan["train_rows"])
        nprobe, recall = tune_nprobe(pool, ref, n, k_for_recall, normalize=normalize, seed=seed, nlist=plan["nlist"])
        ref.nprobe = nprobe
        ref._apply_nprobe()
        info.update(nprobe=nprobe, recall_at_k=round(recall, 4), recall_queries=min(RECALL_QUERIES, n))
    else:
        info["recall_at_k"] = 1.0
    return ref, info


def exact_knn(pool, queries: np.ndarray, k: int, *, hi: int, normalize: str | None,
              query_rows: np.ndarray | None = None) -> np.ndarray:
    """Brute-force k nearest rows in [0, hi) of each query (q, d), streamed over the pool. (q, k) int64.

    ``query_rows`` (global indices of the queries) are excluded from their own lists.
    """
    q = torch.from_numpy(prepare(queries, normalize))
    qn = (q * q).sum(1, keepdim=True)
    best_d = torch.full((len(q), k), float("inf"))
    best_i = torch.full((len(q), k), -1, dtype=torch.int64)
    # the (queries, block) distance matrix and its concatenation dominate: size blocks by them
    rows = pool.block_rows(pool.dim * (pool.dtype.itemsize + 4) + len(q) * 8 * 3)
    for block in pool.iter_blocks(block_rows=rows, lo=0, hi=hi):
        x = torch.from_numpy(np.array(prepare(block.vectors, normalize), copy=True))
        d2 = qn + (x * x).sum(1)[None, :] - 2 * q @ x.T
        idx = torch.arange(block.start, block.stop, dtype=torch.int64)
        if query_rows is not None:
            d2[torch.from_numpy(query_rows)[:, None] == idx[None, :]] = float("inf")
        cat_d = torch.cat([best_d, d2], 1)
        cat_i = torch.cat([best_i, idx.expand(len(q), -1)], 1)
        top = torch.topk(cat_d, min(k, cat_d.shape[1]), dim=1, largest=False)
        best_d, best_i = top.values, torch.gather(cat_i, 1, top.indices)
    return best_i.numpy()


def tune_nprobe(pool, ref: IndexRef, n: int, k: int, *, normalize, seed: int, nlist: int) -> tuple[int, float]:
    """Smallest nprobe (doubling from 1) whose recall@k on sampled queries reaches TARGET_RECALL."""
    rng = np.random.default_rng([seed, 11])
    rows = np.sort(rng.choice(n, size=min(RECALL_QUERIES, n), replace=False))
    k = max(1, min(k, n - 1))
    queries = pool.take(rows, dtype=np.float32)
    truth = exact_knn(pool, queries, k, hi=n, normalize=normalize, query_rows=rows)
    x = prepare(queries, normalize)
    nprobe, recall = 1, 0.0
    while True:
        ref.nprobe = min(nprobe, nlist)
        ref._apply_nprobe()
        _, got = ref.search(x, k + 1)
        recall = _recall(got, truth, rows)
        if recall >= TARGET_RECALL or nprobe >= min(nlist, MAX_NPROBE):
            return ref.nprobe, recall
        nprobe *= 2


def _recall(got: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> float:
    hits = 0
    for g, t, r in zip(got, truth, rows):
        hits += len(set(g[g != r][: len(t)].tolist()) & set(t.tolist()))
    return hits / max(1, truth.size)


# faiss's float32 |x|^2 + |y|^2 - 2 x.y is off by about this much times |x|^2 (with a margin)
_FAISS_TOL = 1e-5


def _exact_near(pool, x: np.ndarray, idx: np.ndarray, d2: np.ndarray, normalize: str | None) -> np.ndarray:
    """Squared distances with the near pairs recomputed from ``x - y`` in float64; rows re-sorted.

    faiss's expansion leaves identical rows at a small positive distance
    (enough to split duplicates at ``--threshold 0``); a pair whose value is
    within its rounding of 0 is read back and computed directly, so
    duplicates are at exactly 0. Only such near pairs are re-read.
    """
    qn = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    near = (idx >= 0) & (d2 <= _FAISS_TOL * qn[:, None])
    if not near.any():
        return d2
    qi, col = np.nonzero(near)
    rows, where = np.unique(idx[qi, col], return_inverse=True)
    y = prepare(pool.take(rows, dtype=np.float32), normalize).astype(np.float64)
    d2 = d2.astype(np.float64)
    d2[qi, col] = ((x[qi].astype(np.float64) - y[where.reshape(-1)]) ** 2).sum(1)
    order = np.argsort(np.where(idx >= 0, d2, np.inf), axis=1, kind="stable")
    idx[...] = np.take_along_axis(idx, order, 1)
    return np.take_along_axis(d2, order, 1)


def search_partial(pool, lo: int, hi: int, ref: IndexRef, k: int, normalize: str | None,
                   exclude_self: bool, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Map task: the k nearest indexed rows of pool rows [max(lo, start), hi).

    Returns (neighbours (n, k) int64, Euclidean distances (n, k) float32);
    -1 / +inf where fewer than k were found. With ``exclude_self`` a row is
    never its own neighbour (it asks for k + 1 and drops itself).
    """
    lo = max(lo, start)
    n = max(0, hi - lo)
    nbr = np.full((n, k), -1, dtype=np.int64)
    dist = np.full((n, k), np.inf, dtype=np.float32)
    if n == 0:
        return nbr, dist
    kk = k + 1 if exclude_self else k
    kk = min(kk, ref.ntotal)
    for block in pool.iter_blocks(block_rows=block_rows_for(pool, kk), lo=lo, hi=hi):
        x = prepare(block.vectors, normalize)
        d2, idx = ref.search(x, kk)
        r0 = block.start - lo
        if exclude_self:
            own = idx == np.arange(block.start, block.stop, dtype=np.int64)[:, None]
            # drop the row itself if found, else the farthest candidate
            drop = np.where(own.any(1), own.argmax(1), kk - 1)
            keep = np.ones_like(own)
            keep[np.arange(len(idx)), drop] = False
            idx = idx[keep].reshape(len(idx), kk - 1)
            d2 = d2[keep].reshape(len(idx), kk - 1)
        d2 = _exact_near(pool, x, idx, d2, normalize)
        m = min(k, idx.shape[1])
        nbr[r0:r0 + len(idx), :m] = idx[:, :m]
        dist[r0:r0 + len(idx), :m] = np.sqrt(np.maximum(d2[:, :m], 0))
    dist[nbr < 0] = np.inf
    return nbr, dist
