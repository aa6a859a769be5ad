"""faiss helpers: k-nearest-neighbour graphs, k-means, nearest centroid (GPU when present).

Exact (flat) search up to ``EXACT_MAX_ROWS`` indexed rows; above that an
IVF index (nlist = 4 sqrt(n) lists trained on a seeded sample, nprobe = 16),
which is approximate: the kNN graph of a large candidate set is a sparse
stand-in for the dense similarity anyway (Wei et al. 2014, "Fast
multi-stage submodular maximization").
"""

from __future__ import annotations

import math

import numpy as np

from alq.device import faiss_gpu_count, faiss_to_gpu

EXACT_MAX_ROWS = 50_000
NPROBE = 16


def _faiss():
    import faiss

    return faiss


def _maybe_gpu(index):
    return faiss_to_gpu(index)


def build_index(x: np.ndarray, *, inner_product: bool, seed: int = 0, exact_max: int = EXACT_MAX_ROWS):
    """A faiss index over float32 rows ``x`` (n, d): flat when n <= exact_max, else IVF-flat."""
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    metric = faiss.METRIC_INNER_PRODUCT if inner_product else faiss.METRIC_L2
    if n <= exact_max:
        index = faiss.IndexFlatIP(d) if inner_product else faiss.IndexFlatL2(d)
    else:
        nlist = int(4 * math.sqrt(n))
        quantizer = faiss.IndexFlatIP(d) if inner_product else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
        index.cp.seed = int(seed)
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(n, min(n, 64 * nlist), replace=False))]
        index.train(sample)
        index.nprobe = NPROBE
    index = _maybe_gpu(index)
    index.add(x)
    return index


def knn_graph(x: np.ndarray, k: int, *, seed: int = 0, exact_max: int = EXACT_MAX_ROWS
              ) -> tuple[np.ndarray, np.ndarray]:
    """Cosine kNN graph of the rows of ``x`` (n, d): (neighbours (n, k) int64, similarity (n, k) float32).

    Column 0 is the row itself (similarity 1); the others are its k - 1 most
    similar other rows. Similarities are clipped at 0; missing neighbours
    (IVF) point to the row itself with similarity 0.
    """
    x = normalize_rows(x)
    n = len(x)
    k = max(1, min(k, n))
    index = build_index(x, inner_product=True, seed=seed, exact_max=exact_max)
    sims, nbrs = index.search(x, min(n, k + 1))
    own = np.arange(n, dtype=np.int64)[:, None]
    is_self = nbrs == own
    order = np.argsort(is_self, axis=1, kind="stable")[:, : k - 1]  # others first, in similarity order
    other = np.take_along_axis(nbrs, order, axis=1)
    other_sim = np.take_along_axis(sims, order, axis=1)
    missing = other < 0
    other = np.where(missing, own, other)
    other_sim = np.where(missing, 0.0, other_sim)
    nbr = np.concatenate([own, other], axis=1).astype(np.int64)
    sim = np.concatenate([np.ones((n, 1), np.float32), np.clip(other_sim, 0, None).astype(np.float32)], axis=1)
    return nbr, sim


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


def kmeans(x: np.ndarray, k: int, *, seed: int, niter: int = 20) -> np.ndarray:
    """faiss k-means centroids (k, d) of float32 rows ``x``, seeded."""
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], int(k), niter=niter, seed=int(seed) % (2**31), verbose=False,
                      gpu=faiss_gpu_count() > 0, max_points_per_centroid=max(256, -(-len(x) // k)),
                      min_points_per_centroid=1)  # faiss only warns below it (on stderr, past -q); few points are fine
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32).reshape(k, x.shape[1])


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(squared L2 distance, index) of each row's nearest centroid (exact)."""
    faiss = _faiss()
    index = _maybe_gpu(faiss.IndexFlatL2(centroids.shape[1]))
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return dist[:, 0], idx[:, 0].astype(np.int64)
