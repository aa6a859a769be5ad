"""``alq embed --append --skip-existing``: rows already in the pool are skipped.

A nightly job that is rerun for the same day re-embeds rows it already
appended. A row is *already there* when its id is in the pool **and** its
vector, as the pool stores it (same normalisation, same dtype), equals the
stored one; such rows are dropped from the append. The same id with a
different vector is still an error: that is a real conflict, not a rerun.

The pool's ids are held once as one Arrow array (8 bytes per int id); each
input block is matched against them with ``pyarrow.compute.index_in``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alq.errors import BadInputError


class ExistingRows:
    """Match input blocks against the rows of an existing pool."""

    def __init__(self, pool_path):
        from alq.store.opener import open_pool

        self.pool = open_pool(pool_path)  # local or s3:// / gs://
        m = self.pool.manifest
        self.normalize = m.normalize
        self.dtype = np.dtype(m.dtype)
        typ = pa.int64() if m.id_type == "int64" else pa.string()
        chunks = [pa.array(self.pool.shard_ids(s), type=typ) for s in range(self.pool.n_shards)]
        self.ids = pa.concat_arrays(chunks) if chunks else pa.array([], type=typ)
        self.skipped = 0

    def _stored_form(self, vectors: np.ndarray) -> np.ndarray:
        vec = np.asarray(vectors).astype(np.float32)
        if self.normalize == "l2":
            vec = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), np.finfo(np.float32).tiny)
        return vec.astype(self.dtype)

    def keep_mask(self, ids, vectors: np.ndarray, *, source: str, row0: int) -> np.ndarray:
        """bool (n,): True for rows to append; rows already stored identically are False.

        Raises :class:`BadInputError` for an id that is in the pool with a different vector.
        """
        n = len(vectors)
        if ids is None or len(self.ids) == 0:
            return np.ones(n, dtype=bool)
        arr = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(ids).tolist())
        try:
            arr = arr.cast(self.ids.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return np.ones(n, dtype=bool)  # another id type: the writer names the mismatch
        where = pc.index_in(arr, value_set=self.ids)
        hit = where.is_valid().to_numpy(zero_copy_only=False)
        if not hit.any():
            return np.ones(n, dtype=bool)
        rows = np.flatnonzero(hit)
        pool_rows = where.filter(where.is_valid()).to_numpy(zero_copy_only=False).astype(np.int64)
        stored = self.pool.take(pool_rows)
        given = self._stored_form(np.asarray(vectors)[rows])
        same = np.all(stored == given, axis=1)
        if not same.all():
            r = int(rows[np.flatnonzero(~same)[0]])
            raise BadInputError(f"{source}: row {row0 + r}: id {arr[r].as_py()!r} is already in the pool with a "
                                "different vector", hint="give the new row a new id; --skip-existing only skips "
                                "rows whose id and vector are both already there")
        self.skipped += len(rows)
        keep = np.ones(n, dtype=bool)
        keep[rows] = False
        return keep


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous [start, stop) runs of True in a bool mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
