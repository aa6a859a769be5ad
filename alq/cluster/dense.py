"""The dense finish of a ``--n-clusters`` cut on the kNN-graph dendrogram.

A cut into K clusters reaches heights where the kNN graph is too sparse:
the closest clusters often share no edge (or lie in different components),
so graph-only merging ends with many singletons, far from exact HAC (ARI
0.0-0.6 against scipy at K = 3..1000 on overlapping mixtures). So
:func:`finish_dense` keeps the graph dendrogram only up to ``max(K,
DENSE_FROM)`` clusters and makes every merge above by NN-chain average
linkage on the dense matrix of linkages between those clusters, every pair.
Those linkages are mean distances, not RMS: on a 20k-row mixture, RMS
linkages from 2,048 clusters gave ARI 0.915 against scipy at K = 100, the
mean distances from 4,096 clusters 1.000 at K = 100, 200 and 2,000
(``tests/bench/bench_cluster.py``). The mean over A x B is measured on
the rows themselves when they number at most sqrt(``DENSE_PAIRS``), which
makes the finish exact HAC; above, on a per-cluster sample of rows, as a
ratio estimate: the exact RMS (from the sums) times the sample's mean / RMS.
If the graph leaves more than ``DENSE_MAX`` clusters (too few edges), the
cut is refused: raise ``--knn`` or cut with ``--threshold``.
"""

from __future__ import annotations

import numpy as np
import torch

from alq.cluster.exact import nn_chain_merges
from alq.cluster.graph import SUMS_TOL
from alq.cluster.linkage import Dendrogram
from alq.config import rows_per_block
from alq.errors import BadInputError

DENSE_FROM = 4096  # clusters from which a --n-clusters cut is finished densely (128 MiB matrices)
DENSE_MAX = 8192  # most clusters the dense finish takes on (three 512 MiB matrices)
DENSE_PAIRS = 10**9  # row pairs measured for the mean distances (exact up to 31,622 rows; about 10 s)


def finish_dense(den: Dendrogram, vectors: np.ndarray, n_clusters: int, *, dense_from: int | None = None,
                 seed: int = 0) -> tuple[Dendrogram, dict]:
    """Redo the merges of ``den`` above ``max(n_clusters, dense_from)`` clusters by dense average linkage.

    ``den``: the graph dendrogram over the rows ``vectors`` (n, d'). The
    first merges of ``den`` down to M = max(n_clusters, dense_from (default
    ``DENSE_FROM``)) clusters are kept; the M clusters are then merged by
    NN-chain on the (M, M) matrix of mean distances (:func:`mean_distances`),
    at heights kept at or above the kept merges. Returns (dendrogram, stats).
    """
    n = den.n_leaves
    m_target = max(int(n_clusters), DENSE_FROM if dense_from is None else int(dense_from))
    applied = min(den.n_merges, max(0, n - m_target))
    roots = den.roots(applied)
    node_ids, labels = np.unique(roots, return_inverse=True)
    labels = labels.reshape(-1)
    m = len(node_ids)
    if m <= n_clusters:
        return den, {}
    if m > DENSE_MAX:
        raise BadInputError(f"--n-clusters {n_clusters}: the kNN graph leaves {m} groups with no edge between "
                            f"them, more than the {DENSE_MAX} that exact average linkage can join",
                            hint="raise --knn, or cut with --threshold")
    d, sampled = mean_distances(vectors, labels, m, seed=seed)
    size = np.bincount(labels, minlength=m).astype(np.float64)
    keep, drop, h = nn_chain_merges(d, size=size)
    del d
    rep = den.representatives()
    floor = float(den.height[applied - 1]) if applied else 0.0
    node_h = np.full(m, floor)
    for i in range(len(h)):  # heights never decrease up the tree, nor below the kept graph merges
        h[i] = node_h[keep[i]] = max(h[i], node_h[keep[i]], node_h[drop[i]])
    cluster_rep = rep[node_ids]
    rep_a = np.concatenate([rep[den.left[:applied]], cluster_rep[keep]])
    rep_b = np.concatenate([rep[den.right[:applied]], cluster_rep[drop]])
    out = Dendrogram.from_rep_merges(n, rep_a, rep_b, np.concatenate([den.height[:applied], h]))
    return out, {"clusters": int(m), "graph_merges_kept": int(applied), "dense_merges": int(len(h)),
                 "rows_measured": int(sampled), "mean_distances": "exact" if sampled == n else "ratio estimate"}


def mean_distances(vectors: np.ndarray, labels: np.ndarray, m: int, *, seed: int = 0,
                   pairs: int | None = None) -> tuple[np.ndarray, int]:
    """(m, m) float64 mean distance between the clusters ``labels`` (0..m-1) of ``vectors``, diagonal +inf.

    Every row enters while the rows number at most sqrt(``pairs``) (default
    ``DENSE_PAIRS``): the exact mean over A x B. Above, each cluster gives
    at most t seeded random rows (the largest t within that count), and the
    mean is the exact root-mean-square distance (from the clusters' sums)
    times the sample's mean / RMS ratio: the ratio varies far less between
    samples than the mean does, and it is 1 where both clusters are single
    rows. Returns (matrix, rows measured).
    """
    n = len(labels)
    size = np.bincount(labels, minlength=m)
    rows = _rows_per_cluster(size, int(np.sqrt(DENSE_PAIRS if pairs is None else pairs)))
    order = np.argsort(labels, kind="stable")
    if rows >= size.max():
        idx = order
    else:
        rng = np.random.default_rng(seed)
        starts = np.concatenate([[0], np.cumsum(size)])
        idx = np.concatenate([order[lo:hi] if hi - lo <= rows else np.sort(rng.choice(order[lo:hi], rows, False))
                              for lo, hi in zip(starts[:-1], starts[1:])])
    s1, s2 = _sample_pair_sums(vectors, idx, labels[idx], m)
    if len(idx) == n:  # every pair measured: the exact mean
        s1 /= size[:, None]
        s1 /= size[None, :]
        np.fill_diagonal(s1, np.inf)
        return s1, n
    taken = np.minimum(size, rows).astype(np.float64)
    s2 *= taken[:, None]
    s2 *= taken[None, :]
    np.sqrt(s2, out=s2)  # sqrt(sum of squares x pairs): the sample's mean / RMS is s1 / s2
    np.divide(s1, s2, out=s1, where=s2 > 0)
    s1[s2 <= 0] = 1.0
    del s2
    v = torch.zeros((m, vectors.shape[1]), dtype=torch.float64)
    q = torch.zeros(m, dtype=torch.float64)
    step = rows_per_block(vectors.shape[1] * 16)
    for lo in range(0, n, step):  # cluster sums in float64, a block of rows at a time
        x = torch.from_numpy(np.ascontiguousarray(vectors[lo:lo + step])).double()
        lab = torch.from_numpy(labels[lo:lo + step])
        v.index_add_(0, lab, x)
        q.index_add_(0, lab, (x * x).sum(1))
    d = _rms_distances(size.astype(np.float64), v.numpy(), q.numpy())
    d *= s1
    np.fill_diagonal(d, np.inf)
    return d, len(idx)


def _rows_per_cluster(size: np.ndarray, budget: int) -> int:
    """The largest t with sum(min(size, t)) <= budget (at least 1)."""
    if size.sum() <= budget:
        return int(size.max())
    lo, hi = 1, int(size.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if np.minimum(size, mid).sum() <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _sample_pair_sums(vectors: np.ndarray, idx: np.ndarray, lab: np.ndarray, m: int,
                      block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Sums of distances and of squared distances over the pairs of rows ``idx`` (sorted by ``lab``), per cluster pair.

    Distances in float64 from the centred rows; a squared distance within the
    expansion's rounding of its rows' norms counts as 0, so copies are at 0.
    """
    x = np.asarray(vectors[idx], dtype=np.float64)
    x = torch.from_numpy(x - x.mean(axis=0))
    sq = (x * x).sum(1)
    seg = np.flatnonzero(np.concatenate([[True], lab[1:] != lab[:-1]]))
    seg_lab = lab[seg]
    s1 = np.zeros((m, m))
    s2 = np.zeros((m, m))
    for i in range(0, len(idx), block):
        j = min(i + block, len(idx))
        norms = sq[i:j, None] + sq[None, :]
        d2 = norms - 2.0 * (x[i:j] @ x.T)
        d2[d2 <= _COPY_TOL * norms] = 0.0
        del norms
        d1 = d2.sqrt().numpy()
        d2 = d2.numpy()
        lb = lab[i:j]
        rs = np.flatnonzero(np.concatenate([[True], lb[1:] != lb[:-1]]))
        rows = lb[rs][:, None]
        s1[rows, seg_lab[None, :]] += np.add.reduceat(np.add.reduceat(d1, seg, axis=1), rs, axis=0)
        s2[rows, seg_lab[None, :]] += np.add.reduceat(np.add.reduceat(d2, seg, axis=1), rs, axis=0)
    return s1, s2


_COPY_TOL = 1e-12  # float64 rounding of |x|^2 + |y|^2 - 2 x.y is about 1e-16 of the norms


def _rms_distances(size, v, q) -> np.ndarray:
    """(m, m) root-mean-square distance over A x B from the clusters' sizes, vector sums and squared-norm sums."""
    norms = size[:, None] * q[None, :]
    norms += q[:, None] * size[None, :]
    d = v @ v.T
    d *= -2.0
    d += norms  # Q_AB: the sum of squared distances over A x B
    d[d <= SUMS_TOL * norms] = 0.0
    del norms
    d /= size[:, None]
    d /= size[None, :]
    np.clip(d, 0.0, None, out=d)
    np.sqrt(d, out=d)
    return d
