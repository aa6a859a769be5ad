"""The map task of ``alq dedup``: every near-duplicate pair of one shard's rows, exactly.

Each row's k nearest other rows come from the faiss index (or ``alq
cluster``'s saved kNN graph); a row whose k-th neighbour is still under the
threshold is searched again with 4k, 16k, ... neighbours until its last one
is beyond it (a range search), so the k cap never drops a pair. Candidate
pairs are re-read and their distances recomputed from ``x - y`` in float64,
and only pairs at distance <= threshold are returned: memory is bounded by a
shard, not the pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alq.cluster.knn import IndexRef, _exact_near, prepare, search_partial

GROW = 4  # k multiplier of the range-style re-search
EDGE_BATCH = 16_384  # candidate pairs recomputed exactly per batch (bounded memory)
SEARCH_ROWS = 65_536  # rows searched per step within a shard (bounded (rows, k) arrays)
_TOL = 4e-5  # slack on squared distances, times |x|^2, before the exact recomputation


def search_rows(pool, rows: np.ndarray, ref: IndexRef, k: int,
                 normalize) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k nearest other rows of the given pool rows.

    Returns (neighbours (m, k), distances (m, k) float64, squared norms of the rows (m,)).
    """
    x = prepare(pool.take(rows, dtype=np.float32), normalize)
    qn = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    kk = min(k + 1, ref.ntotal)
    d2, idx = ref.search(x, kk)
    own = idx == rows[:, None]
    drop = np.where(own.any(1), own.argmax(1), kk - 1)
    keep = np.ones_like(own)
    keep[np.arange(len(idx)), drop] = False
    idx = idx[keep].reshape(len(idx), kk - 1)
    d2 = d2[keep].reshape(len(idx), kk - 1)
    d2 = _exact_near(pool, x, idx, d2, normalize)
    return idx, np.sqrt(np.maximum(np.asarray(d2, dtype=np.float64), 0)), qn


def _exact_pairs(pool, a: np.ndarray, b: np.ndarray, normalize) -> np.ndarray:
    """Distances of pairs (a[i], b[i]) from x - y in float64, in bounded batches."""
    out = np.empty(len(a), dtype=np.float64)
    for s in range(0, len(a), EDGE_BATCH):
        xa = prepare(pool.take(a[s:s + EDGE_BATCH], dtype=np.float32), normalize).astype(np.float64)
        xb = prepare(pool.take(b[s:s + EDGE_BATCH], dtype=np.float32), normalize).astype(np.float64)
        out[s:s + EDGE_BATCH] = np.sqrt(((xa - xb) ** 2).sum(1))
    return out


def edges_partial(pool, lo: int, hi: int, ref: IndexRef, k: int, threshold: float, normalize,
                  graph_file: str | None = None, progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map task: the near-duplicate pairs of rows [lo, hi): (a, b, distance), a < b, each pair once.

    ``graph_file``: this shard's saved kNN graph (``alq cluster``'s
    ``knn-SHARD.parquet``) read instead of searching. ``progress(rows)``
    after each step (in-process runs).
    """
    from alq.cluster.knngraph import read_knn_shard

    saved = read_knn_shard(Path(graph_file)) if graph_file else None
    ntotal = ref.ntotal
    pa, pb = [], []
    for s in range(lo, hi, SEARCH_ROWS):
        e = min(hi, s + SEARCH_ROWS)
        if saved is not None:
            nbr, dist = saved[0][s - lo:e - lo], saved[1][s - lo:e - lo].astype(np.float64)
        else:
            nbr, dist = search_partial(pool, s, e, ref, k, normalize, True)
            dist = dist.astype(np.float64)
        x = prepare(pool.take(np.arange(s, e), dtype=np.float32), normalize)
        qn = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        del x
        slack = threshold ** 2 + _TOL * qn  # squared: faiss's rounding, before the exact check
        cand = (nbr >= 0) & (dist ** 2 <= slack[:, None])
        rows = np.arange(s, e, dtype=np.int64)
        kk = nbr.shape[1]
        full = cand[:, -1] if kk else np.zeros(len(rows), bool)  # the k-th neighbour is still close
        qi, col = np.nonzero(cand & ~full[:, None])
        pa.append(rows[qi])
        pb.append(nbr[qi, col])
        more = rows[full]
        if len(more) > 1:  # identical rows: one of each set searches on, the others join it (edge at 0)
            first, same_as = _identical(prepare(pool.take(more, dtype=np.float32), normalize))
            pa.append(more[same_as])
            pb.append(more)
            more = more[first]
        k_more = kk
        while len(more) and k_more < ntotal - 1:
            k_more = min(ntotal - 1, k_more * GROW)
            n2, d2, qn2 = search_rows(pool, more, ref, k_more, normalize)
            sl = threshold ** 2 + _TOL * qn2
            c2 = (n2 >= 0) & (d2 ** 2 <= sl[:, None])
            again = c2[:, -1] & (k_more < ntotal - 1)
            qi, col = np.nonzero(c2 & ~again[:, None])
            pa.append(more[qi])
            pb.append(n2[qi, col])
            more = more[again]
        if progress is not None:
            progress(e - s)
    a = np.concatenate(pa) if pa else np.empty(0, np.int64)
    b = np.concatenate(pb) if pb else np.empty(0, np.int64)
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = a != b
    pair = np.unique(np.stack([a[keep], b[keep]], 1), axis=0) if keep.any() else np.empty((0, 2), np.int64)
    d = _exact_pairs(pool, pair[:, 0], pair[:, 1], normalize)
    ok = d <= threshold
    return pair[ok, 0].astype(np.int64), pair[ok, 1].astype(np.int64), d[ok]


def _identical(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the first row of each set of identical rows, sorted; that first position for every row).

    A large set of identical rows (blank images, a repeated frame) would
    otherwise make every member search past the whole set.
    """
    v = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inv = np.unique(v, return_index=True, return_inverse=True)
    return np.sort(first), first[inv.reshape(-1)]
