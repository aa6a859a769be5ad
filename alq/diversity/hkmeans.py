"""Two-level k-means: K centroids for K in the hundred thousands, at O(n sqrt(K) d) per iteration.

Flat k-means costs n K d per iteration, which at a cold-start budget of
100,000 clusters is out of reach (1M rows x 100k centroids x 128 dims x 20
iterations = 5e14 flops). Here K1 = ceil(sqrt(K)) coarse centroids are fitted
first, every fit row goes to its nearest coarse centroid, and each coarse
cell gets a share of the K fine centroids proportional to its rows (at least
one, at most its rows), fitted by k-means on that cell's rows only. A row's
cluster is then the nearest fine centroid inside its nearest coarse cell
(the way the fine centroids were trained), which is what ``assign`` computes.
Both levels use faiss k-means with the caller's seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from alq.diversity.knn import kmeans, nearest_centroid


@dataclass
class TwoLevelCentroids:
    coarse: np.ndarray  # (K1, d) float32
    fine: np.ndarray  # (K, d) float32, grouped by coarse cell
    offsets: np.ndarray  # (K1 + 1,) int64: cell j owns fine[offsets[j]:offsets[j + 1]]

    @property
    def n_clusters(self) -> int:
        return len(self.fine)

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Cluster id (int64, into ``fine``) of every row of ``x`` (n, d)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        cell = nearest_centroid(x, self.coarse)[1]
        out = np.empty(len(x), np.int64)
        order = np.argsort(cell, kind="stable")
        bounds = np.searchsorted(cell[order], np.arange(len(self.coarse) + 1))
        for j in np.flatnonzero(np.diff(bounds)):
            rows = order[bounds[j]:bounds[j + 1]]
            lo, hi = int(self.offsets[j]), int(self.offsets[j + 1])
            out[rows] = lo + nearest_rows(x[rows], self.fine[lo:hi])
        return out


def nearest_rows(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of each row (plain BLAS: cells are small, a faiss index per cell is not)."""
    if len(centroids) == 1:
        return np.zeros(len(x), np.int64)
    d2 = (centroids * centroids).sum(axis=1)[None, :] - 2.0 * (x @ centroids.T)
    return np.argmin(d2, axis=1).astype(np.int64)


def split_clusters(cell_rows: np.ndarray, k: int) -> np.ndarray:
    """Fine centroids per cell: proportional to its rows (largest remainders), >= 1 and <= its rows, sum k."""
    cell_rows = np.asarray(cell_rows, np.int64)
    if k > cell_rows.sum():
        raise ValueError(f"{k} clusters for {int(cell_rows.sum())} rows")
    share = cell_rows * (k / cell_rows.sum())
    alloc = np.clip(np.floor(share).astype(np.int64), 1, cell_rows)
    while alloc.sum() != k:
        if alloc.sum() < k:  # give one to the cell most under its share that still has room
            room = alloc < cell_rows
            j = np.flatnonzero(room)[np.argmax((share - alloc)[room])]
            alloc[j] += 1
        else:  # take one from the cell most over its share that keeps one
            spare = alloc > 1
            j = np.flatnonzero(spare)[np.argmax((alloc - share)[spare])]
            alloc[j] -= 1
    return alloc


def two_level_kmeans(x: np.ndarray, k: int, *, seed: int, niter: int = 20,
                     progress=None) -> TwoLevelCentroids:
    """Two-level k-means of float32 rows ``x`` (n, d) into ``k`` <= n clusters (see the module docstring)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, {n}]")
    k1 = max(1, min(math.ceil(math.sqrt(k)), n))
    coarse = kmeans(x, k1, seed=seed, niter=niter)
    cell = nearest_centroid(x, coarse)[1]
    counts = np.bincount(cell, minlength=k1)
    keep = np.flatnonzero(counts)  # an empty coarse cell owns no rows and no fine centroids
    coarse, counts = coarse[keep], counts[keep]
    remap = np.full(k1, -1, np.int64)
    remap[keep] = np.arange(len(keep))
    cell = remap[cell]
    alloc = split_clusters(counts, k)
    order = np.argsort(cell, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    fine = np.empty((k, x.shape[1]), np.float32)
    offsets = np.concatenate([[0], np.cumsum(alloc)]).astype(np.int64)
    for j in range(len(coarse)):
        rows = x[order[bounds[j]:bounds[j + 1]]]
        kj = int(alloc[j])
        if kj == len(rows):
            fine[offsets[j]:offsets[j + 1]] = rows
        elif kj == 1:
            fine[offsets[j]] = rows.mean(axis=0)
        else:
            fine[offsets[j]:offsets[j + 1]] = kmeans(rows, kj, seed=seed + 1 + j, niter=niter)
        if progress is not None:
            progress(j + 1, len(coarse))
    return TwoLevelCentroids(coarse=coarse, fine=fine, offsets=offsets)
