"""Average-linkage HAC on a sparse kNN graph, by parallel reciprocal-nearest-neighbour merging.

Average linkage L(A, B) is the mean distance over all |A| |B| pairs; a kNN
graph observes only the short ones. Clusters merge only along graph edges;
how the pairs without an edge count is the ``mode``:

- ``rms`` (what ``alq cluster`` uses): each cluster keeps its size, vector
  sum and sum of squared norms, which give the exact sum of *squared*
  distances over all pairs of A x B; minus the observed edges' squared
  distances, that leaves the squared distances of the unobserved pairs,
  whose root-mean-square stands in for their mean. So
  L(A, B) = (S_AB + m sqrt((Q_AB - S2_AB) / m)) / (|A| |B|), m = |A| |B| - n_AB.
  It is exact whenever every pair is an edge, and in high dimension the
  mean and the RMS of a set of distances nearly coincide (concentration).
  Measured agreement with exact HAC (ARI) at the default cut: 0.97 on a
  3,000-point mixture, 0.94 on sklearn's digits (``constant`` below:
  0.1 and 0.5; ``observed``: 0.6 and 0.1, with one giant cluster at
  coarser cuts).
- ``constant``: unobserved pairs are at distance D (the longest edge):
  exactly UPGMA on that matrix, i.e. the similarity-graph average linkage
  of Dhulipala et al. 2021 ("Hierarchical Agglomerative Graph Clustering
  in Nearly-Linear Time").
- ``observed``: average over the observed edges only (higra's graph
  average linkage): chains badly on real embeddings.

The first two are exactly reducible (Lance-Williams: the linkage of A u B
to C is the size-weighted mean of L(A, C) and L(B, C)), ``rms`` nearly so.
For reducible linkages every pair of reciprocal nearest neighbours (RNN) is
merged by the sequential greedy algorithm too and stays an RNN pair while
other pairs merge, so all RNN pairs merge at once, round after round, with
the same result as sequential HAC (Sumengen et al. 2021, "Scaling
Hierarchical Agglomerative Clustering to Billion-sized Datasets"; Müllner
2011). Heights are kept monotone up the tree (a no-op when reducible).

Each round is a handful of vectorised passes over the edge list (scatter
min, sort, segment sum) in torch, on CUDA when present; only edges with a
merged endpoint get their linkage recomputed. With a threshold eps, a
cluster whose every linkage is above eps is retired with its edges (a
weighted mean of values > eps stays > eps), so the graph shrinks as it goes.

A cut into K clusters is finished on a dense matrix: :mod:`alq.cluster.dense`.
"""

from __future__ import annotations

import numpy as np
import torch

from alq.cluster.linkage import Dendrogram
from alq.config import rows_per_block


def edges_from_knn(nbr: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edge list from kNN lists: (a, b, distance) with a < b, each pair once.

    nbr : int64 (n, k), -1 where missing; dist : (n, k) distances. A pair found
    from both ends keeps the smaller distance (they agree up to float rounding).
    """
    n, k = nbr.shape
    dst = nbr.reshape(-1)
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    w = dist.reshape(-1)
    ok = (dst >= 0) & (dst != src) & np.isfinite(w)
    w = w[ok]
    key = np.minimum(src, dst)
    key *= np.int64(max(n, 1))
    key += np.maximum(src, dst)
    del src, dst
    key = key[ok]
    del ok
    order = np.argsort(key, kind="stable")
    key, w = key[order], w[order]
    del order
    if len(key) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    start = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    wmin = np.minimum.reduceat(w, start).astype(np.float64)
    ukey = key[start]
    return ukey // n, ukey % n, wmin


def graph_average_linkage(n: int, a: np.ndarray | None = None, b: np.ndarray | None = None,
                          w: np.ndarray | None = None, *, edges: list | None = None,
                          threshold: float | None = None, vectors: np.ndarray | None = None,
                          missing: float | None = None, device=None, progress=None,
                          vectors_scratch: bool = False) -> tuple[Dendrogram, dict]:
    """Average-linkage dendrogram of n points over the undirected edges (a, b, w).

    ``edges``: the list [a, b, w] instead, emptied once the edges are copied
    into the linkage's own arrays, so their memory (24 bytes an edge) is
    free for the rounds. ``vectors_scratch``: ``vectors`` (float32) may be
    overwritten with the clusters' vector sums, saving a copy of N x d' floats.

    How pairs without an edge count (see the module docstring):
    ``vectors`` (n, d'): their root-mean-square distance from the clusters'
    sufficient statistics (the default of ``alq cluster``); else
    ``missing``: the constant D; else: they are ignored (average over edges).
    With ``threshold`` only merges at linkage <= threshold are made (enough
    for a threshold cut); without, merging goes on until no edges remain.
    Returns (dendrogram, stats: rounds, merges, edges).

    Clusters keep the id of their smallest leaf (no renumbering), so a round
    touches only the edges of the clusters that merged in it: those are
    relabelled, their parallel edges combined (sorted, within that subset
    only) and their linkages recomputed; every other edge is left as it is.
    A round costs two scatter passes over the live edges plus work on the
    merged clusters' edges, and clusters whose every linkage is above the
    threshold leave with their edges.
    """
    if device is None:
        from alq.device import torch_device

        device = torch_device()
    if edges is not None:
        a, b, w = edges
    f64 = torch.float64
    eps = float("inf") if threshold is None else float(threshold)
    mode = "rms" if vectors is not None else ("constant" if missing is not None else "observed")
    idt = torch.int32 if n < 2**31 - 1 else torch.int64
    ea = torch.as_tensor(np.asarray(a), device=device).to(idt)
    eb = torch.as_tensor(np.asarray(b), device=device).to(idt)
    s1 = torch.as_tensor(np.asarray(w, dtype=np.float64), device=device)  # sum of edge distances
    if edges is not None:
        edges.clear()  # the int64 ends go now (ea, eb are int32 copies); the distances live on as s1
    del a, b, w
    cnt = torch.ones(len(s1), dtype=torch.float32, device=device)  # number of edges (exact in float32 to 2^24)
    s2 = s1 * s1 if mode == "rms" else None  # sum of squared edge distances
    size = torch.ones(n, dtype=f64, device=device)
    vs = qn = None
    if mode == "rms":
        vs = torch.as_tensor(np.asarray(vectors, dtype=np.float32), device=device)  # vector sums
        if not vectors_scratch:
            vs = vs.clone()
        qn = torch.empty(n, dtype=f64, device=device)  # sums of squared norms, in chunks (no N x d float64 copy)
        step = rows_per_block(vs.shape[1] * 16)
        for lo in range(0, n, step):
            qn[lo:lo + step] = (vs[lo:lo + step].double() ** 2).sum(1)
    big_d = float(missing) if missing is not None else 0.0
    # every first linkage is one edge between two points: its distance (no sums needed)
    link = s1.clone()
    node_h = torch.zeros(n, dtype=f64, device=device)  # height of each cluster's last merge
    alive = torch.ones(n, dtype=torch.bool, device=device)
    merges_a: list[np.ndarray] = []
    merges_b: list[np.ndarray] = []
    heights: list[np.ndarray] = []
    rounds = total = 0
    stats = {"edges": int(len(s1)), "rounds": 0, "merges": 0, "missing_pairs": mode}
    inf = float("inf")
    while ea.numel() > 0:
        rounds += 1
        la, lb = ea.long(), eb.long()
        minw = torch.full((n,), inf, dtype=f64, device=device)
        minw.scatter_reduce_(0, la, link, reduce="amin", include_self=True)
        minw.scatter_reduce_(0, lb, link, reduce="amin", include_self=True)
        nn = torch.full((n,), n, dtype=torch.int64, device=device)  # ties: the smallest neighbour id
        ca = link == minw[la]
        nn.scatter_reduce_(0, la[ca], lb[ca], reduce="amin", include_self=True)
        cb = link == minw[lb]
        nn.scatter_reduce_(0, lb[cb], la[cb], reduce="amin", include_self=True)
        del ca, cb
        active = alive & torch.isfinite(minw) & (minw <= eps)
        u = torch.nonzero(active & (nn < n)).squeeze(1)
        v = nn[u]
        pair = (nn[v] == u) & (u < v)
        pu, pv = u[pair], v[pair]
        del u, v, pair
        if pu.numel() == 0:
            break
        # heights never decrease up the tree (a no-op for the exactly reducible modes)
        h = torch.maximum(minw[pu], torch.maximum(node_h[pu], node_h[pv]))
        node_h[pu] = h
        merges_a.append(pu.cpu().numpy())
        merges_b.append(pv.cpu().numpy())
        heights.append(h.cpu().numpy())
        total += int(pu.numel())
        size.index_add_(0, pu, size[pv])
        if mode == "rms":
            vs.index_add_(0, pu, vs[pv])
            qn.index_add_(0, pu, qn[pv])
        # pv joins pu; clusters with no linkage within the threshold leave, with their edges
        alive &= active
        alive[pv] = False
        alive[pu] = True
        target = torch.arange(n, dtype=torch.int64, device=device)
        target[pv] = pu
        merged = torch.zeros(n, dtype=torch.bool, device=device)
        merged[pu] = True
        merged[pv] = True
        touched = merged[la] | merged[lb]
        keep = alive[la] & alive[lb] & ~touched
        # the merged clusters' edges: relabel, drop the pair's own edge, combine parallel edges
        ta, tb = target[la[touched]], target[lb[touched]]
        t_s1, t_cnt = s1[touched], cnt[touched]
        t_s2 = s2[touched] if s2 is not None else None
        del la, lb, target, merged, touched
        ok = alive[ta] & alive[tb] & (ta != tb)
        ta, tb, t_s1, t_cnt = ta[ok], tb[ok], t_s1[ok], t_cnt[ok]
        if t_s2 is not None:
            t_s2 = t_s2[ok]
        key = torch.minimum(ta, tb) * n + torch.maximum(ta, tb)
        del ta, tb, ok
        ukey, inverse = torch.unique(key, sorted=True, return_inverse=True)
        del key
        m = len(ukey)
        n_s1 = torch.zeros(m, dtype=f64, device=device).index_add_(0, inverse, t_s1)
        n_cnt = torch.zeros(m, dtype=torch.float32, device=device).index_add_(0, inverse, t_cnt)
        n_s2 = torch.zeros(m, dtype=f64, device=device).index_add_(0, inverse, t_s2) if t_s2 is not None else None
        del inverse, t_s1, t_cnt, t_s2
        n_a, n_b = (ukey // n).to(idt), (ukey % n).to(idt)
        del ukey
        n_link = _linkage(mode, n_a.long(), n_b.long(), n_s1, n_s2, n_cnt, size, big_d, vs, qn)
        ea = torch.cat([ea[keep], n_a])
        eb = torch.cat([eb[keep], n_b])
        s1 = torch.cat([s1[keep], n_s1])
        cnt = torch.cat([cnt[keep], n_cnt])
        link = torch.cat([link[keep], n_link])
        if s2 is not None:
            s2 = torch.cat([s2[keep], n_s2])
        del keep, n_a, n_b, n_s1, n_cnt, n_s2, n_link
        if progress is not None:
            progress("graph average linkage (merges)", total, max(1, n - 1))
    stats.update(rounds=rounds, merges=total)

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty(0)

    den = Dendrogram.from_rep_merges(n, cat(merges_a).astype(np.int64), cat(merges_b).astype(np.int64),
                                     cat(heights).astype(np.float64))
    return den, stats


# relative rounding of a cluster pair's sum of squared distances from float32 vector sums
SUMS_TOL = 1e-5


def _zero_within_rounding(sq, norms):
    """Sums of squared distances at or below their rounding (``SUMS_TOL`` x the norms' terms) -> 0.

    Identical rows give Q_AB = 0 exactly in exact arithmetic; from float32
    sums it comes out as noise, which would keep groups of duplicates larger
    than k apart at ``--threshold 0``.
    """
    if isinstance(sq, torch.Tensor):
        return torch.where(sq <= SUMS_TOL * norms, torch.zeros_like(sq), sq)
    return np.where(sq <= SUMS_TOL * norms, 0.0, sq)


def _linkage(mode, a, b, s1, s2, cnt, size, big_d, vs, qn) -> torch.Tensor:
    """Linkage of the edges (a, b) between current clusters, from their sums (module docstring)."""
    cnt = cnt.double()
    if mode == "observed":
        return s1 / cnt
    pairs = size[a] * size[b]
    n_missing = pairs - cnt
    if mode == "constant":
        return (s1 + n_missing * big_d) / pairs
    link = s1 / pairs  # exact where every pair is an edge
    gap = torch.nonzero(n_missing > 0).squeeze(1)
    if gap.numel() == 0:
        return link
    # sum over all |A||B| pairs of squared distances, from vector sums and squared norms;
    # the dot products in chunks of edges so the (edges, d) gathers stay within the working memory
    ga, gb = a[gap], b[gap]
    dot = torch.empty(len(gap), dtype=torch.float64, device=vs.device)
    step = rows_per_block(vs.shape[1] * 24)
    for lo in range(0, len(gap), step):
        hi = min(lo + step, len(gap))
        dot[lo:hi] = (vs[ga[lo:hi]] * vs[gb[lo:hi]]).double().sum(1)
    norms = size[gb] * qn[ga] + size[ga] * qn[gb]
    missing_sq = _zero_within_rounding(norms - 2.0 * dot - s2[gap], norms)
    nm = n_missing[gap]
    rms = torch.sqrt(torch.clamp(missing_sq / nm, min=0.0))
    link[gap] = (s1[gap] + nm * rms) / pairs[gap]
    return link
