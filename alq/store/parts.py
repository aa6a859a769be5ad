"""Shards written by Ray workers, and the driver's step that adopts them into its commit.

With ``alq embed --engine ray`` the driver holds the pool's
:class:`~alq.store.writer.PoolWriter` (and so its lock) and hands each task a
:class:`PartSpec`; a task writes complete shards ``shard-{first+k:06d}``
straight to the pool's location with :func:`write_part` (a
:class:`PartWriter`: no lock, no manifest, no cross-part id check) and
returns their :class:`~alq.store.manifest.ShardInfo`. The driver then calls
``writer.adopt(shards)`` (:func:`adopt_shards`): every adopted shard's ids
join the whole-pool duplicate check, and only ``close()`` publishes them.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq import fs
from alq.errors import BadInputError, StoreError
from alq.store.backends import backend_for
from alq.store.manifest import ShardInfo
from alq.store.npyfile import read_npy_header
from alq.store.poolids import PoolIds
from alq.store.sharding import ShardSink, check_options, shard_number


@dataclass(frozen=True)
class PartSpec:
    """What a worker needs to write complete shards of one pool (picklable: travels to Ray tasks)."""

    location: str  # the pool URI (remote) or a local directory the driver will adopt shards from
    dtype: str
    dim: int | None
    normalize: str | None
    id_type: str | None
    shard_rows: int
    columns_schema: pa.Schema | None = None


class PartWriter(ShardSink):
    """A worker's share: shards ``first_shard``.. at ``spec.location``; nothing is committed here."""

    def __init__(self, spec: PartSpec, first_shard: int, *, generated_id_start: int | None = None):
        check_options(spec.shard_rows, spec.dtype, spec.normalize, None)
        self.remote = fs.is_remote(spec.location)
        self.path = fs.normalize(spec.location)
        self.shard_rows, self.normalize = int(spec.shard_rows), spec.normalize
        self._init_sink()
        self._closed = False
        self.base, self.swept = None, []
        self.dim, self.id_type, self.dtype = spec.dim, spec.id_type, np.dtype(spec.dtype)
        self.columns_schema = spec.columns_schema
        self._shard_counter = int(first_shard)
        self.ids = PoolIds(None)  # the driver hashes every adopted shard's ids into its own check
        if generated_id_start is not None:
            self.ids.next_generated = int(generated_id_start)
        self.backend = backend_for(self.path)
        self.backend.open_part()

    def finish(self) -> list[ShardInfo]:
        """Finish the last shard and return every shard written (nothing is committed)."""
        self._flush()
        self._closed = True
        if self.backend.stages_locally:
            shutil.rmtree(self.backend.build_dir, ignore_errors=True)
        return list(self._new_shards)

    def abort(self) -> None:
        """Remove every shard this worker wrote (or uploaded)."""
        self._closed = True
        self._drop_unfinished()
        self.backend.abort(self._new_shards)

    def __del__(self) -> None:
        # dropped without finish() or abort(): remove the local stage and what was uploaded
        backend = getattr(self, "backend", None)
        if backend is not None and backend.stages_locally and not getattr(self, "_closed", True):
            try:
                self.abort()
            except Exception:  # noqa: BLE001 - best effort during garbage collection
                pass


def write_part(spec: PartSpec, first_shard: int, batches, *, generated_id_start: int | None = None) -> list[ShardInfo]:
    """Write complete shards ``shard-{first_shard+k:06d}`` of a pool at ``spec.location`` (a worker's share).

    ``batches``: (vectors, ids or None, columns or None, source, row0) tuples,
    validated as :meth:`PoolWriter.add` does. Every shard is full but possibly
    the last. Each file is published whole (local: temp + rename; remote: one
    upload), so a retried task rewrites the same names: one copy of each shard.
    """
    w = PartWriter(spec, first_shard, generated_id_start=generated_id_start)
    try:
        for vectors, ids, columns, source, row0 in batches:
            w.add(vectors, ids, source=source, source_row0=row0, columns=columns)
        return w.finish()
    except BaseException:
        w.abort()
        raise


# -- the driver's side -------------------------------------------------------------------------
def adopt_shards(writer: ShardSink, shards: Iterable[ShardInfo], *, source: str = "input",
                 rows: list[tuple[str, int]] | None = None, dim: int | None = None, id_type: str | None = None,
                 columns_schema: pa.Schema | None = None) -> None:
    """:meth:`PoolWriter.adopt <alq.store.writer.PoolWriter.adopt>`: workers' shards join ``writer``'s commit."""
    if writer._npy is not None and writer._npy.rows:
        raise RuntimeError("adopt() after add(): finish added rows in shard-aligned order first")
    writer._settle()
    if dim is not None:
        if writer.dim is not None and dim != writer.dim:
            what = "the pool" if writer.base is not None else "earlier input"
            raise BadInputError(f"{source}: dim {dim} does not match {what} (dim {writer.dim})")
        writer.dim = dim
    if id_type is not None:
        if writer.id_type is not None and id_type != writer.id_type:
            raise BadInputError(f"{source}: ids are {id_type} but the pool uses {writer.id_type} ids")
        writer.id_type = id_type
    if columns_schema is not None and writer.columns_schema is None:
        writer.columns_schema = columns_schema
    loc = writer.backend.location
    shards = list(shards)
    if shards and writer.dim is None:  # the driver did not see the vectors (an encoder ran in the workers)
        writer.dim = _npy_dim(fs.join(loc, shards[0].npy))
    if shards and (writer.id_type is None or (writer.columns_schema is None and not writer.ids.base_count
                                              and not writer.ids.new_rows)):
        schema = fs.read_schema(fs.join(loc, shards[0].parquet))
        if writer.id_type is None:
            writer.id_type = "int64" if pa.types.is_integer(schema.field("id").type) else "string"
        rest = [f for f in schema if f.name != "id"]
        if rest and writer.columns_schema is None:
            writer.columns_schema = pa.schema(rest)
    for k, sh in enumerate(shards):
        if sh.name in {x.name for x in writer._new_shards} or (writer.base and sh.name in
                                                               {x.name for x in writer.base.shards}):
            raise StoreError(f"{loc}: shard {sh.name} adopted twice")
        col = fs.read_table(fs.join(loc, sh.parquet), columns=["id"]).column("id").combine_chunks()
        if len(col) != sh.rows:
            raise StoreError(f"{fs.join(loc, sh.parquet)}: {len(col)} ids but the task reported {sh.rows} rows")
        src, row0 = rows[k] if rows else (source, 0)
        writer.ids.record_shard(col, writer.id_type, src, row0)
        writer._new_shards.append(sh)
        writer._adopted.append(sh)
        writer.backend.claim([sh])
        writer._shard_counter = max(writer._shard_counter, shard_number(sh.name) + 1)


def _npy_dim(path) -> int:
    """Row width of an alq shard from its NPY header (one small range read on a store)."""
    if fs.is_remote(path):
        f = fs.open_input(path)
        head = io.BytesIO(f.read_at(min(4096, f.size()), 0))
    else:
        head = io.BytesIO(Path(path).read_bytes()[:4096])
    shape, _, _ = read_npy_header(head, source=str(path))
    return int(shape[1])
