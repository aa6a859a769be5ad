"""Exact average-linkage HAC (UPGMA) for pools small enough for an N x N matrix.

Nearest-neighbour chain (Murtagh 1983; Müllner 2011, "Modern hierarchical,
agglomerative clustering algorithms"): follow nearest neighbours until two
clusters are each other's nearest, merge them, continue from the chain.
Average linkage is *reducible*, so NN-chain yields the same dendrogram as
the textbook greedy "merge the closest pair" in O(N^2) time. Distances to
the merged cluster follow Lance-Williams:
d(A u B, C) = (|A| d(A, C) + |B| d(B, C)) / (|A| + |B|).

Memory: the full symmetric matrix, N^2 x 8 bytes up to
``FLOAT64_MAX_ROWS`` rows (float64, identical to scipy), N^2 x 4 bytes
above. ``EXACT_AUTO_MAX_ROWS`` = 20,000 rows is 1.6 GB: the size where
``--method auto`` switches to the kNN-graph HAC. Explicit ``--method exact``
is allowed while the matrix fits in half of the available memory.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from alq.cluster.linkage import Dendrogram
from alq.errors import BadInputError

EXACT_AUTO_MAX_ROWS = 20_000
FLOAT64_MAX_ROWS = 8_192


def matrix_dtype(n: int) -> np.dtype:
    return np.dtype(np.float64 if n <= FLOAT64_MAX_ROWS else np.float32)


def matrix_bytes(n: int) -> int:
    return int(n) * int(n) * matrix_dtype(n).itemsize


def available_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def check_exact_fits(n: int) -> None:
    need = matrix_bytes(n)
    avail = available_memory_bytes()
    if avail is not None and need > avail // 2:
        raise BadInputError(f"--method exact on {n} rows needs {need / 2**30:.1f} GiB for the distance matrix, "
                            f"more than half of the {avail / 2**30:.1f} GiB available",
                            hint="use --method graph (kNN-graph average linkage) or --method auto")


def pairwise_distances(x: np.ndarray, *, dtype=None, block: int = 2048) -> np.ndarray:
    """Euclidean distance matrix (n, n) with +inf on the diagonal, computed in float64 blocks.

    x : ndarray of shape (n, d). The diagonal is +inf so a row's argmin is its nearest *other* row.
    The rows are centred first (distances do not change) and the pairs that the expansion
    ``|x|^2 + |y|^2 - 2 x.y`` cannot resolve (``near_pairs``) are recomputed from ``x - y``:
    identical rows are at distance exactly 0.
    """
    n = len(x)
    dtype = np.dtype(dtype or matrix_dtype(n))
    x64 = np.asarray(x, dtype=np.float64)
    xt = torch.from_numpy(np.ascontiguousarray(x64 - x64.mean(axis=0) if n else x64))
    sq = (xt * xt).sum(dim=1)
    out = np.empty((n, n), dtype=dtype)
    for i in range(0, n, block):
        j = min(i + block, n)
        d2 = sq[i:j, None] + sq[None, :] - 2.0 * (xt[i:j] @ xt.T)
        rows, cols = near_pairs(d2, sq[i:j], sq)
        for lo in range(0, len(rows), 1 << 16):
            r, c = rows[lo:lo + (1 << 16)], cols[lo:lo + (1 << 16)]
            d2[r, c] = ((xt[i + r] - xt[c]) ** 2).sum(dim=1)
        out[i:j] = torch.sqrt(d2.clamp_min_(0.0)).numpy()
    np.fill_diagonal(out, np.inf)
    return out


# relative rounding of |x|^2 + |y|^2 - 2 x.y in float64, with a wide margin
_EXPANSION_TOL = 1e-10


def near_pairs(d2: torch.Tensor, sq_rows: torch.Tensor, sq_cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) positions of ``d2`` (float64 expansion) too small to trust next to the norms."""
    bad = d2 <= _EXPANSION_TOL * (sq_rows[:, None] + sq_cols[None, :])
    idx = torch.nonzero(bad)
    return idx[:, 0], idx[:, 1]


def exact_average_linkage(x: np.ndarray, *, progress=None) -> Dendrogram:
    """Complete average-linkage dendrogram of the rows of x (n, d), Euclidean distance."""
    n = len(x)
    if n == 0:
        return Dendrogram(0, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    d = pairwise_distances(x)
    return nn_chain_average(d, progress=progress)


def nn_chain_average(d: np.ndarray, *, progress=None) -> Dendrogram:
    """NN-chain average linkage on a square distance matrix (destroyed in place; diagonal +inf)."""
    rep_a, rep_b, heights = nn_chain_merges(d, progress=progress)
    return Dendrogram.from_rep_merges(len(d), rep_a, rep_b, heights)


def nn_chain_merges(d: np.ndarray, *, size: np.ndarray | None = None,
                    progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NN-chain average linkage of clusters of ``size`` points (default 1) at linkages ``d``.

    ``d`` (m, m) is destroyed in place (diagonal +inf). Returns the m - 1
    merges as (kept index, dropped index, height) in the order they were
    made; the merged cluster keeps the smaller index.
    """
    n = len(d)
    size = np.ones(n, dtype=np.float64) if size is None else np.asarray(size, dtype=np.float64).copy()
    active = np.ones(n, dtype=bool)
    chain: list[int] = []
    rep_a: list[int] = []
    rep_b: list[int] = []
    heights: list[float] = []
    start = 0
    inf = np.inf
    while len(heights) < n - 1:
        if not chain:
            while not active[start]:
                start += 1
            chain.append(start)
        a = chain[-1]
        row = d[a]
        b = int(np.argmin(row))
        if len(chain) > 1:
            c = chain[-2]
            if row[c] <= row[b]:  # prefer the chain's previous node on ties: guarantees termination
                b = c
        if len(chain) > 1 and b == chain[-2]:
            chain.pop()
            chain.pop()
            h = float(row[b])
            keep, drop = (a, b) if a < b else (b, a)
            na, nb = size[keep], size[drop]
            new = (na * d[keep].astype(np.float64) + nb * d[drop]) / (na + nb)
            new[keep] = inf
            new[drop] = inf
            d[keep] = new
            d[:, keep] = new
            d[drop] = inf
            d[:, drop] = inf
            size[keep] = na + nb
            active[drop] = False
            rep_a.append(keep)
            rep_b.append(drop)
            heights.append(h)
            if progress is not None and len(heights) % 1024 == 0:
                progress("exact average linkage", len(heights), n - 1)
        else:
            chain.append(b)
    return (np.asarray(rep_a, dtype=np.int64), np.asarray(rep_b, dtype=np.int64),
            np.asarray(heights, dtype=np.float64))
