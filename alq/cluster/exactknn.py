"""Exact k-nearest-neighbour answers over a pool: the truth the kNN index is measured against.

:func:`exact_knn` streams the pool once for a set of queries (faiss's exact
``knn`` per block, the BLAS kernel of a flat index, so its time predicts an
exact graph's); :func:`recall` scores an approximate answer against it;
:func:`exact_near` recomputes near-zero distances in float64 so identical
rows sit at exactly 0. :func:`prepare` is what every distance in
``alq.cluster`` sees (float32, optionally l2-normalised).
"""

from __future__ import annotations

import numpy as np

from alq.errors import BadInputError, MissingFeatureError


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a runtime dependency
        raise MissingFeatureError("faiss is not installed (pip install faiss-cpu, or faiss-gpu)") from None
    return faiss


def prepare(vectors: np.ndarray, normalize: str | None, row0: int | None = None) -> np.ndarray:
    """float32, C-contiguous, l2-normalised when asked: what faiss and the distances see. Shape (n, d).

    ``row0`` (the pool index of the first row) lets an error name the offending row.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if normalize == "l2":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            bad = int(np.flatnonzero(norms[:, 0] == 0)[0])
            where = f"pool row {row0 + bad}" if row0 is not None else "a pool row"
            raise BadInputError(f"--normalize l2: {where} is all zeros and has no direction",
                                hint="drop --normalize or remove that row")
        x = x / norms
    return x


def exact_knn(pool, queries: np.ndarray, k: int, *, hi: int, normalize: str | None,
              query_rows: np.ndarray | None = None, prepared: bool = False) -> np.ndarray:
    """Brute-force k nearest rows in [0, hi) of each query (q, d), streamed over the pool. (q, k) int64.

    ``query_rows`` (global indices of the queries) are excluded from their own lists.
    ``prepared``: the queries are already what :func:`prepare` returns. Each
    pool block is searched with faiss's exact ``knn`` (the same BLAS kernel as
    a flat index, so its time predicts an exact graph's), then merged.
    """
    faiss = _faiss()
    q = queries if prepared else prepare(queries, normalize)
    kk = k + 1 if query_rows is not None else k  # room for the query itself
    best_d = np.full((len(q), 0), np.inf, dtype=np.float32)
    best_i = np.full((len(q), 0), -1, dtype=np.int64)
    own = np.asarray(query_rows, dtype=np.int64)[:, None] if query_rows is not None else None
    rows = pool.block_rows(pool.dim * (pool.dtype.itemsize + 4))
    for block in pool.iter_blocks(block_rows=rows, lo=0, hi=hi):
        x = prepare(block.vectors, normalize)
        d2, idx = faiss.knn(q, x, min(kk, len(x)))
        idx = np.where(idx >= 0, idx + block.start, -1)
        if own is not None:
            d2 = np.where(idx == own, np.inf, d2)
        cat_d = np.concatenate([best_d, d2], 1)
        cat_i = np.concatenate([best_i, idx], 1)
        order = np.argsort(cat_d, axis=1, kind="stable")[:, :kk]
        best_d = np.take_along_axis(cat_d, order, 1)
        best_i = np.take_along_axis(cat_i, order, 1)
    best_i = np.where(np.isfinite(best_d), best_i, -1)
    out = np.full((len(q), k), -1, dtype=np.int64)
    m = min(k, best_i.shape[1])
    out[:, :m] = best_i[:, :m]
    return out


def recall(got: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> float:
    """Share of the true k nearest found among the first k results other than the query itself."""
    k = truth.shape[1]
    mine = got == rows[:, None]
    # drop the query itself, else the last result, so every row keeps k candidates
    drop = np.where(mine.any(1), mine.argmax(1), got.shape[1] - 1)
    keep = np.ones_like(mine)
    keep[np.arange(len(got)), drop] = False
    g = got[keep].reshape(len(got), got.shape[1] - 1)[:, :k]
    hits = (g[:, :, None] == truth[:, None, :]) & (truth[:, None, :] >= 0)
    return float(hits.any(2).sum()) / max(1, int((truth >= 0).sum()))


# faiss's float32 |x|^2 + |y|^2 - 2 x.y is off by about this much times |x|^2 (with a margin)
_FAISS_TOL = 1e-5


def exact_near(pool, x: np.ndarray, idx: np.ndarray, d2: np.ndarray, normalize: str | None) -> np.ndarray:
    """Squared distances with the near pairs recomputed from ``x - y`` in float64; rows re-sorted.

    faiss's expansion leaves identical rows at a small positive distance
    (enough to split duplicates at ``--threshold 0``); a pair whose value is
    within its rounding of 0 is read back and computed directly, so
    duplicates are at exactly 0. Only such near pairs are re-read.
    """
    qn = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    near = (idx >= 0) & (d2 <= _FAISS_TOL * qn[:, None])
    if not near.any():
        return d2
    qi, col = np.nonzero(near)
    rows, where = np.unique(idx[qi, col], return_inverse=True)
    y = prepare(pool.take(rows, dtype=np.float32), normalize).astype(np.float64)
    d2 = d2.astype(np.float64)
    d2[qi, col] = ((x[qi].astype(np.float64) - y[where.reshape(-1)]) ** 2).sum(1)
    order = np.argsort(np.where(idx >= 0, d2, np.inf), axis=1, kind="stable")
    idx[...] = np.take_along_axis(idx, order, 1)
    return np.take_along_axis(d2, order, 1)
