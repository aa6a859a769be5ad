"""Dendrograms and flat cuts, shared by the exact and the graph HAC.

A dendrogram over ``n_leaves`` points is a list of merges in an order where
children always come before parents (non-decreasing height for the
monotone linkages alq builds). Merge ``i`` joins nodes ``left[i]`` and
``right[i]`` at ``height[i]`` and creates node ``n_leaves + i`` (leaves are
``0 .. n_leaves-1``): the same numbering as scipy's linkage matrix.

A dendrogram may be partial (the graph HAC stops at the threshold, and a
disconnected kNN graph never joins its components); a cut then simply has
more clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alq.errors import BadInputError


@dataclass
class Dendrogram:
    n_leaves: int
    left: np.ndarray  # int64 (m,)
    right: np.ndarray  # int64 (m,)
    height: np.ndarray  # float64 (m,)

    @property
    def n_merges(self) -> int:
        return len(self.height)

    @classmethod
    def from_rep_merges(cls, n: int, rep_a: np.ndarray, rep_b: np.ndarray, height: np.ndarray) -> Dendrogram:
        """Build from merges stated as (representative leaf of A, representative leaf of B, height).

        The merged cluster keeps ``rep_a`` as its representative. Merges are
        stably sorted by height first (NN-chain emits them out of order;
        children stay before parents because heights never decrease up the tree).
        """
        rep_a = np.asarray(rep_a, dtype=np.int64)
        rep_b = np.asarray(rep_b, dtype=np.int64)
        height = np.asarray(height, dtype=np.float64)
        order = np.argsort(height, kind="stable")
        rep_a, rep_b, height = rep_a[order], rep_b[order], height[order]
        cur = list(range(n))
        left: list[int] = []
        right: list[int] = []
        for i, (a, b) in enumerate(zip(rep_a.tolist(), rep_b.tolist())):
            left.append(cur[a])
            right.append(cur[b])
            cur[a] = n + i
        return cls(n, np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64), height)

    def labels(self, n_applied: int) -> np.ndarray:
        """Flat cluster of every leaf after applying the first ``n_applied`` merges (canonical ids)."""
        return canonical_labels(self.roots(n_applied))

    def roots(self, n_applied: int) -> np.ndarray:
        """Node id (leaf or ``n_leaves + merge``) of every leaf's cluster after the first ``n_applied`` merges."""
        n = self.n_leaves
        parent = np.arange(n + self.n_merges, dtype=np.int64)
        k = int(n_applied)
        new = np.arange(n, n + k, dtype=np.int64)
        parent[self.left[:k]] = new
        parent[self.right[:k]] = new
        # pointer jumping: depth halves each pass, so O(log depth) vectorised passes
        while True:
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt
        return parent[:n]

    def representatives(self) -> np.ndarray:
        """A leaf of every node (n_leaves + n_merges,): a merge's node keeps its left child's leaf.

        The convention of :meth:`from_rep_merges`, so ``(rep[left], rep[right], height)``
        rebuilds this dendrogram.
        """
        rep = np.arange(self.n_leaves + self.n_merges, dtype=np.int64)
        for i, child in enumerate(self.left.tolist()):
            rep[self.n_leaves + i] = rep[child]
        return rep

    def cut(self, *, threshold: float | None = None, n_clusters: int | None = None) -> np.ndarray:
        """Flat clusters: merges at height <= threshold, or at most ``n_clusters`` clusters.

        Same semantics as scipy's ``fcluster`` with ``criterion='distance'``
        and ``'maxclust'`` for a monotone, complete dendrogram: ``n_clusters``
        applies the first n_leaves - n_clusters merges *and every later merge
        at the same height* (the smallest threshold giving at most that many
        clusters), so rows joined at one height, such as copies of a row at
        distance 0, are never split by where the count falls among them; the
        cut may then have fewer clusters than asked. Returns int64 cluster ids
        numbered by the first leaf (row) of each cluster.
        """
        if (threshold is None) == (n_clusters is None):
            raise BadInputError("give exactly one of --threshold or --n-clusters")
        if threshold is not None:
            k = int(np.searchsorted(self.height, float(threshold), side="right"))
        else:
            if n_clusters < 1:
                raise BadInputError(f"--n-clusters={n_clusters} must be >= 1")
            k = min(self.n_merges, max(0, self.n_leaves - int(n_clusters)))
            if k > 0:  # heights are non-decreasing: take the merges tied with the k-th as well
                k = int(np.searchsorted(self.height, self.height[k - 1], side="right"))
        return self.labels(k)

    def to_scipy(self) -> np.ndarray:
        """(m, 4) float64 linkage matrix [left, right, height, size] as scipy writes it."""
        n = self.n_leaves
        size = np.ones(n + self.n_merges, dtype=np.int64)
        for i in range(self.n_merges):
            size[n + i] = size[self.left[i]] + size[self.right[i]]
        return np.column_stack([self.left, self.right, self.height, size[n:]]).astype(np.float64)


def canonical_labels(raw: np.ndarray) -> np.ndarray:
    """Relabel arbitrary cluster keys to 0..K-1 in order of each cluster's first row."""
    raw = np.asarray(raw)
    if raw.size == 0:
        return np.empty(0, dtype=np.int64)
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first), dtype=np.int64)
    return rank[inverse.reshape(-1)]


def size_summary(labels: np.ndarray) -> dict:
    """Counts that say what a clustering looks like (for clusters.json and `alq info`)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return {"n_clusters": 0}
    sizes = np.bincount(labels)
    sizes = sizes[sizes > 0]
    edges = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384]
    hist = []  # [[size range, number of clusters], ...] smallest first
    for lo, hi in zip(edges, edges[1:] + [None]):
        cnt = int(np.count_nonzero((sizes >= lo) & ((sizes < hi) if hi else True)))
        if cnt:
            hist.append([f"{lo}" if hi == lo + 1 else (f"{lo}-{hi - 1}" if hi else f">={lo}"), cnt])
    q = np.percentile(sizes, [50, 90, 99])
    return {"n_clusters": int(len(sizes)), "rows": int(labels.size), "min": int(sizes.min()),
            "max": int(sizes.max()), "mean": round(float(sizes.mean()), 3), "median": float(q[0]),
            "p90": float(q[1]), "p99": float(q[2]), "singletons": int(np.count_nonzero(sizes == 1)),
            "rows_in_largest_1pct": int(np.sort(sizes)[::-1][:max(1, len(sizes) // 100)].sum()),
            "histogram": hist}


def batch_spread(labels: np.ndarray, batches, *, n_excluded: int = 0) -> list[dict]:
    """How many clusters a Cluster-Margin batch of each size in ``batches`` would spread over.

    For batch b, k_m = r x b candidates with the default (auto) ratio r; if the
    candidates were a uniform sample of the pool, the expected number of
    distinct clusters among them is sum_c 1 - C(N - s_c, k_m) / C(N, k_m)
    (hypergeometric, exact), and the round-robin then takes about b / that
    rows per cluster. Real candidates are the lowest-margin rows, which crowd
    into fewer clusters: read this as an upper bound on the spread.
    """
    from math import lgamma

    from alq.strategies.cluster_margin import candidates_count

    labels = np.asarray(labels, dtype=np.int64)
    sizes = np.bincount(labels)
    sizes = sizes[sizes > 0].astype(np.float64)
    n = float(labels.size)
    out = []
    for b in batches:
        b = int(b)
        unl = int(n) - int(n_excluded)
        if b < 1 or b > unl:
            continue
        k_m = candidates_count("auto", b, unl)
        # log C(N - s, k) - log C(N, k), with C(a, k) = 0 when a < k
        miss = np.zeros_like(sizes)
        ok = n - sizes >= k_m
        s = sizes[ok]
        miss[ok] = np.exp(np.array([lgamma(n - v + 1) - lgamma(n - v - k_m + 1) for v in s])
                          - (lgamma(n + 1) - lgamma(n - k_m + 1)))
        hit = float(np.sum(1.0 - miss))
        out.append({"batch": b, "candidates": k_m, "expected_clusters": round(hit, 1),
                    "rows_per_cluster": round(b / hit, 2) if hit else None})
    return out
