"""Greedy facility location, lazily evaluated (Minoux 1978), dense or on a kNN graph.

f(S) = sum_{i in V} max(c_i, max_{j in S} s_ij): every ground-set row i is
represented by its most similar chosen row (or by its coverage ``c_i`` from
rows chosen before, e.g. the labeled set; 0 if none). f is monotone
submodular, so greedy is a (1 - 1/e) approximation, and marginal gains only
shrink: lazy greedy keeps stale gains as upper bounds in a heap and
recomputes only the top. Ties go to the smaller position, and the result is
exactly that of plain greedy (each pick = largest gain, smallest position).

- dense: ``S`` (n, n) symmetric similarities, a matrix when n^2 floats fit
  ``ALQ_WORKING_MEMORY``, else :class:`CosineRows` (rows computed on demand
  in fixed tiles): the same float32 values either way, so the same picks;
- sparse: each row's k most similar rows (``knn.knn_graph``); s_ij = 0
  outside the graph (Wei et al. 2014, "Fast multi-stage submodular
  maximization").
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from alq.scoring.stream import ROW_ALIGN, aligned_mm


def _lazy(n: int, budget: int, gain: Callable[[int], float], take: Callable[[int], None],
          initial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    heap = [(-float(g), j) for j, g in enumerate(initial)]
    heapq.heapify(heap)
    fresh = np.zeros(n, dtype=np.int64)  # step at which the heap value of j was computed (+1)
    picks = np.empty(budget, dtype=np.int64)
    gains = np.empty(budget, dtype=np.float64)
    for t in range(budget):
        while True:
            neg, j = heapq.heappop(heap)
            if fresh[j] == t + 1 or t == 0:
                break
            g = gain(j)
            fresh[j] = t + 1
            if not heap or (-g, j) <= heap[0]:
                neg = -g
                break
            heapq.heappush(heap, (-g, j))
        picks[t], gains[t] = j, -neg
        take(j)
    return picks, gains


def greedy_dense(sim, budget: int, cover0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lazy greedy on a dense symmetric similarity (n, n): an array or :class:`CosineRows`.

    Returns (positions, marginal gains).
    """
    n = len(sim)
    cover = np.zeros(n, np.float64) if cover0 is None else np.asarray(cover0, np.float64).copy()
    initial = np.empty(n, np.float64)
    step = max(1, (1 << 22) // max(1, n))
    for j0 in range(0, n, step):
        initial[j0:j0 + step] = np.maximum(sim[j0:j0 + step] - cover[None, :], 0).sum(axis=1)

    def gain(j: int) -> float:
        return float(np.maximum(sim[j] - cover, 0).sum())

    def take(j: int) -> None:
        np.maximum(cover, sim[j], out=cover)

    return _lazy(n, budget, gain, take, initial)


def greedy_sparse(nbr: np.ndarray, sim: np.ndarray, budget: int, cover0: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Lazy greedy on a kNN graph: row i has neighbours ``nbr[i]`` (n, k) with similarities ``sim[i]``.

    s_ij = sim[i, t] where nbr[i, t] == j, else 0. Returns (positions, marginal gains).
    """
    n, k = nbr.shape
    cover = np.zeros(n, np.float64) if cover0 is None else np.asarray(cover0, np.float64).copy()
    flat = nbr.reshape(-1)
    order = np.argsort(flat, kind="stable")
    members = (order // k).astype(np.int64)  # ground-set row i that lists candidate j
    weights = sim.reshape(-1)[order].astype(np.float64)
    ptr = np.searchsorted(flat[order], np.arange(n + 1))
    initial = np.bincount(flat, weights=np.maximum(sim.reshape(-1) - cover[np.repeat(np.arange(n), k)], 0),
                          minlength=n)

    def gain(j: int) -> float:
        a, b = ptr[j], ptr[j + 1]
        return float(np.maximum(weights[a:b] - cover[members[a:b]], 0).sum())

    def take(j: int) -> None:
        a, b = ptr[j], ptr[j + 1]
        np.maximum.at(cover, members[a:b], weights[a:b])

    return _lazy(n, budget, gain, take, initial)


TILE_ROWS = 4 * ROW_ALIGN  # rows of the clipped cosine similarity computed per product


def _tile(u: torch.Tensor, t: int) -> np.ndarray:
    """Rows [t T, (t + 1) T) of clip(u u^T, 0) as float32 (the one place these values are computed)."""
    r0 = t * TILE_ROWS
    return aligned_mm(u[r0:r0 + TILE_ROWS], u).clamp_min_(0).cpu().numpy()


def _unit_rows(x) -> torch.Tensor:
    from alq.diversity.knn import normalize_rows

    return torch.from_numpy(normalize_rows(np.asarray(x)))


def dense_similarity(x: np.ndarray) -> np.ndarray:
    """Cosine similarity clipped at 0, (n, n) float32 (in tiles: the values :class:`CosineRows` gives)."""
    u = _unit_rows(x)
    n = len(u)
    out = np.empty((n, n), np.float32)
    for t in range(-(-n // TILE_ROWS)):
        out[t * TILE_ROWS:(t + 1) * TILE_ROWS] = _tile(u, t)
    return out


class CosineRows:
    """The rows of :func:`dense_similarity` without the n x n matrix: computed on demand, tile by tile.

    ``sim[j]`` (one row) and ``sim[a:b]`` (consecutive rows) as :func:`greedy_dense` reads them;
    recently used tiles are kept up to ``budget_bytes`` (at least one).
    """

    def __init__(self, x: np.ndarray, budget_bytes: int):
        self.u = _unit_rows(x)
        self.n = len(self.u)
        self.keep = max(1, int(budget_bytes) // max(1, TILE_ROWS * self.n * 4))
        self.tiles: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.n

    def _get(self, t: int) -> np.ndarray:
        tile = self.tiles.pop(t, None)
        if tile is None:
            tile = _tile(self.u, t)
            while len(self.tiles) >= self.keep:
                self.tiles.popitem(last=False)
        self.tiles[t] = tile
        return tile

    def __getitem__(self, key):
        if isinstance(key, slice):
            a, b, _ = key.indices(self.n)
            return np.concatenate([self._get(t)[max(a, t * TILE_ROWS) - t * TILE_ROWS:
                                                min(b, (t + 1) * TILE_ROWS) - t * TILE_ROWS]
                                   for t in range(a // TILE_ROWS, -(-b // TILE_ROWS))]) if b > a \
                else np.empty((0, self.n), np.float32)
        j = int(key)
        return self._get(j // TILE_ROWS)[j % TILE_ROWS]
