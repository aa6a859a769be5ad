"""Column statistics of the whole pool, for the head's input standardisation.

Why the pool and not the labeled rows: with a few hundred labels a column
can be (nearly) constant among the labeled rows while pool rows vary there;
statistics from the labels then divide by a tiny scale and those pool rows
get enormous inputs (logit offsets in the hundreds, a BADGE batch drawn
from them). The pool is what the head scores, so its statistics are the
ones that keep every scored row in a few standard deviations.

A map over shards (per-range count, mean and centred sum of squares in
float64, blocks merged with Chan et al.'s pairwise update, which keeps
precision at large offsets) plus a small reduce: one streamed pass, the
pool is never loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A column whose pool std is below this fraction of the typical (rms) column std is treated as
# constant: its scale becomes the typical std, so a row that differs there cannot blow up.
CONSTANT_FRACTION = 1e-4


@dataclass
class ColumnStats:
    """Count, mean and centred sum of squares (float64, per column) of a set of rows."""

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> ColumnStats:
        return cls(0, np.zeros(dim), np.zeros(dim))

    @classmethod
    def of(cls, x: np.ndarray) -> ColumnStats:
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            return cls.empty(x.shape[1])
        mean = x.mean(axis=0)
        return cls(len(x), mean, ((x - mean) ** 2).sum(axis=0))

    def merge(self, other: ColumnStats) -> ColumnStats:
        """Pairwise combination (Chan, Golub & LeVeque 1979): exact, order-independent up to rounding."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta * delta * (self.count * other.count / n)
        return ColumnStats(n, mean, m2)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof=0), as a standard scaler uses."""
        return np.sqrt(self.m2 / max(self.count, 1))

    def standardizer(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, scale) as float32; near-constant columns get the typical scale (see CONSTANT_FRACTION)."""
        std = self.std
        typical = float(np.sqrt(np.mean(std * std))) if len(std) else 1.0
        if not np.isfinite(typical) or typical <= 0:
            typical = 1.0
        scale = np.where(std > CONSTANT_FRACTION * typical, std, typical)
        return self.mean.astype(np.float32), scale.astype(np.float32)


def column_stats_partial(pool, lo: int, hi: int) -> ColumnStats:
    """Map task: the statistics of pool rows [lo, hi)."""
    acc = ColumnStats.empty(pool.dim)
    for block in pool.iter_blocks(lo=lo, hi=hi):
        acc = acc.merge(ColumnStats.of(block.vectors))
    return acc


def pool_column_stats(pool, engine=None) -> ColumnStats:
    """Column statistics of every pool row: one streamed pass (a map over shards on ``engine``)."""
    from alq.engine import LocalEngine

    acc = ColumnStats.empty(pool.dim)
    for part in (engine or LocalEngine()).map_pool(column_stats_partial, pool):
        acc = acc.merge(part)
    return acc
