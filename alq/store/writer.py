"""Write a pool store shard by shard, atomically, manifest last.

A fresh pool is built in a temporary sibling directory and moved into place
when complete, so an existing pool at the same path survives any crash.
``append=True`` adds new shards to an existing pool: shard files go in under
new names (each written to a temporary name and renamed) and the manifest,
the only thing that makes them part of the pool, is replaced last, so a
crash mid-append leaves the previous pool verifying.

On object storage (``s3://``, ``gs://``) there is no rename: shards are built
in a local temporary directory, uploaded whole as each is finished (and the
local copy of its vectors dropped, so local disk holds about two shards), and
the manifest is then written with one conditional PUT: ``If-None-Match: *``
for a new pool, ``If-Match`` on the version the writer started from for an
append or a replace. A writer that lost a race publishes nothing. A replaced
pool's shards get new names (numbers past the old ones), so the old manifest
stays readable until the new one is in place; they are deleted after it.

Memory stays bounded by one input batch whatever the pool size: rows stream
straight into the open shard's NPY file (:class:`NpyStreamWriter`), only
the current shard's ids are held, and id uniqueness across the whole pool
is checked through hash buckets spilled to disk (:mod:`alq.store.idcheck`).
A finished shard is fsynced and hashed on a background thread while the
next one fills; ``close()`` waits for them, so the manifest is written
only once every shard it lists is durable.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alq import fs
from alq.config import DEFAULT_SHARD_ROWS
from alq.errors import BadInputError, StoreError
from alq.io import apply_umask, atomic_path, replace_dir, sha256_file
from alq.store import lock
from alq.store.idcheck import UniqueIdSpill, hash_ids
from alq.store.manifest import (
    DTYPES,
    MANIFEST,
    Manifest,
    ShardInfo,
    is_pool,
    manifest_bytes,
    manifest_path,
    read_manifest,
    read_manifest_versioned,
    write_manifest,
)
from alq.store.npyfile import HEADER_BYTES, NpyStreamWriter, npy_info, sync_and_hash


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


@dataclass(frozen=True)
class _Segment:
    """New rows [start, start+rows) came from ``source`` rows [row0, row0+rows)."""

    start: int
    rows: int
    source: str
    row0: int


class PoolWriter:
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
                 extra: dict | None = None, _part: PartSpec | None = None, _first_shard: int = 0):
        self.remote = fs.is_remote(path)
        self.path = fs.normalize(path)
        if shard_rows < 1:
            raise BadInputError(f"--shard-rows={shard_rows} must be >= 1")
        if dtype not in DTYPES:
            raise BadInputError(f"--dtype={dtype!r} must be one of {', '.join(DTYPES)}")
        if normalize not in (None, "l2"):
            raise BadInputError(f"--normalize={normalize!r} must be 'l2' or omitted")
        if id_type not in (None, "int64", "string"):
            raise BadInputError(f"id_type={id_type!r} must be int64 or string")
        self.shard_rows = int(shard_rows)
        self.normalize = normalize
        self.append = append
        self.extra = dict(extra or {})
        self._new_shards: list[ShardInfo] = []
        self._segments: list[_Segment] = []
        self._closed = False
        self._next_generated = 0
        self._new_rows = 0
        self._npy: NpyStreamWriter | None = None
        self._npy_tmp: Path | None = None
        self._shard_ids: list[np.ndarray] = []
        self._shard_cols: list[pa.Table] = []
        self.columns_schema: pa.Schema | None = None  # metadata columns kept beside the ids
        self._spill: UniqueIdSpill | None = None
        self._jobs: list[tuple[str, int, Future, str]] = []  # (name, rows, sha256 future, ids sha256)
        self._pool: ThreadPoolExecutor | None = None
        self._conv: np.ndarray | None = None  # reused dtype-conversion buffer
        self._lock = None
        self._part = _part
        self._base_version: str | None = None  # store version of the manifest this writer builds on (remote)
        self._replaced: Manifest | None = None  # the pool a remote --overwrite replaces
        self._stage: Path | None = None  # local directory of a remote writer's shards before upload
        self._uploaded: list[str] = []  # object names this writer put on the store
        self._adopted: list[ShardInfo] = []
        if _part is not None:  # a worker writing shards for a driver that holds the lock and commits
            self._open_part(_part, _first_shard)
            return
        self._lock = lock.acquire(self.path, what="pool writer (`alq embed`/`alq synth`)")
        try:
            if self.remote:
                self._open_remote(dim, dtype, append, overwrite, id_type, normalize)
            else:
                self._open(dim, dtype, append, overwrite, id_type, normalize)
        except BaseException:
            self.abort()
            raise

    def _open(self, dim, dtype, append, overwrite, id_type, normalize) -> None:
        from alq.io import restore_moved_aside
        from alq.store.debris import sweep

        self.base = None
        self.workdir = None
        # we hold the lock: a pool that a killed replace left moved aside is put back before anything looks at it
        restored = restore_moved_aside(self.path, locked=True)
        if append:
            if not is_pool(self.path):
                raise StoreError(f"{self.path}: --append needs an existing pool (no manifest.json there)",
                                 hint="drop --append to create it")
            self.base = read_manifest(self.path)
            self.swept = sweep(self.path, self.base)  # we hold the lock: a killed writer's leftovers are nobody's
            dtype = self._extend(dim, normalize, id_type)
            self.workdir = self.path
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # under our lock: a previous pool a killed --overwrite moved aside comes back first, so that
            # the checks below see it (a plain rerun never silently replaces it)
            self.swept = sweep(self.path, None)
            if self.path.exists() and not self.path.is_dir():
                raise BadInputError(f"{self.path}: exists and is not a directory")
            if self.path.is_dir() and not is_pool(self.path):
                self.swept += _sweep_unfinished(self.path)
            if self.path.exists() and any(self.path.iterdir()):
                if not overwrite:
                    back = (f" (its previous pool, which a killed replace had moved aside to {restored}, is back "
                            "in place)") if restored else ""
                    raise BadInputError(f"{self.path}: already exists and is not empty{back}",
                                        hint="pass --append to add rows, or --overwrite to replace it")
                if not is_pool(self.path):
                    raise BadInputError(f"{self.path}: --overwrite replaces only an alq pool, and this directory "
                                        "has no manifest.json", hint="choose another --out, or empty it first")
            self.base = None
            self.dim = dim
            self.id_type = id_type
            self.workdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".building",
                                                 dir=self.path.parent))
            apply_umask(self.workdir)
        self.dtype = np.dtype(dtype)
        self.base_count = self.base.count if self.base else 0
        self._shard_counter = _next_shard_number(self.base) if self.base else 0
        self._spill = UniqueIdSpill(self.path)
        if self.base is not None:
            self._spill_existing_ids()

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

    def _open_remote(self, dim, dtype, append, overwrite, id_type, normalize) -> None:
        """The object-storage counterpart of :meth:`_open` (we hold the pool's lock object)."""
        self.workdir = None
        self._stage = Path(tempfile.mkdtemp(prefix="alq-pool-stage-"))
        have = fs.listdir(self.path)
        current = None
        if MANIFEST in have:
            current, self._base_version = read_manifest_versioned(self.path, versioned=True)
        if append:
            if current is None:
                raise StoreError(f"{self.path}: --append needs an existing pool (no manifest.json there)",
                                 hint="drop --append to create it")
            self.base = current
            self.swept = sweep_remote(self.path, self.base, have)
            dtype = self._extend(dim, normalize, id_type)
        else:
            from alq.store.debris import SHARD_FILE

            others = [n for n in have if n != lock.REMOTE_LOCK]
            if current is None and others and all(SHARD_FILE.fullmatch(n) for n in others):
                # only shard objects and no manifest: a first build that was killed (we hold the lock)
                self.swept = sweep_remote(self.path, None, have)
                others = []
            if others and not overwrite:
                raise BadInputError(f"{self.path}: already exists and is not empty",
                                    hint="pass --append to add rows, or --overwrite to replace it")
            if others and current is None:
                raise BadInputError(f"{self.path}: --overwrite replaces only an alq pool, and this prefix "
                                    "has no manifest.json", hint="choose another --out, or empty it first")
            self.base = None
            self._replaced = current
            if current is not None:
                self.swept = sweep_remote(self.path, current, have)
            elif not hasattr(self, "swept"):
                self.swept = []
            self.dim, self.id_type = dim, id_type
        self.dtype = np.dtype(dtype)
        self.base_count = self.base.count if self.base else 0
        # a replaced pool's shard names are never reused: its manifest stays valid until ours is in place
        prior = self.base or self._replaced
        self._shard_counter = _next_shard_number(prior) if prior else 0
        self._spill = UniqueIdSpill(self._stage / "ids")
        if self.base is not None:
            self._spill_existing_ids()

    def _open_part(self, spec: PartSpec, first_shard: int) -> None:
        """Worker mode: write shards ``first_shard``.. at ``spec.location``; no lock, manifest or cross-part check."""
        self.remote = fs.is_remote(spec.location)
        self.path = fs.normalize(spec.location)
        self.base, self.base_count, self.swept = None, 0, []
        self.dim, self.id_type, self.dtype = spec.dim, spec.id_type, np.dtype(spec.dtype)
        self.columns_schema = spec.columns_schema
        self._shard_counter = int(first_shard)
        if self.remote:
            self.workdir = None
            self._stage = Path(tempfile.mkdtemp(prefix="alq-part-stage-"))
        else:
            self.workdir = Path(self.path)
        self._spill = _NoSpill()  # the driver hashes every adopted shard's ids into its own check

    # -- ids -----------------------------------------------------------------
    def _spill_existing_ids(self) -> None:
        """Hash the pool's ids into the spill, one shard at a time; note the largest int id."""
        row = 0
        biggest = -1
        sizes = fs.listdir(self.path) if self.remote else None
        for s in self.base.shards:
            if sizes is not None:
                _check_remote_shard(self.path, s, self.base.dim, self.base.dtype, sizes)
            else:
                _check_shard_file(self.path / s.npy, s.rows, self.base.dim, self.base.dtype)
            f = fs.join(self.path, s.parquet)
            try:
                col = fs.read_table(f, columns=["id"]).column("id").combine_chunks()
            except (pa.ArrowException, OSError) as exc:
                raise StoreError(f"{f}: unreadable ids of the existing pool ({str(exc).splitlines()[0][:160]})",
                                 hint="run `alq info --verify` on the pool") from None
            if len(col) != s.rows:
                raise StoreError(f"{f}: {len(col)} ids but the manifest says {s.rows} rows")
            if self.id_type == "int64":
                arr = col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
                if len(arr):
                    biggest = max(biggest, int(arr.max()))
                h = hash_ids(arr)
            else:
                h = hash_ids(col)
            self._spill.add(h, np.arange(row, row + s.rows, dtype=np.int64))
            row += s.rows
        self._next_generated = biggest + 1

    def _normalise_ids(self, ids, n: int, source: str, row0: int) -> np.ndarray:
        if ids is None:
            if self.id_type == "string":
                raise BadInputError(f"{source}: no ids given but the pool uses string ids",
                                    hint="pass --ids FILE or --id-column")
            if self.id_type is None:
                self.id_type = "int64"
            return np.arange(self._next_generated, self._next_generated + n, dtype=np.int64)
        if isinstance(ids, (pa.Array, pa.ChunkedArray)):
            if isinstance(ids, pa.ChunkedArray):
                ids = ids.combine_chunks()
            if ids.null_count:
                r = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
                raise BadInputError(f"{source}: row {row0 + r} has a null id")
            if pa.types.is_integer(ids.type):
                ids = ids.cast(pa.int64()).to_numpy(zero_copy_only=False)
            elif pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
                ids = np.asarray(ids.to_pylist(), dtype=object)
            else:
                raise BadInputError(f"{source}: ids have type {ids.type}; alq ids are integers or strings")
        ids = np.asarray(ids)
        if len(ids) != n:
            raise BadInputError(f"{source}: {len(ids)} ids for {n} vectors")
        if ids.dtype.kind in "iu":
            kind = "int64"
        elif ids.dtype.kind in "OUS":
            kind = "string"
        else:
            raise BadInputError(f"{source}: ids have dtype {ids.dtype}; alq ids are integers or strings")
        if self.id_type is None:
            self.id_type = kind
        if kind != self.id_type:
            what = "the pool uses" if self.base is not None else "earlier input has"
            raise BadInputError(f"{source}: ids are {'integers' if kind == 'int64' else 'strings'} but {what} "
                                f"{'integer' if self.id_type == 'int64' else 'string'} ids")
        if kind == "int64":
            if ids.dtype.kind == "u" and len(ids) and ids.max() > np.iinfo(np.int64).max:
                raise BadInputError(f"{source}: row {row0 + int(np.argmax(ids))} id does not fit int64")
            return ids.astype(np.int64, copy=False)
        ids = ids.astype(object)
        for r, v in enumerate(ids):
            if not isinstance(v, str):
                if v is None:
                    raise BadInputError(f"{source}: row {row0 + r} has a null id")
                ids[r] = v.decode() if isinstance(v, bytes) else str(v)
        return ids

    def _check_batch_duplicates(self, ids: np.ndarray, hashes: np.ndarray, source: str, row0: int) -> None:
        order = np.argsort(hashes, kind="stable")
        h = hashes[order]
        same = np.flatnonzero(h[1:] == h[:-1])
        best = None
        for i in same:
            a, b = int(order[i]), int(order[i + 1])
            if ids[a] == ids[b]:
                pair = (min(a, b), max(a, b))
                best = pair if best is None or pair[1] < best[1] else best
        if best is not None:
            raise BadInputError(f"{source}: duplicate id {_show(ids[best[0]])} at rows "
                                f"{row0 + best[0]} and {row0 + best[1]}")

    # -- vectors -------------------------------------------------------------
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
        out = self._prepare(vectors, source, source_row0)
        ids = self._normalise_ids(ids, len(out), source, source_row0)
        hashes = hash_ids(ids)
        self._check_batch_duplicates(ids, hashes, source, source_row0)
        cols = self._conform_columns(columns, len(out), source)
        start = self.base_count + self._new_rows
        self._spill.add(hashes, np.arange(start, start + len(out), dtype=np.int64))
        self._segments.append(_Segment(self._new_rows, len(out), source, source_row0))
        if self.id_type == "int64":
            self._next_generated = max(self._next_generated, int(ids.max()) + 1)
        self._new_rows += len(out)
        self._write_rows(out, ids, cols)

    def _prepare(self, vectors: np.ndarray, source: str, row0: int) -> np.ndarray:
        """Finite check, optional l2 normalisation, cast to the pool dtype.

        Row max and min carry the checks (NaN and +-Inf propagate through
        them; float16 overflows iff max |x| >= 65520), so no (rows, dim)
        boolean temporaries are made.
        """
        if vectors.dtype.itemsize > 4 and vectors.dtype.kind == "f" and len(vectors):
            wide = np.maximum(vectors.max(axis=1), -vectors.min(axis=1))  # NaN propagates
            big = np.isfinite(wide) & (wide > np.finfo(np.float32).max)
            if big.any():
                raise BadInputError(f"{source}: row {row0 + int(np.flatnonzero(big)[0])} has a finite value "
                                    f"beyond the float32 range (|x| > 3.4e38)", hint="rescale the vectors")
        with np.errstate(over="ignore", invalid="ignore"):
            vec = vectors.astype(np.float32, copy=False)
        mx, mn = vec.max(axis=1), vec.min(axis=1)
        bad = ~(np.isfinite(mx) & np.isfinite(mn))
        if bad.any():
            raise BadInputError(f"{source}: row {row0 + int(np.flatnonzero(bad)[0])} has NaN or Inf")
        scale = np.maximum(mx, -mn)  # max |x| per row
        if self.normalize == "l2":
            if (scale == 0).any():
                row = int(np.flatnonzero(scale == 0)[0])
                raise BadInputError(f"{source}: row {row0 + row} is all zeros and cannot be l2-normalised")
            # divide by max |x| first: the squares of 1e20 (or 1e-30) would overflow (underflow) float32
            vec = vec / scale[:, None]
            vec = vec / np.linalg.norm(vec, axis=1, keepdims=True)
        elif self.dtype == np.float16:
            big = scale >= 65520.0  # rounds to inf in float16
            if big.any():
                raise BadInputError(f"{source}: row {row0 + int(np.flatnonzero(big)[0])} overflows float16 "
                                    "(|x| > 65504)", hint="use --dtype float32 or --normalize l2")
            tiny = (scale > 0) & (scale < 2.0 ** -25)  # every value rounds to 0 in float16
            if tiny.any():
                raise BadInputError(f"{source}: row {row0 + int(np.flatnonzero(tiny)[0])} underflows float16 "
                                    "(every |x| < 3e-8 would be stored as 0)",
                                    hint="use --dtype float32 or --normalize l2")
        if vec.dtype == self.dtype:
            return vec
        n = vec.size
        if self._conv is None or self._conv.size < n:
            self._conv = np.empty(n, dtype=self.dtype)
        out = self._conv[:n].reshape(vec.shape)  # reused: rows go to disk before the next batch
        np.copyto(out, vec, casting="unsafe")
        return out

    def _conform_columns(self, columns: pa.Table | None, n: int, source: str) -> pa.Table | None:
        if columns is not None and columns.num_columns == 0:
            columns = None
        if self.columns_schema is None:
            if columns is None:
                return None
            if self._new_rows or self.base_count:
                raise BadInputError(f"{source}: has metadata columns ({', '.join(columns.column_names)}) but the "
                                    "pool's earlier rows have none", hint="pass --keep-columns none")
            self.columns_schema = columns.schema.remove_metadata()
            return columns.replace_schema_metadata(None)
        schema = self.columns_schema
        given = columns.column_names if columns is not None else []
        unknown = [c for c in given if c not in schema.names]
        if unknown:
            raise BadInputError(f"{source}: metadata column(s) {', '.join(unknown)} are not in the pool (it keeps "
                                f"{', '.join(schema.names)})", hint="pass --keep-columns with the pool's columns")
        arrays = []
        for f in schema:
            if f.name in given:
                try:
                    arrays.append(columns.column(f.name).cast(f.type))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise BadInputError(f"{source}: column {f.name!r} has type {columns.schema.field(f.name).type}, "
                                        f"the pool keeps it as {f.type}") from None
            else:
                arrays.append(pa.nulls(n, f.type))
        return pa.Table.from_arrays(arrays, schema=schema)

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

    def _shard_name(self) -> str:
        return f"shard-{self._shard_counter:06d}"

    def _open_shard(self) -> None:
        name = self._shard_name()
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.npy.", suffix=".tmp", dir=self._build_dir)
        os.close(fd)
        self._npy_tmp = Path(tmp)
        self._npy = NpyStreamWriter(self._npy_tmp, self.dtype, self.dim, self.shard_rows)

    def _finish_shard(self) -> None:
        name = self._shard_name()
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
        with atomic_path(self._build_dir / f"{name}.parquet", suffix=".parquet") as ptmp:
            pq.write_table(table, ptmp)
            ids_sha = sha256_file(ptmp)
        final = self._build_dir / f"{name}.npy"
        apply_umask(tmp)
        os.replace(tmp, final)  # not yet durable; no manifest lists it until its job is done
        self._shard_counter += 1
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alq-shard-sync")
        job = self._upload_shard if self.remote else sync_and_hash
        self._jobs.append((name, npy.rows, self._pool.submit(job, final), ids_sha))

    @property
    def _build_dir(self) -> Path:
        return self._stage if self.remote else self.workdir

    def _upload_shard(self, npy: Path) -> str:
        """Hash a finished shard, put both its files on the store (whole objects), drop the local vectors."""
        digest = sync_and_hash(npy)
        for f in (npy, npy.with_suffix(".parquet")):
            self._uploaded.append(f.name)
            fs.upload(f, fs.join(self.path, f.name))
        npy.unlink()  # the ids Parquet stays: a duplicate-id message reads it back
        return digest

    # -- shards written elsewhere (Ray tasks) ---------------------------------------------
    def part_spec(self) -> PartSpec:
        """Where and how workers write shards this writer will adopt."""
        location = self.path if self.remote else self.workdir
        return PartSpec(location=str(location), dtype=str(self.dtype), dim=self.dim, normalize=self.normalize,
                        id_type=self.id_type, shard_rows=self.shard_rows, columns_schema=self.columns_schema)

    def next_shard_number(self) -> int:
        return self._shard_counter

    def next_generated_id(self) -> int:
        return self._next_generated

    def adopt(self, shards: Iterable[ShardInfo], *, source: str = "input", rows: list[tuple[str, int]] | None = None,
              dim: int | None = None, id_type: str | None = None, columns_schema: pa.Schema | None = None) -> None:
        """Take complete shards workers wrote at ``part_spec().location`` into this writer's commit.

        ``rows``: (source, first row) of each shard, for error messages. The
        shards' ids join the whole-pool duplicate check before anything is
        published; shard files not adopted are removed by ``close()``/``abort()``.
        """
        if self._npy is not None and self._npy.rows:
            raise RuntimeError("adopt() after add(): finish added rows in shard-aligned order first")
        self._settle()
        if dim is not None:
            if self.dim is not None and dim != self.dim:
                what = "the pool" if self.base is not None else "earlier input"
                raise BadInputError(f"{source}: dim {dim} does not match {what} (dim {self.dim})")
            self.dim = dim
        if id_type is not None:
            if self.id_type is not None and id_type != self.id_type:
                raise BadInputError(f"{source}: ids are {id_type} but the pool uses {self.id_type} ids")
            self.id_type = id_type
        if columns_schema is not None and self.columns_schema is None:
            self.columns_schema = columns_schema
        loc = self.path if self.remote else self.workdir
        shards = list(shards)
        if shards and self.dim is None:  # the driver did not see the vectors (an encoder ran in the workers)
            self.dim = _npy_dim(fs.join(loc, shards[0].npy))
        if shards and (self.id_type is None or (self.columns_schema is None and not self.base_count
                                                and not self._new_rows)):
            schema = fs.read_schema(fs.join(loc, shards[0].parquet))
            if self.id_type is None:
                self.id_type = "int64" if pa.types.is_integer(schema.field("id").type) else "string"
            rest = [f for f in schema if f.name != "id"]
            if rest and self.columns_schema is None:
                self.columns_schema = pa.schema(rest)
        for k, sh in enumerate(shards):
            if sh.name in {x.name for x in self._new_shards} or (self.base and sh.name in
                                                                 {x.name for x in self.base.shards}):
                raise StoreError(f"{loc}: shard {sh.name} adopted twice")
            col = fs.read_table(fs.join(loc, sh.parquet), columns=["id"]).column("id").combine_chunks()
            if len(col) != sh.rows:
                raise StoreError(f"{fs.join(loc, sh.parquet)}: {len(col)} ids but the task reported {sh.rows} rows")
            ids = col.to_numpy(zero_copy_only=False)
            if self.id_type == "int64" or pa.types.is_integer(col.type):
                ids = ids.astype(np.int64, copy=False)
                if len(ids):
                    self._next_generated = max(self._next_generated, int(ids.max()) + 1)
                h = hash_ids(ids)
            else:
                h = hash_ids(col)
            start = self.base_count + self._new_rows
            self._spill.add(h, np.arange(start, start + sh.rows, dtype=np.int64))
            src, row0 = rows[k] if rows else (source, 0)
            self._segments.append(_Segment(self._new_rows, sh.rows, src, row0))
            self._new_rows += sh.rows
            self._new_shards.append(sh)
            self._adopted.append(sh)
            if self.remote:
                self._uploaded.extend([sh.npy, sh.parquet])
            self._shard_counter = max(self._shard_counter, _number_of(sh.name) + 1)

    def _settle(self) -> None:
        """Wait for the background fsync + sha256 of every finished shard."""
        for name, rows, fut, ids_sha in self._jobs:
            self._new_shards.append(ShardInfo(name=name, rows=rows, sha256=fut.result(), ids_sha256=ids_sha))
        self._jobs = []
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def rows_written(self) -> int:
        return self._new_rows

    @property
    def new_shards(self) -> tuple[ShardInfo, ...]:
        """Shards published by ``close()`` (empty before)."""
        return tuple(self._new_shards)

    # -- publish -------------------------------------------------------------
    def close(self) -> Manifest:
        """Check ids across the whole pool, then publish: manifest last (append) or directory swap (fresh)."""
        if self._closed:
            raise RuntimeError("PoolWriter is closed")
        try:
            if self._npy is not None and self._npy.rows:
                self._finish_shard()
            self._settle()
            if not self._new_shards:
                raise BadInputError("empty input: no rows to write")
            self._check_duplicates()
            shards = (self.base.shards if self.base else ()) + tuple(self._new_shards)
            manifest = Manifest(dim=int(self.dim), dtype=str(self.dtype), id_type=self.id_type or "int64",
                                shards=shards, normalize=self.normalize, extra=self.extra)
            if self.remote:
                self._commit_remote(manifest)
            else:
                write_manifest(self.workdir, manifest)
                if self.base is None:
                    self._publish_dir()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._spill.cleanup()
        self._unlock()
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
        if self._replaced is not None:  # readers now see the new manifest: the replaced pool's shards can go
            keep = {f for sh in manifest.shards for f in (sh.npy, sh.parquet)}
            for sh in self._replaced.shards:
                for f in (sh.npy, sh.parquet):
                    if f not in keep:
                        fs.delete(fs.join(self.path, f))
        return manifest

    def _commit_remote(self, manifest: Manifest) -> None:
        """One conditional PUT of the manifest: the pool changes here or not at all."""
        data = manifest_bytes(manifest)
        uri = manifest_path(self.path)
        if self._base_version is None:
            ok = fs.create_exclusive(uri, data)
        else:
            ok = fs.replace_if(uri, data, self._base_version)
        if ok is None:
            raise StoreError(f"{self.path}: the pool changed while this writer ran (another writer committed "
                             "first); nothing of this run was published",
                             hint="rerun: the new run starts from the pool as it is now")

    def finish_part(self) -> list[ShardInfo]:
        """Worker mode: finish the last shard and return every shard written (nothing is committed)."""
        if self._npy is not None and self._npy.rows:
            self._finish_shard()
        self._settle()
        self._closed = True
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
        return list(self._new_shards)

    def _unlock(self) -> None:
        if self._lock is not None:
            lock.release(self._lock)
            self._lock = None

    def _check_duplicates(self) -> None:
        groups = self._spill.candidate_groups()
        if not groups:
            return
        rows = np.unique(np.concatenate(groups))
        ids = dict(zip(rows.tolist(), self._ids_at(rows).tolist()))
        best = None  # (first row, duplicate row) with the smallest duplicate row
        for g in groups:
            first_of: dict = {}
            for r in g.tolist():  # g is sorted by row
                v = ids[r]
                if v in first_of:
                    if best is None or r < best[1]:
                        best = (first_of[v], r)
                else:
                    first_of[v] = r
        if best is None:
            return  # hash collisions only
        first, dup = best
        src, srow = self._source_of(dup)
        value = _show(ids[dup])
        if first < self.base_count:
            raise BadInputError(f"{src}: row {srow}: id {value} is already in the pool")
        fsrc, frow = self._source_of(first)
        raise BadInputError(f"{src}: row {srow}: duplicate id {value} (first seen at {fsrc} row {frow})")

    def _source_of(self, row: int) -> tuple[str, int]:
        new = row - self.base_count
        starts = [s.start for s in self._segments]
        seg = self._segments[int(np.searchsorted(starts, new, side="right")) - 1]
        return seg.source, seg.row0 + (new - seg.start)

    def _ids_at(self, rows: np.ndarray) -> np.ndarray:
        from alq.store.opener import pool_at
        from alq.store.pool import ShardedPool

        out = np.empty(len(rows), dtype=np.int64 if self.id_type == "int64" else object)
        old = rows < self.base_count
        if old.any():
            out[old] = pool_at(self.path, self.base).ids(rows[old])
        if (~old).any():
            new = rows[~old] - self.base_count
            tmp = Manifest(dim=int(self.dim), dtype=str(self.dtype), id_type=self.id_type,
                           shards=tuple(self._new_shards))
            adopted = {sh.name for sh in self._adopted}
            if self.remote:
                # ids Parquets of shards written here are still in the stage; adopted ones are on the store
                view = _StagedIds(tmp, self._stage, self.path, adopted)
                out[~old] = view.ids(new)
            else:
                out[~old] = ShardedPool(self.workdir, tmp).ids(new)
        return out

    def _publish_dir(self) -> None:
        replace_dir(self.workdir, self.path)

    def abort(self) -> None:
        """Drop everything written by this writer; the existing pool is untouched."""
        self._closed = True
        if self._pool is not None:  # let running syncs finish before their files go
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for name, *_ in self._jobs:
            for f in (f"{name}.npy", f"{name}.parquet"):
                if self._build_dir is not None:
                    (self._build_dir / f).unlink(missing_ok=True)
        self._jobs = []
        if self._npy is not None:
            self._npy.abort()
            self._npy = None
        if self._npy_tmp is not None:
            self._npy_tmp.unlink(missing_ok=True)
            self._npy_tmp = None
        if self._spill is not None:
            self._spill.cleanup()
        if self.remote or self._part is not None:
            self._abort_remote_or_part()
            self._unlock()
            return
        if self.base is None:
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for s in self._new_shards:
                for f in (s.npy, s.parquet):
                    (self.workdir / f).unlink(missing_ok=True)
            # a signal between mkstemp (or the rename to a shard name) and bookkeeping can orphan a file;
            # under our lock, no temp file and no shard the base manifest does not list is anyone else's
            for f in self.workdir.glob(".shard-*.tmp") if self.workdir is not None else ():
                f.unlink(missing_ok=True)
            listed = {name for sh in self.base.shards for name in (sh.npy, sh.parquet)}
            for pattern in ("shard-*.npy", "shard-*.parquet"):
                for f in self.workdir.glob(pattern) if self.workdir is not None else ():
                    if f.name not in listed:
                        f.unlink(missing_ok=True)
        self._unlock()

    def _abort_remote_or_part(self) -> None:
        """Remove what this writer put on the store (or, a local worker, in the build directory)."""
        if self.remote:
            for name in self._uploaded:
                with contextlib.suppress(Exception):
                    fs.delete(fs.join(self.path, name))
            self._uploaded = []
        elif self._part is not None and self.workdir is not None:
            for s in self._new_shards:
                for f in (s.npy, s.parquet):
                    (self.workdir / f).unlink(missing_ok=True)
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)

    def __del__(self) -> None:
        # a writer dropped without close() or abort(): clean up and free the lock (no partial publish)
        if (getattr(self, "_lock", None) is not None or getattr(self, "_stage", None) is not None) \
                and not getattr(self, "_closed", True):
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


def _check_shard_file(f: Path, rows: int, dim: int, dtype: str) -> None:
    """Cheap pre-append check of an existing shard: present, complete, the manifest's shape (no checksum)."""
    if not f.exists():
        raise StoreError(f"{f}: shard listed in the manifest is missing", hint="run `alq info --verify` on the pool")
    try:
        info = npy_info(f)
    except BadInputError as exc:
        raise StoreError(str(exc), hint="run `alq info --verify` on the pool") from None
    if info.shape != (rows, dim) or info.dtype != np.dtype(dtype):
        raise StoreError(f"{f}: shard has shape {info.shape} {info.dtype}, manifest says ({rows}, {dim}) {dtype}")


def _check_remote_shard(pool: str, s: ShardInfo, dim: int, dtype: str, sizes: dict[str, int]) -> None:
    """The remote pre-append check: both objects present, the vectors object exactly the manifest's size."""
    for f in (s.npy, s.parquet):
        if f not in sizes:
            raise StoreError(f"{fs.join(pool, f)}: shard listed in the manifest is missing",
                             hint="run `alq info --verify` on the pool")
    want = HEADER_BYTES + s.rows * dim * np.dtype(dtype).itemsize
    if sizes[s.npy] != want:
        raise StoreError(f"{fs.join(pool, s.npy)}: {sizes[s.npy]} bytes, but a ({s.rows}, {dim}) {dtype} shard "
                         f"has {want}", hint="run `alq info --verify` on the pool")


def _sweep_unfinished(pool_dir: Path) -> list[str]:
    """A directory with no manifest that holds only shard files (and their temp halves): a first build that was
    killed before its commit. Nothing reads it; the next writer (holding the lock) clears it."""
    from alq.store.debris import SHARD_FILE

    names = [p.name for p in pool_dir.iterdir()]
    junk = [n for n in names if SHARD_FILE.fullmatch(n) or (n.startswith(".shard-") and n.endswith(".tmp"))]
    if not junk or len(junk) != len(names):
        return []
    for n in junk:
        (pool_dir / n).unlink(missing_ok=True)
    return sorted(junk)


def sweep_remote(pool: str, manifest: Manifest | None, have: dict[str, int] | None = None) -> list[str]:
    """Delete shard objects no manifest lists (a killed writer's uploads); only while holding the lock."""
    from alq.store.debris import SHARD_FILE

    have = fs.listdir(pool) if have is None else have
    listed = {f for s in manifest.shards for f in (s.npy, s.parquet)} if manifest else set()
    removed = sorted(n for n in have if SHARD_FILE.fullmatch(n) and n not in listed)
    for n in removed:
        fs.delete(fs.join(pool, n))
    return removed


class _NoSpill:
    """Worker mode keeps no id spill: the driver checks every adopted id."""

    def add(self, hashes, rows) -> None:
        pass

    def candidate_groups(self) -> list:
        return []

    def cleanup(self) -> None:
        pass


class _StagedIds:
    """Ids of a remote writer's new shards: from the local stage, or the store for adopted shards."""

    def __init__(self, manifest: Manifest, stage: Path, pool: str, adopted: set[str]):
        self.manifest, self.stage, self.pool, self.adopted = manifest, stage, pool, adopted
        self.offsets = np.concatenate([[0], np.cumsum([s.rows for s in manifest.shards])]).astype(np.int64)

    def ids(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), dtype=object)
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        for s in np.unique(shard):
            info = self.manifest.shards[int(s)]
            src = fs.join(self.pool, info.parquet) if info.name in self.adopted else self.stage / info.parquet
            col = fs.read_table(src, columns=["id"]).column("id").to_numpy(zero_copy_only=False)
            m = shard == s
            out[m] = col[rows[m] - self.offsets[s]]
        return out


def write_part(spec: PartSpec, first_shard: int, batches, *, generated_id_start: int | None = None) -> list[ShardInfo]:
    """Write complete shards ``shard-{first_shard+k:06d}`` of a pool at ``spec.location`` (a worker's share).

    ``batches``: (vectors, ids or None, columns or None, source, row0) tuples,
    validated as :meth:`PoolWriter.add` does. Every shard is full but possibly
    the last. Each file is published whole (local: temp + rename; remote: one
    upload), so a retried task rewrites the same names: one copy of each shard.
    """
    w = PoolWriter(spec.location, dtype=spec.dtype, shard_rows=spec.shard_rows, normalize=spec.normalize,
                   _part=spec, _first_shard=first_shard)
    if generated_id_start is not None:
        w._next_generated = int(generated_id_start)
    try:
        for vectors, ids, columns, source, row0 in batches:
            w.add(vectors, ids, source=source, source_row0=row0, columns=columns)
        return w.finish_part()
    except BaseException:
        w.abort()
        raise


def _npy_dim(path) -> int:
    """Row width of an alq shard from its NPY header (one small range read on a store)."""
    import io

    from alq.store.npyfile import read_npy_header

    if fs.is_remote(path):
        f = fs.open_input(path)
        head = io.BytesIO(f.read_at(min(4096, f.size()), 0))
    else:
        head = io.BytesIO(Path(path).read_bytes()[:4096])
    shape, _, _ = read_npy_header(head, source=str(path))
    return int(shape[1])


def _number_of(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _next_shard_number(manifest: Manifest) -> int:
    """One past the highest ``shard-NNNNNN`` in the manifest (names never repeat after an append)."""
    best = -1
    for s in manifest.shards:
        tail = s.name.rsplit("-", 1)[-1]
        if tail.isdigit():
            best = max(best, int(tail))
    return max(best + 1, len(manifest.shards))


def _show(v) -> str:
    return repr(v.item() if hasattr(v, "item") else v)


def digest_of(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
