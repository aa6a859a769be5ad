"""Exact streaming top-k: per-block partial selection plus a small merge.

Order is (score ascending, global index ascending): ties are always broken
by the smaller pool row index, so a streamed run, an in-memory run and a
brute-force ``np.lexsort`` give the same rows in the same order.
"""

from __future__ import annotations

import numpy as np


def smallest_k(scores: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest (score, index) pairs, sorted. Exact with ties."""
    scores = np.asarray(scores, dtype=np.float64)
    index = np.asarray(index, dtype=np.int64)
    if k <= 0:
        return index[:0], scores[:0]
    if len(scores) > k:
        kth = np.partition(scores, k - 1)[k - 1]
        below = np.flatnonzero(scores < kth)
        tied = np.flatnonzero(scores == kth)
        need = k - len(below)
        if len(tied) > need:
            tied = tied[np.argsort(index[tied], kind="stable")[:need]]
        keep = np.concatenate([below, tied])
        scores, index = scores[keep], index[keep]
    order = np.lexsort((index, scores))
    return index[order], scores[order]


class StreamingTopK:
    """Accumulate blocks of (score, index); keep the k smallest exactly.

    Memory: at most ~2k candidates plus the incoming block. ``merge`` joins
    partial results from other workers (the reduce of a sharded map).
    """

    def __init__(self, k: int):
        self.k = int(k)
        self._scores: list[np.ndarray] = []
        self._index: list[np.ndarray] = []
        self._n = 0

    def push(self, scores: np.ndarray, index: np.ndarray) -> None:
        if len(scores) == 0 or self.k <= 0:
            return
        if len(scores) > self.k:
            index, scores = smallest_k(scores, index, self.k)
        self._scores.append(np.asarray(scores, dtype=np.float64))
        self._index.append(np.asarray(index, dtype=np.int64))
        self._n += len(scores)
        if self._n > 2 * self.k:
            self._compact()

    def _compact(self) -> None:
        idx, sc = smallest_k(np.concatenate(self._scores), np.concatenate(self._index), self.k)
        self._scores, self._index, self._n = [sc], [idx], len(sc)

    def merge(self, other: StreamingTopK) -> StreamingTopK:
        for s, i in zip(other._scores, other._index):
            self.push(s, i)
        return self

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) of the k smallest, sorted by (score, index)."""
        if not self._scores:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return smallest_k(np.concatenate(self._scores), np.concatenate(self._index), self.k)
