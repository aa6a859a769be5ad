"""Pools on local disk: a pool directory (memory-mapped shards) and in-memory arrays.

:class:`ShardedPool` reads a directory alq wrote (``manifest.json``, NPY
shards, Parquet ids); :class:`MemoryPool` has the same interface over arrays.
Both implement :class:`~alq.store.base.Pool`; ``alq.store.open_pool(path)``
opens a directory or an object-storage prefix alike.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alq.errors import BadInputError, StoreError
from alq.fs.uris import local
from alq.io import read_parquet, sha256_file
from alq.store.base import Block, Pool, drop_resident  # noqa: F401 - Block, Pool, drop_resident: names callers use
from alq.store.manifest import Manifest, read_manifest
from alq.store.npyfile import READ_ERRORS, read_error_text
from alq.store.stored import StoredPool


class ShardedPool(StoredPool):
    """A pool directory: memory-mapped NPY shards + Parquet ids, per its manifest."""

    def __init__(self, path: str | Path, manifest: Manifest | None = None):
        self.path = local(path)
        self._use_manifest(manifest or read_manifest(self.path))
        self._vectors: dict[int, np.ndarray] = {}

    def __reduce__(self):  # reopen by path in another process (Ray/multiprocessing workers)
        return (ShardedPool, (str(self.path), self.manifest))

    def release_shard(self, shard: int) -> None:  # noqa: B027 - optional hook, a no-op by default
        self._vectors.pop(shard, None)  # unmapped once the last block view is dropped

    def shard_vectors(self, shard: int) -> np.ndarray:
        arr = self._vectors.get(shard)
        if arr is None:
            info = self.manifest.shards[shard]
            f = self.path / info.npy
            if not f.exists():
                raise StoreError(f"{f}: shard listed in the manifest is missing",
                                 hint="restore it, or rebuild the pool with `alq embed`")
            try:
                arr = np.load(f, mmap_mode="r", allow_pickle=False)
            except READ_ERRORS as exc:  # a damaged header is bad input too (numpy: TokenError)
                raise StoreError(f"{f}: unreadable or truncated shard ({read_error_text(exc)})",
                                 hint="run `alq info --verify` on the pool") from None
            if arr.shape != (info.rows, self.dim) or arr.dtype != self.dtype:
                raise StoreError(f"{f}: shard has shape {arr.shape} {arr.dtype}, manifest says "
                                 f"({info.rows}, {self.dim}) {self.dtype}")
            if len(self._vectors) >= 64:
                self._vectors.pop(next(iter(self._vectors)))
            self._vectors[shard] = arr
        return arr

    @functools.lru_cache(maxsize=8)  # noqa: B019 - pools live for one command
    def shard_ids(self, shard: int) -> np.ndarray:
        info = self.manifest.shards[shard]
        f = self.path / info.parquet
        col = read_parquet(f, columns=["id"]).column("id")
        if len(col) != info.rows:
            raise StoreError(f"{f}: {len(col)} ids but the manifest says {info.rows} rows")
        arr = col.to_numpy()
        if self.id_type == "int64":
            return arr.astype(np.int64, copy=False)
        return arr.astype(object, copy=False)

    def shard_schema(self, shard: int = 0) -> pa.Schema:
        return pq.read_schema(self.path / self.manifest.shards[shard].parquet)

    def shard_table(self, shard: int, columns: list[str] | None = None) -> pa.Table:
        return read_parquet(self.path / self.manifest.shards[shard].parquet, columns=columns)

    # -- what verify() reads (StoredPool) ------------------------------------------------
    def _where(self, name: str):
        return self.path / name

    def _file_digests(self):
        def digest(name: str) -> str | None:
            f = self.path / name
            return sha256_file(f) if f.exists() else None

        return digest

    def _recheck_shard(self, shard: int) -> None:
        self._vectors.pop(shard, None)
        self.shard_vectors(shard)


class MemoryPool(Pool):
    """Same interface over in-memory arrays (tests, small experiments).

    ``shard_rows`` cuts the array into virtual shards so that streamed code
    paths are exercised exactly as on disk.
    """

    def __init__(self, vectors: np.ndarray, ids=None, *, shard_rows: int | None = None):
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise BadInputError(f"vectors must be 2-D, got shape {vectors.shape}")
        if vectors.dtype not in (np.float16, np.float32):
            vectors = vectors.astype(np.float32)
        self.vectors = vectors
        self.dim = vectors.shape[1]
        self.dtype = vectors.dtype
        n = len(vectors)
        if ids is None:
            ids = np.arange(n, dtype=np.int64)
        ids = np.asarray(ids)
        if len(ids) != n:
            raise BadInputError(f"{len(ids)} ids for {n} vectors")
        self.id_type = "int64" if np.issubdtype(ids.dtype, np.integer) else "string"
        self._ids = ids.astype(np.int64) if self.id_type == "int64" else ids.astype(object)
        step = shard_rows or max(n, 1)
        self.shard_rows = tuple(min(step, n - i) for i in range(0, n, step)) or ()

    @property
    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(np.ascontiguousarray(self.vectors).tobytes())
        h.update(repr(self._ids.tolist()).encode())
        return h.hexdigest()[:16]

    def shard_vectors(self, shard: int) -> np.ndarray:
        o = self.offsets
        return self.vectors[o[shard]:o[shard + 1]]

    def shard_ids(self, shard: int) -> np.ndarray:
        o = self.offsets
        return self._ids[o[shard]:o[shard + 1]]
