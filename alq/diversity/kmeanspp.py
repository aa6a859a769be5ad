"""k-means++ seeding (Arthur & Vassilvitskii, SODA 2007), as BADGE uses it.

BADGE (Ash et al., "Deep Batch Active Learning by Diverse, Uncertain
Gradient Lower Bounds", ICLR 2020) seeds k-means++ on gradient embeddings:
the first centre is the row of largest norm (ties: smallest position), then
each next centre is drawn with probability proportional to its squared
distance D^2 to the nearest chosen centre. Drawing is one uniform number
``u = rng.random() * sum(D^2)`` and the first row whose running sum of D^2
exceeds ``u``, so a plain materialised implementation fed the same generator
draws the same rows. Rows already drawn weigh 0; if every remaining weight
is 0 (all rows duplicate a centre), the next row is a uniform draw among the
rows not yet taken.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from alq.diversity.nearest import NearestCentre
from alq.diversity.rows import RowTable, serial


def _draw(state: NearestCentre, t: int, taken: np.ndarray, rng: np.random.Generator) -> tuple[int, float]:
    """The t-th centre: largest norm first, then a D^2 draw (inverse CDF of one uniform)."""
    if t == 0:
        j = int(torch.argmax(state.sq))
        return j, float(state.sq[j])
    weight = state.d2.clamp_min(0).double()
    csum = torch.cumsum(weight, dim=0)
    total = float(csum[-1])
    if total > 0:
        u = torch.tensor([rng.random() * total], dtype=torch.float64, device=csum.device)
        j = min(int(torch.searchsorted(csum, u, right=True)), len(weight) - 1)
        return j, float(weight[j])
    free = np.flatnonzero(~taken)
    return int(free[rng.integers(len(free))]), 0.0


def kmeanspp_seeding(table: RowTable, budget: int, *, metric, rng: np.random.Generator,
                     progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pick ``budget`` positions by k-means++ seeding. No validation.

    Returns (positions (b,) in draw order, D^2 of each when drawn (the first:
    its squared norm) (b,) float64, stats).
    """
    state = NearestCentre(table, metric)
    picks = np.empty(budget, dtype=np.int64)
    scores = np.empty(budget, dtype=np.float64)
    taken = np.zeros(table.n, dtype=bool)
    for t in range(budget):
        with serial(table.device):
            j, score = _draw(state, t, taken, rng)
        picks[t], scores[t] = j, score
        taken[j] = True
        state.add(table.take([j])[0])
        state.take(j)
        if progress is not None:
            progress(t + 1, budget)
    stats = {"rows_evaluated": int(state.rows_read), "rows": table.n,
             "passes_equivalent": round(state.rows_read / max(1, table.n), 2)}
    return picks, scores, stats
