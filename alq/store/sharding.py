"""Rows into numbered shards: the streaming half every pool writer shares.

:class:`ShardSink` takes batches (vectors, ids, metadata columns), checks
them (:mod:`alq.store.batches`), streams the rows straight into the open
shard's NPY file (:class:`~alq.store.npyfile.NpyStreamWriter`) in the
backend's build directory, and, when a shard is full, writes its ids Parquet
and hands the shard to the backend's ``publish_shard`` on a background thread
(fsync + sha256 locally, an upload on object storage) while the next one
fills. Memory stays bounded by one input batch and one shard's ids.

Subclasses decide what becomes of the shards: :class:`~alq.store.writer.PoolWriter`
commits them with a manifest, :class:`~alq.store.parts.PartWriter` (a Ray
worker) returns them to the driver.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alq.errors import BadInputError
from alq.io import apply_umask, atomic_path, sha256_file
from alq.store.backends.base import StorageBackend
from alq.store.batches import conform_columns, normalise_ids, prepare_vectors
from alq.store.manifest import DTYPES, Manifest, ShardInfo
from alq.store.npyfile import NpyStreamWriter
from alq.store.poolids import PoolIds


def check_options(shard_rows: int, dtype: str, normalize: str | None, id_type: str | None) -> None:
    """Refuse a writer's options before anything is touched (the names are the CLI's flags)."""
    if shard_rows < 1:
        raise BadInputError(f"--shard-rows={shard_rows} must be >= 1")
    if dtype not in DTYPES:
        raise BadInputError(f"--dtype={dtype!r} must be one of {', '.join(DTYPES)}")
    if normalize not in (None, "l2"):
        raise BadInputError(f"--normalize={normalize!r} must be 'l2' or omitted")
    if id_type not in (None, "int64", "string"):
        raise BadInputError(f"id_type={id_type!r} must be int64 or string")


class ShardSink:
    """Stream (vectors, ids) batches into fixed-size shards ``shard-NNNNNN`` through a storage backend.

    Set by the subclass before the first :meth:`add`: ``backend``, ``ids``
    (:class:`~alq.store.poolids.PoolIds`), ``dim`` (None: the first batch
    fixes it), ``dtype``, ``id_type`` (None: the first ids fix it),
    ``normalize``, ``shard_rows``, ``columns_schema``, ``base`` (the manifest
    appended to, or None) and ``_shard_counter`` (the first shard's number).
    """

    backend: StorageBackend
    ids: PoolIds
    base = None
    dim: int | None = None
    dtype: np.dtype
    id_type: str | None = None
    normalize: str | None = None
    shard_rows: int
    columns_schema: pa.Schema | None = None  # metadata columns kept beside the ids
    _closed = False
    _shard_counter = 0

    def _init_sink(self) -> None:
        self._new_shards: list[ShardInfo] = []
        self._npy: NpyStreamWriter | None = None
        self._npy_tmp: Path | None = None
        self._shard_ids: list[np.ndarray] = []
        self._shard_cols: list[pa.Table] = []
        self._jobs: list[tuple[str, int, Future, str]] = []  # (name, rows, sha256 future, ids sha256)
        self._pool: ThreadPoolExecutor | None = None
        self._conv: np.ndarray | None = None  # reused dtype-conversion buffer

    @property
    def base_count(self) -> int:
        return self.ids.base_count

    @property
    def rows_written(self) -> int:
        return self.ids.new_rows

    @property
    def new_shards(self) -> tuple[ShardInfo, ...]:
        """Shards published by ``close()`` (empty before)."""
        return tuple(self._new_shards)

    # -- rows in -----------------------------------------------------------------------------
    def add(self, vectors: np.ndarray, ids=None, *, source: str = "input", source_row0: int = 0,
            columns: pa.Table | None = None) -> None:
        """Add a batch of shape (rows, dim). ``ids=None`` generates int64 ids continuing the pool's.

        ``columns``: metadata of the same rows (file paths, URLs...), stored beside the ids in the
        shard's Parquet. The first batch of a new pool fixes their names and types; later batches
        (and appends) are cast to them, missing columns become nulls, unknown ones are refused.
        """
        if self._closed:
            raise RuntimeError("PoolWriter is closed")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise BadInputError(f"{source}: vectors must be 2-D (rows, dim), got shape {vectors.shape}")
        if len(vectors) == 0:
            return
        if not (np.issubdtype(vectors.dtype, np.floating) or np.issubdtype(vectors.dtype, np.integer)):
            raise BadInputError(f"{source}: vectors have dtype {vectors.dtype}, expected floats")
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        elif vectors.shape[1] != self.dim:
            what = "the pool" if self.base is not None else "earlier input"
            raise BadInputError(f"{source}: dim {vectors.shape[1]} does not match {what} (dim {self.dim})")
        out, self._conv = prepare_vectors(vectors, source, source_row0, dtype=self.dtype, normalize=self.normalize,
                                          buffer=self._conv)
        ids, self.id_type = normalise_ids(ids, len(out), source, source_row0, id_type=self.id_type,
                                          next_generated=self.ids.next_generated, extending=self.base is not None)
        hashes = self.ids.check_batch(ids, source, source_row0)
        cols, self.columns_schema = conform_columns(columns, len(out), source, schema=self.columns_schema,
                                                    has_rows=bool(self.ids.new_rows or self.ids.base_count))
        self.ids.record(hashes, ids, source, source_row0)
        self._write_rows(out, ids, cols)

    def _write_rows(self, vecs: np.ndarray, ids: np.ndarray, cols: pa.Table | None = None) -> None:
        done = 0
        while done < len(vecs):
            if self._npy is None:
                self._open_shard()
            k = min(len(vecs) - done, self.shard_rows - self._npy.rows)
            self._npy.write(vecs[done:done + k])
            self._shard_ids.append(ids[done:done + k])
            if self.columns_schema is not None:
                self._shard_cols.append(cols.slice(done, k) if cols is not None else
                                        pa.Table.from_arrays([pa.nulls(k, f.type) for f in self.columns_schema],
                                                             schema=self.columns_schema))
            done += k
            if self._npy.rows == self.shard_rows:
                self._finish_shard()

    # -- shards out --------------------------------------------------------------------------
    def _shard_name(self) -> str:
        return f"shard-{self._shard_counter:06d}"

    def _open_shard(self) -> None:
        name = self._shard_name()
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.npy.", suffix=".tmp", dir=self.backend.build_dir)
        os.close(fd)
        self._npy_tmp = Path(tmp)
        self._npy = NpyStreamWriter(self._npy_tmp, self.dtype, self.dim, self.shard_rows)

    def _finish_shard(self) -> None:
        name = self._shard_name()
        build = self.backend.build_dir
        npy, tmp = self._npy, self._npy_tmp
        npy.close()
        self._npy, self._npy_tmp = None, None
        ids = np.concatenate(self._shard_ids) if len(self._shard_ids) > 1 else self._shard_ids[0]
        self._shard_ids = []
        id_arr = pa.array(ids, type=pa.int64()) if self.id_type == "int64" else pa.array(ids.tolist(), type=pa.string())
        table = pa.table({"id": id_arr})
        if self._shard_cols:
            meta = pa.concat_tables(self._shard_cols)
            self._shard_cols = []
            for c in meta.column_names:
                table = table.append_column(meta.schema.field(c), meta.column(c))
        with atomic_path(build / f"{name}.parquet", suffix=".parquet") as ptmp:
            pq.write_table(table, ptmp)
            ids_sha = sha256_file(ptmp)
        final = build / f"{name}.npy"
        apply_umask(tmp)
        os.replace(tmp, final)  # not yet durable; no manifest lists it until its job is done
        self._shard_counter += 1
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alq-shard-sync")
        self._jobs.append((name, npy.rows, self._pool.submit(self.backend.publish_shard, final), ids_sha))

    def _flush(self) -> None:
        """Finish the open shard (if it has rows) and wait until every shard is staged."""
        if self._npy is not None and self._npy.rows:
            self._finish_shard()
        self._settle()

    def _settle(self) -> None:
        """Wait for the background staging (fsync + sha256, or upload) of every finished shard."""
        for name, rows, fut, ids_sha in self._jobs:
            self._new_shards.append(ShardInfo(name=name, rows=rows, sha256=fut.result(), ids_sha256=ids_sha))
        self._jobs = []
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _drop_unfinished(self) -> None:
        """Abort's first step: stop staging, remove shards not yet staged and the open shard's temp file."""
        if self._pool is not None:  # let running syncs finish before their files go
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for name, *_ in self._jobs:
            for f in (f"{name}.npy", f"{name}.parquet"):
                if self.backend.build_dir is not None:
                    (self.backend.build_dir / f).unlink(missing_ok=True)
        self._jobs = []
        if self._npy is not None:
            self._npy.abort()
            self._npy = None
        if self._npy_tmp is not None:
            self._npy_tmp.unlink(missing_ok=True)
            self._npy_tmp = None


def shard_number(name: str) -> int:
    """The number of a ``shard-NNNNNN`` name (-1 for another name)."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def next_shard_number(manifest: Manifest) -> int:
    """One past the highest ``shard-NNNNNN`` in the manifest (names never repeat after an append)."""
    best = -1
    for s in manifest.shards:
        tail = s.name.rsplit("-", 1)[-1]
        if tail.isdigit():
            best = max(best, int(tail))
    return max(best + 1, len(manifest.shards))
