"""Random paired partitions with an exact budget split (BASE appendix; Citovsky et al. 2021).

The unlabeled rows and the labeled (and pending) rows are each shuffled
into p parts of near-equal size (sizes differ by at most one, larger parts
first); part k of one is paired with part k of the other. The budget splits
as b // p per part, the remainder b % p going one each to the first parts,
which are also the larger ones, so every part can meet its share whenever
b <= the number of unlabeled rows.
"""

from __future__ import annotations

import math

import numpy as np


def split_budget(budget: int, parts: int) -> np.ndarray:
    """(parts,) int64 summing to ``budget``: b // p each, +1 for the first b % p."""
    out = np.full(parts, budget // parts, dtype=np.int64)
    out[: budget % parts] += 1
    return out


def default_partitions(budget: int, n_unlabeled: int, rows_per_part: int = 100_000) -> int:
    """About ``rows_per_part`` unlabeled rows per part, at least 1, at most ``budget`` parts."""
    return int(max(1, min(budget, math.ceil(n_unlabeled / rows_per_part))))


def random_parts(rows: np.ndarray, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle ``rows`` into ``parts`` parts (sizes differ by <= 1, larger first); each part sorted."""
    perm = rng.permutation(len(rows))
    return [np.sort(rows[p]) for p in np.array_split(perm, parts)]


def plan(unlabeled: np.ndarray, centres: np.ndarray, budget: int, parts: int,
         rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """[(unlabeled rows, labeled/pending rows, budget)] per part, paired, budget split exactly."""
    u = random_parts(unlabeled, parts, rng)
    c = random_parts(centres, parts, rng)
    return [(u[k], c[k], int(b)) for k, b in enumerate(split_budget(budget, parts))]
