"""k-center greedy: repeatedly take the row farthest from every centre.

Gonzalez (1985); as an active-learning batch, Sener & Savarese, "Active
Learning for Convolutional Neural Networks: A Core-Set Approach" (ICLR
2018). Centres start as the given rows (labeled, pending); each pick is the
candidate with the largest distance to its nearest centre (ties: the
smallest position, i.e. the smallest pool row) and becomes a centre. The
radius max_i min_c ||x_i - c|| is within 2x of the optimal k-center radius.
With no initial centres the first pick is a uniformly random candidate from
the given generator.

Lazy evaluation (exact). Distances to the nearest centre only shrink, so a
row's last computed value is an upper bound. Each pick needs only the true
maximum: rows are refreshed (their distance to the centres picked since
their last refresh computed) in order of their bounds, a batch at a time,
until the best refreshed value is at least every remaining bound. Every
(row, centre) distance is computed at most once, as in the plain algorithm,
but usually only for a small share of rows: most rows are never near the
top. Picked centres are kept in a bank (a quarter of ``ALQ_WORKING_MEMORY``);
when it is full, every row is brought up to date in one blocked pass and the
bank is emptied. Memory per row: bound (float32), squared norm (float32),
bank position it is current to (int32). Never N x N or N x |centres|.

Distances expand around the candidates' mean (one streamed float64 pass):
around the coordinate origin, float32 rounding on data far from it (large
offsets, a standardised head's features) is larger than the gaps between
the top candidates and the picks stop being the farthest rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from alq.diversity.metric import Euclidean, mean_row
from alq.diversity.rows import RowTable, serial

_SMALL_WORK = 1 << 24  # multiply-adds below which a refresh runs on one thread (see rows.serial)
_FULL_PASS_FRACTION = 0.25  # above this share of stale rows at the top, refresh everything in one pass


class _LazyKCenter:
    def __init__(self, table: RowTable, metric):
        self.table, self.metric = table, metric
        dev = table.device
        self.cpu = dev.type == "cpu"
        n = table.n
        self.bound = torch.full((n,), math.inf, dtype=torch.float32, device=dev)
        self.current = torch.zeros(n, dtype=torch.int32, device=dev)  # bank size the row's bound is exact for
        self.sq = torch.empty(n, dtype=torch.float32, device=dev)
        for pos, x in table.blocks():
            self.sq[pos] = metric.sq_norms(x)
        self.cap = max(1, int(table.memory // 4 // (4 * (table.width + 1))))
        self.bank = torch.empty((min(self.cap, 1024), table.width), dtype=torch.float32, device=dev)
        self.bank_sq = torch.empty(len(self.bank), dtype=torch.float32, device=dev)
        self.k = 0  # centres in the bank
        self.evaluated = 0  # (row, centre) distances computed

    def add_table(self, centres: RowTable) -> None:
        """Exact bounds from the initial centres: blocked, never N x |centres| at once."""
        w, mem = self.table.width, self.table.memory
        k_step = max(1, min(centres.n, mem // (16 * (w + 1))))
        r_step = max(1, mem // (16 * k_step))
        for c0 in range(0, centres.n, k_step):
            c = centres.take(np.arange(c0, min(c0 + k_step, centres.n)))
            c_sq = self.metric.sq_norms(c)
            for pos, x in self.table.blocks():
                for r0 in range(0, len(x), r_step):
                    sl = slice(pos.start + r0, pos.start + r0 + min(r_step, len(x) - r0))
                    best = self.metric.sq_dists(x[r0:r0 + r_step], self.sq[sl], c, c_sq).min(dim=1).values
                    torch.minimum(self.bound[sl], best, out=self.bound[sl])
            self.evaluated += self.table.n * len(c)

    def add(self, c: torch.Tensor) -> None:
        if self.k == self.cap:
            self._refresh_all()
            self.k = 0
            self.current.zero_()
        if self.k == len(self.bank):
            size = min(self.cap, 2 * len(self.bank))
            bank = torch.empty((size, self.table.width), dtype=torch.float32, device=self.bank.device)
            bank[:self.k] = self.bank[:self.k]
            self.bank, self.bank_sq = bank, torch.cat([self.bank_sq, self.bank_sq.new_empty(size - self.k)])
        self.bank[self.k] = c
        self.bank_sq[self.k] = self.metric.sq_norms(c.reshape(1, -1))[0]
        self.k += 1

    def _refresh(self, pos, x: torch.Tensor) -> None:
        """Bring rows ``pos`` (vectors ``x``) up to date with the bank."""
        cur = self.current[pos]
        k0 = int(cur.min())
        if k0 < self.k:
            d = self.metric.sq_dists(x, self.sq[pos], self.bank[k0:self.k], self.bank_sq[k0:self.k])
            done = torch.arange(k0, self.k, device=d.device)[None, :] < cur[:, None].long()
            d.masked_fill_(done, math.inf)
            self.bound[pos] = torch.minimum(self.bound[pos], d.min(dim=1).values)
            self.evaluated += int((self.k - cur.long()).clamp_min(0).sum())
        self.current[pos] = self.k

    def _step(self) -> int:
        """Rows per refresh so that the (rows x stale centres) block stays within a quarter of the memory."""
        return max(1, min(1 << 16, self.table.memory // (16 * max(1, self.k))))

    def _refresh_all(self) -> None:
        step = self._step()
        for pos, x in self.table.blocks():
            for r0 in range(0, len(x), step):
                self._refresh(slice(pos.start + r0, pos.start + r0 + min(step, len(x) - r0)), x[r0:r0 + step])

    def _stale_top(self, batch: int):
        """(stale positions among the ``batch`` largest bounds and the tied maximum, or None; the pick if none)."""
        n, k = self.table.n, self.k
        if self.cpu:  # numpy views: single-threaded and far cheaper than torch dispatch per pick
            b, cur = self.bound.numpy(), self.current.numpy()
            top = b.max()
            tied = np.flatnonzero(b >= top)
            stale = tied[cur[tied] < k]
            if len(stale) == 0:
                return None, int(tied[0])
            if batch > len(stale):
                part = np.argpartition(b, n - batch)[n - batch:] if batch < n else np.arange(n)
                stale = np.union1d(stale, part[cur[part] < k])
            return stale, None
        top = self.bound.max()
        tied = torch.nonzero(self.bound >= top).reshape(-1)
        stale = tied[self.current[tied] < k]
        if len(stale) == 0:
            return None, int(tied[0])
        if batch > len(stale):
            part = torch.topk(self.bound, min(batch, n), sorted=False).indices
            stale = torch.unique(torch.cat([stale, part[self.current[part] < k]]))
        return stale.cpu().numpy(), None

    def argmax(self) -> int:
        """Position of the largest true distance (ties: smallest position)."""
        n = self.table.n
        batch = 1
        while True:
            stale, best = self._stale_top(batch)
            if stale is None:
                return best
            if len(stale) > _FULL_PASS_FRACTION * n:
                self._refresh_all()
                continue
            step = self._step()
            small = len(stale) * max(1, self.k) * self.table.width < _SMALL_WORK
            with serial(self.bound.device, small):
                for q0 in range(0, len(stale), step):
                    part = stale[q0:q0 + step]
                    self._refresh(torch.from_numpy(part).to(self.bound.device), self.table.take(part))
            batch = min(n, batch * 16)


def kcenter_greedy(table: RowTable, budget: int, *, centres: RowTable | None = None, metric=None,
                   rng: np.random.Generator, progress: Callable[[int, int], None] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pick ``budget`` positions of ``table`` by k-center greedy. No validation.

    Returns (positions (b,) int64 in pick order, distance of each pick to its
    nearest centre when picked (b,) float64, inf for a random first pick; stats).
    """
    if metric is None or (isinstance(metric, Euclidean) and metric.origin is None):
        metric = Euclidean(origin=mean_row(table))
    state = _LazyKCenter(table, metric)
    if centres is not None and centres.n:
        state.add_table(centres)
    picks = np.empty(budget, dtype=np.int64)
    scores = np.empty(budget, dtype=np.float64)
    for t in range(budget):
        if t == 0 and (centres is None or centres.n == 0):
            j, score = int(rng.integers(table.n)), math.inf
        else:
            j = state.argmax()
            score = math.sqrt(max(float(state.bound[j]), 0.0))
        picks[t], scores[t] = j, score
        with serial(table.device):
            state.add(table.take([j])[0])
            state.bound[j] = -1.0  # taken: never the maximum again
            state.current[j] = state.k
        if progress is not None:
            progress(t + 1, budget)
    n_centres = (centres.n if centres is not None else 0) + budget
    stats = {"distances_computed": int(state.evaluated),
             "share_of_plain": round(state.evaluated / max(1, table.n * n_centres), 4)}
    return picks, scores, stats
