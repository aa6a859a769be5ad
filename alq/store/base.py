"""The pool data-access object: one interface over sharded, remote or in-memory pools.

Strategies never see file paths. They ask a :class:`Pool` for its size,
for blocks of rows (bounded by ``ALQ_WORKING_MEMORY``, optionally only this
worker's ``split=(nsplit, rank)`` share), for rows by global index, and for
the mapping global index <-> (shard, row) <-> id. Blocks never cross shard
boundaries, so a block is always a view of one shard.

A pool implementation provides three things (``shard_vectors``,
``shard_ids``, ``fingerprint``); everything else is derived here.
Implementations: :class:`~alq.store.pool.ShardedPool` (a local directory,
memory-mapped), :class:`~alq.store.remote.RemotePool` (an object-storage
prefix, read in byte ranges), :class:`~alq.store.pool.MemoryPool` (arrays).
``alq.store.open_pool(path)`` picks the right one.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alq.config import rows_per_block
from alq.errors import BadInputError, StoreError


@dataclass(frozen=True)
class Block:
    """Rows ``start .. start+len(vectors)`` of the pool, all in shard ``shard``."""

    start: int
    vectors: np.ndarray  # (rows, dim), the pool dtype; may be a read-only memmap view
    shard: int
    row0: int  # first row within the shard

    @property
    def stop(self) -> int:
        return self.start + len(self.vectors)

    @property
    def indices(self) -> np.ndarray:
        return np.arange(self.start, self.stop, dtype=np.int64)


class Pool(ABC):
    """Read access to a pool of ``count`` embeddings of dimension ``dim``."""

    dim: int
    dtype: np.dtype
    id_type: str  # "int64" or "string"
    shard_rows: tuple[int, ...]

    # -- what a subclass provides -------------------------------------------
    @abstractmethod
    def shard_vectors(self, shard: int) -> np.ndarray:
        """Embeddings of one shard, shape (rows, dim); memory-mapped where possible."""

    @abstractmethod
    def shard_ids(self, shard: int) -> np.ndarray:
        """Ids of one shard: int64 array, or object array of str."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Changes whenever the pool's content changes (including appends)."""

    # -- derived ------------------------------------------------------------
    @functools.cached_property
    def offsets(self) -> np.ndarray:
        """offsets[s] = global index of shard s's first row; offsets[-1] = count."""
        return np.concatenate([[0], np.cumsum(self.shard_rows, dtype=np.int64)]).astype(np.int64)

    @property
    def count(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_shards(self) -> int:
        return len(self.shard_rows)

    def __len__(self) -> int:
        return self.count

    def block_rows(self, bytes_per_row: int | None = None) -> int:
        """Rows per block from ``ALQ_WORKING_MEMORY``.

        The default cost per row is a float32 copy of the embedding plus the
        stored row, which is what most stages hold at once.
        """
        if bytes_per_row is None:
            bytes_per_row = self.dim * (4 + self.dtype.itemsize)
        return rows_per_block(bytes_per_row)

    def split_range(self, split: tuple[int, int] = (1, 0)) -> tuple[int, int]:
        """Global row range [lo, hi) of worker ``rank`` among ``nsplit`` (contiguous, balanced)."""
        nsplit, rank = split
        if nsplit < 1 or not 0 <= rank < nsplit:
            raise BadInputError(f"split={split!r}: need nsplit >= 1 and 0 <= rank < nsplit")
        n = self.count
        return n * rank // nsplit, n * (rank + 1) // nsplit

    def iter_blocks(self, *, block_rows: int | None = None, split: tuple[int, int] = (1, 0),
                    lo: int | None = None, hi: int | None = None) -> Iterator[Block]:
        """Stream the pool (or this worker's split of it, or rows [lo, hi)) in blocks."""
        current, vectors = -1, None
        for start, s, r0, r1 in self.plan_blocks(*self._block_span(block_rows, split, lo, hi)):
            if s != current:
                if vectors is not None:
                    del vectors
                    self.release_shard(current)
                current, vectors = s, self.shard_vectors(s)
            block = vectors[r0:r1]
            self.check_finite(block, s, r0)
            yield Block(start=start, vectors=block, shard=s, row0=r0)
        if vectors is not None:
            del vectors
            self.release_shard(current)

    def check_finite(self, vectors: np.ndarray, shard: int, row0: int) -> None:
        """Refuse rows of shard ``shard`` (starting at its row ``row0``) that hold NaN or Inf.

        Every streamed block and every ``take`` goes through here, so no stage
        computes on a corrupt row (a NaN row whose checksum was updated, bytes
        flipped into an exponent of all ones). The check reads the block once
        more: float16 blocks by two integer max passes over their bits, float32
        blocks by one BLAS dot product of the block with itself (NaN and Inf
        propagate; an overflow is re-checked exactly). Measured against the
        float32 copy every stage makes of a block: a third of it for float16,
        a tenth for float32.
        """
        if vectors.size == 0 or not _has_nonfinite(vectors):
            return
        bad = np.flatnonzero(~np.isfinite(np.asarray(vectors)).all(axis=1))
        if not bad.size:
            return
        raise StoreError(f"{self._shard_label(shard)}: row {row0 + int(bad[0])}: NaN or Inf in the stored embeddings "
                         f"({bad.size} such rows in this block); the pool is corrupt",
                         hint="run `alq info --verify` on the pool, then restore or rebuild it with `alq embed`")

    def _shard_label(self, shard: int) -> str:
        return f"shard {shard}"

    def _block_span(self, block_rows, split, lo, hi) -> tuple[int, int, int]:
        """(lo, hi, rows per block) of an ``iter_blocks`` call."""
        if lo is None or hi is None:
            lo, hi = self.split_range(split)
        step = block_rows or self.block_rows()
        if step < 1:
            raise BadInputError(f"block_rows={step} must be >= 1")
        return lo, hi, step

    def plan_blocks(self, lo: int, hi: int, step: int) -> Iterator[tuple[int, int, int, int]]:
        """(global start, shard, first row, stop row) of each block of rows [lo, hi); blocks never cross shards."""
        offsets = self.offsets
        first = int(np.searchsorted(offsets, lo, side="right") - 1)
        for s in range(max(first, 0), self.n_shards):
            s0, s1 = int(offsets[s]), int(offsets[s + 1])
            if s0 >= hi:
                break
            a, b = max(lo, s0), min(hi, s1)
            for r in range(a - s0, b - s0, step):
                yield s0 + r, s, r, min(r + step, b - s0)

    def release_shard(self, shard: int) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Forget a shard after a streamed pass over it (no-op here).

        A memory-mapped shard's pages count in the process's resident set
        while it stays mapped; dropping it after its pass keeps peak RSS at
        about one shard whatever the pool size.
        """

    def locate(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Global indices -> (shard, row within shard)."""
        idx = self._check_indices(indices)
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        return shard.astype(np.int64), idx - self.offsets[shard]

    def global_index(self, shard, row) -> np.ndarray:
        shard = np.asarray(shard, dtype=np.int64)
        row = np.asarray(row, dtype=np.int64)
        if np.any((shard < 0) | (shard >= self.n_shards)) or np.any((row < 0) | (row >= np.asarray(self.shard_rows)[shard])):
            raise BadInputError("shard/row out of range for this pool")
        return self.offsets[shard] + row

    def _check_indices(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.count):
            raise BadInputError(f"row index out of range [0, {self.count}): "
                                f"{int(idx.min()) if idx.min() < 0 else int(idx.max())}")
        return idx

    def take(self, indices, dtype=None) -> np.ndarray:
        """Rows at the given global indices, in the given order, shape (len, dim)."""
        idx = self._check_indices(indices)
        out = np.empty((idx.size, self.dim), dtype=dtype or self.dtype)
        if idx.size == 0:
            return out
        shard, row = self.locate(idx)
        order = np.argsort(shard, kind="stable")
        bounds = np.flatnonzero(np.diff(shard[order])) + 1
        for group in np.split(order, bounds):
            s = int(shard[group[0]])
            got = self.take_from_shard(s, row[group])
            if _has_nonfinite(got):
                bad = int(np.flatnonzero(~np.isfinite(np.asarray(got)).all(axis=1))[0])
                self.check_finite(got[bad:bad + 1], s, int(row[group][bad]))
            out[group] = got
        return out

    def take_from_shard(self, shard: int, rows: np.ndarray) -> np.ndarray:
        """Rows of one shard (the per-shard step of :meth:`take`)."""
        vectors = self.shard_vectors(shard)
        got = vectors[rows]
        if len(rows) >= _SCATTER_RELEASE_ROWS:
            drop_resident(vectors)
        return got

    def ids(self, indices=None) -> np.ndarray:
        """Ids of the given global indices (all rows if None: small pools only)."""
        if indices is None:
            return np.concatenate([self.shard_ids(s) for s in range(self.n_shards)]) if self.n_shards else \
                np.empty(0, dtype=np.int64 if self.id_type == "int64" else object)
        idx = self._check_indices(indices)
        out = np.empty(idx.size, dtype=np.int64 if self.id_type == "int64" else object)
        if idx.size == 0:
            return out
        shard, row = self.locate(idx)
        for s in np.unique(shard):
            m = shard == s
            out[m] = self.shard_ids(int(s))[row[m]]
        return out

    def lookup(self, ids) -> np.ndarray:
        """Global index of each id (-1 where the id is not in the pool).

        A map over shards with a hash lookup per shard: memory is bounded by
        the query, not the pool.
        """
        query = _as_id_array(ids, self.id_type)
        out = np.full(len(query), -1, dtype=np.int64)
        if len(query) == 0:
            return out
        for s in range(self.n_shards):
            shard_ids = pa.array(self.shard_ids(s))
            # position of each query id within this shard (null if absent)
            pos = pc.index_in(query, value_set=shard_ids).fill_null(-1).to_numpy().astype(np.int64)
            hit = pos >= 0
            if hit.any():
                out[hit] = self.offsets[s] + pos[hit]
        return out

    def describe(self) -> dict:
        return {"count": self.count, "dim": self.dim, "dtype": str(self.dtype), "id_type": self.id_type,
                "shards": self.n_shards, "fingerprint": self.fingerprint}


def _has_nonfinite(vectors: np.ndarray) -> bool:
    """Whether any value is NaN or +-Inf (a fast test: may say True for a float32 product that overflows)."""
    if vectors.size == 0:
        return False
    if vectors.dtype == np.float16:
        # NaN/Inf have all five exponent bits set: as int16 the positive ones are >= 0x7C00, as uint16 the
        # negative ones are >= 0xFC00, and no finite value is either. Two integer max passes, nothing allocated.
        flat = np.ascontiguousarray(vectors).reshape(-1)
        return int(flat.view(np.int16).max()) >= 0x7C00 or int(flat.view(np.uint16).max()) >= 0xFC00
    if vectors.dtype.kind != "f":
        return False
    flat = np.ascontiguousarray(vectors).reshape(-1)
    return not np.isfinite(np.dot(flat, flat))  # one BLAS pass; NaN and Inf propagate, an overflow is re-checked


def _as_id_array(ids, id_type: str) -> pa.Array:
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if not isinstance(ids, pa.Array):
        ids = pa.array(np.asarray(ids).tolist() if not isinstance(ids, np.ndarray) or ids.dtype == object else ids)
    want = pa.int64() if id_type == "int64" else pa.string()
    if ids.type == want:
        return ids
    try:
        if id_type == "int64" and (pa.types.is_integer(ids.type)):
            return ids.cast(pa.int64())
        if id_type == "string" and (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
            return ids.cast(pa.string())
    except pa.ArrowInvalid:
        pass
    raise BadInputError(f"ids of type {ids.type} do not match the pool's id type {id_type}")


_SCATTER_RELEASE_ROWS = 256


def drop_resident(arr: np.ndarray) -> None:
    """Drop a memory-mapped array's pages from this process's resident set (its data stays valid).

    A scattered gather (``take`` of thousands of rows, e.g. the predicted class
    of a selected batch) faults in pages all over a shard, and the kernel maps
    whole neighbourhoods around each fault, so a pool's mapped pages pile up in
    RSS as the pool grows. ``madvise(MADV_DONTNEED)`` on a read-only file
    mapping only unmaps them: the next access re-reads from the page cache.
    """
    import mmap

    base = arr
    while base is not None and not isinstance(getattr(base, "_mmap", None), mmap.mmap):
        base = getattr(base, "base", None)
    mm = getattr(base, "_mmap", None) if base is not None else None
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # closed or not advisable: nothing to drop
            pass
