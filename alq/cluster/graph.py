"""Average-linkage HAC on a sparse kNN graph, by parallel reciprocal-nearest-neighbour merging.

Average linkage needs every pairwise distance; a kNN graph observes only
the short ones. alq treats an unobserved pair as being at distance D, the
longest edge of the graph (every observed distance is <= D), so the linkage
of clusters A and B is

    L(A, B) = (S_AB + (|A| |B| - n_AB) D) / (|A| |B|)

with S_AB, n_AB the sum and number of graph edges between them. This is
exactly average linkage (UPGMA) on the matrix that holds d(i, j) on graph
edges and D elsewhere, i.e. the similarity-graph average linkage of
Dhulipala et al. 2021 ("Hierarchical Agglomerative Graph Clustering in
Nearly-Linear Time") with similarity D - d and 0 for non-edges. Two
consequences: clusters with no edge between them are never closer than
clusters with one, so only edges need to be looked at; and the
Lance-Williams update holds, so the linkage is *reducible*. For reducible
linkages every pair of reciprocal nearest neighbours (RNN) is merged by the
sequential greedy algorithm too and stays an RNN pair while other pairs
merge, so all RNN pairs are merged at once, round after round, with the
same result as sequential HAC (Sumengen et al. 2021, "Scaling Hierarchical
Agglomerative Clustering to Billion-sized Datasets"). On a complete graph
this is exact average linkage. ``missing=None`` gives the plain average
over observed edges instead (what higra's graph average linkage computes):
measured to chain badly on real embeddings, so not the default.

Each round is a handful of vectorised passes over the edge list (scatter
min, sort, segment sum) in torch, on CUDA when present. With a threshold
eps, a cluster whose every linkage is above eps can never merge again (a
weighted mean of values > eps stays > eps): it is retired with its edges,
so the graph shrinks as it goes.
"""

from __future__ import annotations

import numpy as np
import torch

from alq.cluster.linkage import Dendrogram


def edges_from_knn(nbr: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edge list from kNN lists: (a, b, distance) with a < b, each pair once.

    nbr : int64 (n, k), -1 where missing; dist : (n, k) distances. A pair found
    from both ends keeps the smaller distance (they agree up to float rounding).
    """
    n, k = nbr.shape
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst = nbr.reshape(-1).astype(np.int64, copy=False)
    w = dist.reshape(-1).astype(np.float64)
    ok = (dst >= 0) & (dst != src) & np.isfinite(w)
    src, dst, w = src[ok], dst[ok], w[ok]
    a = np.minimum(src, dst)
    b = np.maximum(src, dst)
    key = a * np.int64(max(n, 1)) + b
    order = np.argsort(key, kind="stable")
    key, w = key[order], w[order]
    if len(key) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    start = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    wmin = np.minimum.reduceat(w, start)
    ukey = key[start]
    return ukey // n, ukey % n, wmin


def graph_average_linkage(n: int, a: np.ndarray, b: np.ndarray, w: np.ndarray, *,
                          threshold: float | None = None, missing: float | None = None, device=None,
                          progress=None) -> tuple[Dendrogram, dict]:
    """Average-linkage dendrogram of n points over the undirected edges (a, b, w).

    With ``threshold`` only merges at linkage <= threshold are made (enough
    for a threshold cut); without, merging goes on until no edges remain
    (one cluster per connected component of the graph). ``missing`` is the
    distance D given to pairs without an edge (None: average over observed
    edges only).
    Returns (dendrogram, stats: rounds, merges, edges).
    """
    if device is None:
        from alq.device import torch_device

        device = torch_device()
    eps = float("inf") if threshold is None else float(threshold)
    ea = torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)
    eb = torch.as_tensor(np.asarray(b, dtype=np.int64), device=device)
    es = torch.as_tensor(np.asarray(w, dtype=np.float64), device=device)  # sum of distances
    ec = torch.ones_like(es)  # number of edges
    imputed = missing is not None
    if imputed:
        big_d = float(missing)
        size = torch.ones(n, dtype=torch.float64, device=device)
    rep = torch.arange(n, dtype=torch.int64, device=device)  # a leaf of each current cluster
    n_cur = n
    merges_a: list[np.ndarray] = []
    merges_b: list[np.ndarray] = []
    heights: list[np.ndarray] = []
    rounds = 0
    total = 0
    stats = {"edges": int(len(es)), "rounds": 0, "merges": 0}
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=device)
    while ea.numel() > 0:
        rounds += 1
        if imputed:
            pairs = size[ea] * size[eb]
            avg = (es + (pairs - ec) * big_d) / pairs
            del pairs
        else:
            avg = es / ec
        src = torch.cat([ea, eb])
        dst = torch.cat([eb, ea])
        w2 = torch.cat([avg, avg])
        minw = inf.expand(n_cur).clone().scatter_reduce_(0, src, w2, reduce="amin", include_self=True)
        cand = w2 == minw[src]
        nn = torch.full((n_cur,), n_cur, dtype=torch.int64, device=device)
        nn.scatter_reduce_(0, src[cand], dst[cand], reduce="amin", include_self=True)
        del src, dst, w2, cand
        active = torch.isfinite(minw) & (minw <= eps)
        u = torch.arange(n_cur, dtype=torch.int64, device=device)
        nn_safe = torch.where(nn < n_cur, nn, u)
        recip = active & (nn < n_cur) & (nn_safe[nn_safe] == u) & (u < nn_safe)
        pu = u[recip]
        if pu.numel() == 0:
            break
        pv = nn_safe[pu]
        merges_a.append(rep[pu].cpu().numpy())
        merges_b.append(rep[pv].cpu().numpy())
        heights.append(minw[pu].cpu().numpy())
        total += int(pu.numel())
        # contract: pv joins pu; retired (inactive) clusters leave the graph with their edges
        target = u.clone()
        target[pv] = pu
        keep = active.clone()
        keep[pv] = False
        n_new = int(keep.sum())
        newid = torch.full((n_cur,), -1, dtype=torch.int64, device=device)
        newid[keep] = torch.arange(n_new, dtype=torch.int64, device=device)
        ta = newid[target[ea]]
        tb = newid[target[eb]]
        m = (ta >= 0) & (tb >= 0) & (ta != tb)
        ta, tb, es, ec = ta[m], tb[m], es[m], ec[m]
        key = torch.minimum(ta, tb) * n_new + torch.maximum(ta, tb)
        del ta, tb, m
        key, order = torch.sort(key)
        es, ec = es[order], ec[order]
        del order
        ukey, inverse = torch.unique_consecutive(key, return_inverse=True)
        del key
        es = torch.zeros(len(ukey), dtype=torch.float64, device=device).index_add_(0, inverse, es)
        ec = torch.zeros(len(ukey), dtype=torch.float64, device=device).index_add_(0, inverse, ec)
        ea, eb = ukey // max(n_new, 1), ukey % max(n_new, 1)
        del ukey, inverse
        rep = rep[keep]
        if imputed:
            size.index_add_(0, pu, size[pv])
            size = size[keep]
        n_cur = n_new
        if progress is not None:
            progress("graph average linkage (merges)", total, max(1, n - 1))
    stats.update(rounds=rounds, merges=total)

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty(0)

    den = Dendrogram.from_rep_merges(n, cat(merges_a).astype(np.int64), cat(merges_b).astype(np.int64),
                                     cat(heights).astype(np.float64))
    return den, stats
