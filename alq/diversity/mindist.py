"""Minimum-distance condition on a ranking (Lightly's "min_distance"): a greedy, streamed filter.

Walk a strategy's ranking in order and accept a candidate only when no
row already accepted, and no *anchor* (a labeled or pending row), lies
closer than ``D``. Candidates are read in chunks of ``CHUNK`` rows:

- anchors sit in a faiss flat index (exact; many labeled rows are fine:
  they are searched, never compared pairwise), filled in bounded blocks;
- accepted picks sit in a second flat index, grown as picks are accepted;
- within a chunk, the candidates' pairwise distances (CHUNK x CHUNK)
  settle conflicts in rank order.

faiss's float32 distances are only used to find the few nearest rows; the
decision is made on distances recomputed from ``x - y`` in float64, so the
condition holds exactly (``min_distance_violations`` in the tests is
brute force). Memory: the anchors' vectors (as float32) plus the picks'.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1024
NEAREST = 4  # nearest rows re-checked exactly per index search (faiss rounding can swap near-ties)


def _faiss():
    import faiss

    return faiss


class MinDistanceFilter:
    """``accept(rows)``: which of these ranked candidate rows keep the condition, in order (greedy)."""

    def __init__(self, pool, min_distance: float, anchors: np.ndarray, *, normalize: str | None = None):
        from alq.cluster.knn import prepare

        self.pool = pool
        self.d = float(min_distance)
        self.normalize = normalize
        self._prepare = prepare
        faiss = _faiss()
        self.anchor_rows = np.unique(np.asarray(anchors, dtype=np.int64))
        self.anchors = faiss.IndexFlatL2(pool.dim)
        for s in range(0, len(self.anchor_rows), 65_536):
            self.anchors.add(self._vectors(self.anchor_rows[s:s + 65_536]))
        self.picks = faiss.IndexFlatL2(pool.dim)
        self.pick_rows: list[np.ndarray] = []
        self.rejected_by_anchor = 0
        self.rejected_by_pick = 0

    def reset(self) -> None:
        """Forget the accepted picks (a new ranking is walked); the anchors stay."""
        self.picks.reset()
        self.pick_rows = []
        self.rejected_by_anchor = self.rejected_by_pick = 0

    def _vectors(self, rows: np.ndarray) -> np.ndarray:
        return self._prepare(self.pool.take(rows, dtype=np.float32), self.normalize)

    def _too_close(self, x: np.ndarray, index, rows_of) -> np.ndarray:
        """Per candidate: is some row of ``index`` at distance < D (exact float64 check of the nearest few)."""
        if index.ntotal == 0 or self.d <= 0:
            return np.zeros(len(x), bool)
        k = min(NEAREST, index.ntotal)
        _, idx = index.search(x, k)
        near = rows_of(idx)
        y = self._vectors(near.reshape(-1)).astype(np.float64).reshape(len(x), k, -1)
        dist = np.sqrt(((x.astype(np.float64)[:, None, :] - y) ** 2).sum(2))
        return (dist < self.d).any(1)

    def accept_chunk(self, rows: np.ndarray, *, limit: int | None = None,
                     allowed: np.ndarray | None = None, veto=None) -> np.ndarray:
        """Accept candidates of one chunk (rows in rank order); add them to the picks. Returns the accepted mask.

        ``allowed``: candidates already ruled out elsewhere are False. ``veto(i)``
        is the last check of candidate ``i`` (so a caller may record an
        acceptance when it returns False, e.g. mark the row's dedup group taken).
        """
        x = self._vectors(rows)
        cand = np.ones(len(rows), bool) if allowed is None else np.asarray(allowed, bool)
        by_anchor = self._too_close(x, self.anchors, lambda idx: self.anchor_rows[idx])
        by_pick = np.zeros(len(rows), bool)
        if self.pick_rows:
            all_picks = np.concatenate(self.pick_rows)
            by_pick = self._too_close(x, self.picks, lambda idx: all_picks[idx])
        xd = x.astype(np.float64)
        sq = (xd * xd).sum(1)
        ok = np.zeros(len(rows), bool)
        chosen: list[int] = []
        for i in np.flatnonzero(cand):  # rejections are counted up to the last candidate looked at
            if limit is not None and len(chosen) >= limit:
                break
            if by_anchor[i]:
                self.rejected_by_anchor += 1
                continue
            if by_pick[i]:
                self.rejected_by_pick += 1
                continue
            if chosen and self.d > 0:
                c = np.asarray(chosen)
                dd = np.sqrt(np.maximum(sq[c] + sq[i] - 2 * xd[c] @ xd[i], 0))
                near = dd < self.d * (1 + 1e-6) + 1e-9
                if near.any() and (np.sqrt(((xd[c[near]] - xd[i]) ** 2).sum(1)) < self.d).any():
                    self.rejected_by_pick += 1
                    continue
            if veto is not None and veto(int(i)):
                continue
            ok[i] = True
            chosen.append(int(i))
        if chosen:
            self.picks.add(x[np.asarray(chosen)])
            self.pick_rows.append(rows[np.asarray(chosen)])
        return ok
