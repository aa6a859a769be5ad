"""One nearest-centre distance per row, updated as centres are added.

k-means++ seeding (BADGE) keeps, for every candidate row, the squared
distance ``d2`` to its nearest centre and lowers it as centres come in; D^2
sampling needs every row's exact value after every pick (k-center greedy
only needs the maximum and is lazier: see ``kcenter``). Done naively, that
reads all N rows per new centre. Most rows cannot move, and the triangle inequality says which (Elkan, ICML 2003):
if row i's nearest centre is ``a`` and the new centre ``c`` has
``||c - a|| >= 2 sqrt(d2_i)``, then ``||x_i - c|| >= sqrt(d2_i)`` and row i
keeps its distance; and a row whose norm differs from the new centre's by at
least its distance cannot move either (| ||x|| - ||c|| | <= ||x - c||: in
BADGE's gradient space, where most rows sit near the origin and the D^2
draws take far rows, this is the test that prunes). So each row also remembers *which* centre is nearest
(an int32), the centre vectors are kept in a small bank (while they fit in a
quarter of ``ALQ_WORKING_MEMORY``), and an update reads only the rows that
might move. Rows whose nearest centre is not banked are always re-read, so
the result is the same as the naive update (up to float32 rounding, which
the test slack covers): exact, not approximate.

Memory per row: d2 (float32), squared norm and norm (float32), nearest
centre (int32). Never an N x N or N x |centres| matrix beyond one block.
"""

from __future__ import annotations

import math

import torch

from alq.diversity.rows import RowTable, serial

TAKEN = -1.0  # d2 of rows already picked: never picked again, weight 0 in D^2 sampling
_FULL_PASS_FRACTION = 0.5  # above this share of rows to re-read, one contiguous pass is cheaper


class NearestCentre:
    """``d2[i]`` = squared distance of row i of ``table`` to its nearest centre (inf: none yet)."""

    def __init__(self, table: RowTable, metric, *, bank_bytes: int | None = None):
        self.table, self.metric = table, metric
        dev = table.device
        n = table.n
        self.d2 = torch.full((n,), math.inf, dtype=torch.float32, device=dev)
        self.nearest = torch.full((n,), -1, dtype=torch.int32, device=dev)
        self.sq = torch.empty(n, dtype=torch.float32, device=dev)
        for pos, x in table.blocks():
            self.sq[pos] = metric.sq_norms(x)
        self.norm = self.sq.clamp_min(0).sqrt()  # the metric's norm of each row (its distance to the origin)
        # slack for float32 rounding in the pruning test (distance units)
        self.slack = 1e-3 * math.sqrt(float(self.sq.max())) if n else 0.0
        cap_bytes = table.memory // 4 if bank_bytes is None else bank_bytes
        self.bank_cap = max(0, int(cap_bytes // (4 * (table.width + 1))))
        self.bank = torch.empty((min(self.bank_cap, 1024), table.width), dtype=torch.float32, device=dev)
        self.bank_sq = torch.empty(len(self.bank), dtype=torch.float32, device=dev)
        self.n_bank = 0
        self.rows_read = 0  # rows whose distance was recomputed (for the summary)

    # -- the centre bank ----------------------------------------------------
    def _bank(self, c: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
        """Bank as many of the centres (k, w) as fit; their bank ids (-1: not banked)."""
        k = len(c)
        room = max(0, min(k, self.bank_cap - self.n_bank))
        ids = torch.full((k,), -1, dtype=torch.int32, device=c.device)
        if room:
            need = self.n_bank + room
            if need > len(self.bank):
                size = min(self.bank_cap, max(need, 2 * len(self.bank)))
                bank = torch.empty((size, self.table.width), dtype=torch.float32, device=c.device)
                bank_sq = torch.empty(size, dtype=torch.float32, device=c.device)
                bank[:self.n_bank] = self.bank[:self.n_bank]
                bank_sq[:self.n_bank] = self.bank_sq[:self.n_bank]
                self.bank, self.bank_sq = bank, bank_sq
            self.bank[self.n_bank:need] = c[:room]
            self.bank_sq[self.n_bank:need] = c_sq[:room]
            ids[:room] = torch.arange(self.n_bank, need, dtype=torch.int32, device=c.device)
            self.n_bank = need
        return ids

    # -- updates ------------------------------------------------------------
    def _lower(self, pos, new: torch.Tensor, ids: torch.Tensor) -> None:
        old = self.d2[pos]
        closer = new < old
        self.d2[pos] = torch.where(closer, new, old)
        self.nearest[pos] = torch.where(closer, ids, self.nearest[pos])

    def add(self, c: torch.Tensor) -> None:
        """Add one centre ``c`` (w,) and lower every row's distance to it (pruned, exact)."""
        dev = self.d2.device
        c = c.reshape(1, -1).to(dev, torch.float32)
        with serial(dev):
            c_sq = self.metric.sq_norms(c)
            dist = self.d2.clamp_min(0).sqrt_()
            # |(||x|| - ||c||)| <= ||x - c||: a row at least its distance away in norm cannot move
            may_move = (self.norm - float(c_sq.clamp_min(0).sqrt()[0])).abs_() < dist + self.slack
            if self.n_bank:
                dcc = self.metric.sq_dists_one(self.bank[:self.n_bank], self.bank_sq[:self.n_bank], c, c_sq).sqrt_()
                gap = dcc[self.nearest.clamp_min(0).long()]
                may_move &= (self.nearest < 0) | (gap <= dist.mul_(2).add_(self.slack))
            count = int(may_move.sum())
            if count == 0:
                self._bank(c, c_sq)
                return
            positions = torch.nonzero(may_move).reshape(-1) if count <= _FULL_PASS_FRACTION * self.table.n else None
            cid = self._bank(c, c_sq)
        for pos, x in self.table.blocks(positions):
            new = self.metric.sq_dists_one(x, self.sq[pos], c, c_sq)
            with serial(dev):
                self._lower(pos, new, cid.expand(len(new)))
            self.rows_read += len(new)

    def take(self, position: int) -> None:
        """Mark a picked row: it is never picked again and weighs 0 in D^2 sampling."""
        self.d2[position] = TAKEN
