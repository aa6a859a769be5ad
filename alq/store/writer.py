"""Write a pool store shard by shard, atomically, manifest last.

:class:`PoolWriter` is the coordinator: it takes the pool's writer lock,
decides the layout (dimension, dtype, id type, metadata columns; an append
takes them from the pool), numbers the shards, keeps every id unique across
the whole pool (:mod:`alq.store.poolids`) and builds the manifest. Where the
files go is a storage backend's business (:mod:`alq.store.backends`): a local
directory (a fresh pool built beside the target and swapped in; an append's
shards renamed into place and the manifest replaced last) or object storage
(shards uploaded whole, the manifest written by one conditional PUT). Either
way a crash leaves the previous pool verifying, and nothing is published until
``close()``.

Memory stays bounded by one input batch whatever the pool size: rows stream
straight into the open shard's NPY file (:mod:`alq.store.sharding`), only
the current shard's ids are held, and id uniqueness across the whole pool
is checked through hash buckets spilled to disk (:mod:`alq.store.idcheck`).
A finished shard is published (fsynced and hashed, or uploaded) on a
background thread while the next one fills; ``close()`` waits for them, so
the manifest is written only once every shard it lists is durable.

Shards written elsewhere (Ray workers, :mod:`alq.store.parts`) join through
:meth:`PoolWriter.adopt` before the commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq import fs
from alq.config import DEFAULT_SHARD_ROWS
from alq.errors import BadInputError
from alq.fs import lock
from alq.store.backends import backend_for
from alq.store.manifest import Manifest, ShardInfo
from alq.store.opener import pool_at
from alq.store.parts import PartSpec, adopt_shards
from alq.store.poolids import PoolIds
from alq.store.sharding import ShardSink, check_options, next_shard_number

__all__ = ["DEFAULT_SHARD_ROWS", "PoolWriter", "metadata_schema"]


class PoolWriter(ShardSink):
    """Stream (vectors, ids) batches into fixed-size shards of a new or existing pool.

    Validates as it goes: finite values, consistent dimension, id type,
    duplicate ids within a batch. Duplicates across batches or against the
    existing pool are found at ``close()`` (one bounded-memory pass over
    hashed ids) before anything is published. Errors name the source file
    and row when the caller passes ``source``/``source_row0``.

    ``vectors`` : array of shape (rows, dim), any float (or int) dtype; stored
    as ``dtype`` (float16|float32), l2-normalised first if ``normalize="l2"``.
    """

    def __init__(self, path: str | Path, *, dim: int | None = None, dtype: str = "float16",
                 shard_rows: int = DEFAULT_SHARD_ROWS, normalize: str | None = None,
                 append: bool = False, overwrite: bool = False, id_type: str | None = None,
                 extra: dict | None = None):
        self.remote = fs.is_remote(path)
        self.path = fs.normalize(path)
        check_options(shard_rows, dtype, normalize, id_type)
        self.shard_rows = int(shard_rows)
        self.normalize = normalize
        self.append = append
        self.extra = dict(extra or {})
        self._init_sink()
        self._closed = False
        self._adopted: list[ShardInfo] = []
        self.ids: PoolIds | None = None
        self.backend = backend_for(self.path)
        self._lock = lock.acquire(self.path, what="pool writer (`alq embed`/`alq synth`)")
        try:
            self._open(dim, dtype, append, overwrite, id_type, normalize)
        except BaseException:
            self.abort()
            raise

    def _open(self, dim, dtype, append, overwrite, id_type, normalize) -> None:
        """Under the lock: the backend checks the target and sweeps debris; an append reads the pool's ids."""
        self.base, replaced = self.backend.open(append=append, overwrite=overwrite)
        self.swept = self.backend.swept
        if self.base is not None:
            dtype = self._extend(dim, normalize, id_type)
        else:
            self.dim, self.id_type = dim, id_type
        self.dtype = np.dtype(dtype)
        # a replaced pool's shard names are never reused: its manifest stays valid until ours is in place
        prior = self.base or replaced
        self._shard_counter = next_shard_number(prior) if prior else 0
        self.ids = PoolIds(self.backend.spill_at, self.base.count if self.base else 0)
        if self.base is not None:
            self.ids.add_existing(self.path, self.base, self.backend.shard_checker(self.base))

    def _extend(self, dim, normalize, id_type) -> str:
        """An append takes the base pool's dim, dtype, ids and columns; a mismatch is refused. Returns the dtype."""
        base = self.base
        if dim is not None and dim != base.dim:
            raise BadInputError(f"input dim {dim} != pool dim {base.dim} ({self.path})")
        if normalize != base.normalize:
            raise BadInputError(f"--normalize={normalize} but the pool was built with "
                                f"normalize={base.normalize} ({self.path})",
                                hint=f"pass --normalize {base.normalize}" if base.normalize else "drop --normalize")
        if id_type is not None and id_type != base.id_type:
            raise BadInputError(f"ids are {id_type} but the pool at {self.path} uses {base.id_type} ids")
        self.dim, self.id_type = base.dim, base.id_type
        self.extra = {**base.extra, **self.extra}
        if base.shards:
            self.columns_schema = metadata_schema(fs.join(self.path, base.shards[0].parquet))
        return base.dtype  # appends keep the pool's dtype

    # -- shards written elsewhere (Ray tasks) ---------------------------------------------
    def part_spec(self) -> PartSpec:
        """Where and how workers write shards this writer will adopt."""
        return PartSpec(location=str(self.backend.location), dtype=str(self.dtype), dim=self.dim,
                        normalize=self.normalize, id_type=self.id_type, shard_rows=self.shard_rows,
                        columns_schema=self.columns_schema)

    def next_shard_number(self) -> int:
        return self._shard_counter

    def next_generated_id(self) -> int:
        return self.ids.next_generated

    def adopt(self, shards: Iterable[ShardInfo], *, source: str = "input", rows: list[tuple[str, int]] | None = None,
              dim: int | None = None, id_type: str | None = None, columns_schema: pa.Schema | None = None) -> None:
        """Take complete shards workers wrote at ``part_spec().location`` into this writer's commit.

        ``rows``: (source, first row) of each shard, for error messages. The
        shards' ids join the whole-pool duplicate check before anything is
        published; shard files not adopted are removed by ``close()``/``abort()``.
        """
        adopt_shards(self, shards, source=source, rows=rows, dim=dim, id_type=id_type, columns_schema=columns_schema)

    # -- publish -------------------------------------------------------------
    def close(self) -> Manifest:
        """Check ids across the whole pool, then publish: the backend commits the manifest (the pool changes here)."""
        if self._closed:
            raise RuntimeError("PoolWriter is closed")
        try:
            self._flush()
            if not self._new_shards:
                raise BadInputError("empty input: no rows to write")
            self.ids.check_unique(self._ids_at)
            shards = (self.base.shards if self.base else ()) + tuple(self._new_shards)
            manifest = Manifest(dim=int(self.dim), dtype=str(self.dtype), id_type=self.id_type or "int64",
                                shards=shards, normalize=self.normalize, extra=self.extra)
            self.backend.commit(manifest)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self.ids.cleanup()
        self._unlock()
        self.backend.after_commit(manifest)
        return manifest

    def _ids_at(self, rows: np.ndarray) -> np.ndarray:
        """Ids of pool rows: the existing pool's, or the new shards' (not yet committed)."""
        out = np.empty(len(rows), dtype=np.int64 if self.id_type == "int64" else object)
        old = rows < self.base_count
        if old.any():
            out[old] = pool_at(self.path, self.base).ids(rows[old])
        if (~old).any():
            new = rows[~old] - self.base_count
            tmp = Manifest(dim=int(self.dim), dtype=str(self.dtype), id_type=self.id_type,
                           shards=tuple(self._new_shards))
            out[~old] = self.backend.new_ids(tmp, {sh.name for sh in self._adopted})(new)
        return out

    def abort(self) -> None:
        """Drop everything written by this writer; the existing pool is untouched."""
        self._closed = True
        self._drop_unfinished()
        if self.ids is not None:
            self.ids.cleanup()
        self.backend.abort(self._new_shards)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            lock.release(self._lock)
            self._lock = None

    def __del__(self) -> None:
        # a writer dropped without close() or abort(): clean up and free the lock (no partial publish)
        if getattr(self, "_lock", None) is not None and not getattr(self, "_closed", True):
            try:
                self.abort()
            except Exception:  # noqa: BLE001 - best effort during garbage collection
                pass

    def __enter__(self) -> PoolWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self._closed:
            self.abort()


def metadata_schema(shard_parquet) -> pa.Schema | None:
    """The metadata columns (all but ``id``) of a shard's ids Parquet, or None when it has only ids."""
    try:
        schema = fs.read_schema(shard_parquet)
    except (pa.ArrowException, OSError):
        return None  # a missing or unreadable shard is named by the shard checks that follow
    fields = [f for f in schema if f.name != "id"]
    return pa.schema(fields) if fields else None

