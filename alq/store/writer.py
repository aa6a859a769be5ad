"""Write a pool store shard by shard, atomically, manifest last.

A fresh pool is built in a temporary sibling directory and moved into place
when complete, so an existing pool at the same path survives any crash.
``append=True`` adds new shards to an existing pool: shard files go in under
new names and the manifest (the only thing that makes them part of the pool)
is replaced last, so a crash mid-append leaves the previous pool verifying.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alq.errors import BadInputError, StoreError
from alq.io import atomic_path, sha256_file
from alq.store.manifest import DTYPES, Manifest, ShardInfo, is_pool, read_manifest, write_manifest

DEFAULT_SHARD_ROWS = 262_144


class PoolWriter:
    """Accumulate (vectors, ids) batches into fixed-size shards.

    Validates as it goes: finite values, consistent dimension, ids unique
    within the input and against the existing pool. Errors name the source
    file and row when the caller passes ``source``/``source_row0``.
    """

    def __init__(self, path: str | Path, *, dim: int | None = None, dtype: str = "float16",
                 shard_rows: int = DEFAULT_SHARD_ROWS, normalize: str | None = None,
                 append: bool = False, overwrite: bool = False, id_type: str | None = None):
        self.path = Path(path)
        if shard_rows < 1:
            raise BadInputError(f"--shard-rows={shard_rows} must be >= 1")
        if dtype not in DTYPES:
            raise BadInputError(f"--dtype={dtype!r} must be one of {', '.join(DTYPES)}")
        if normalize not in (None, "l2"):
            raise BadInputError(f"--normalize={normalize!r} must be 'l2' or omitted")
        self.shard_rows = shard_rows
        self.normalize = normalize
        self.append = append
        self._pending_vecs: list[np.ndarray] = []
        self._pending_ids: list[np.ndarray] = []
        self._pending = 0
        self._new_shards: list[ShardInfo] = []
        self._closed = False
        self._next_generated = 0
        if append:
            if not is_pool(self.path):
                raise StoreError(f"{self.path}: --append needs an existing pool (no manifest.json there)",
                                 hint="drop --append to create it")
            self.base = read_manifest(self.path)
            if dim is not None and dim != self.base.dim:
                raise BadInputError(f"input dim {dim} != pool dim {self.base.dim} ({self.path})")
            if dtype != self.base.dtype:
                dtype = self.base.dtype  # appends keep the pool's dtype
            if normalize != self.base.normalize:
                raise BadInputError(f"--normalize={normalize} but the pool was built with "
                                    f"normalize={self.base.normalize} ({self.path})")
            self.dim = self.base.dim
            self.id_type = self.base.id_type
            self.workdir = self.path
            self._seen = self._existing_ids()
            if self.id_type == "int64" and len(self._seen):
                self._next_generated = int(self._seen[-1]) + 1
        else:
            if self.path.exists() and any(self.path.iterdir()) and not overwrite:
                raise BadInputError(f"{self.path}: already exists and is not empty",
                                    hint="pass --append to add rows, or --overwrite to replace it")
            self.base = None
            self.dim = dim
            self.id_type = id_type
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.workdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".building",
                                                 dir=self.path.parent))
            self._seen = None
        self.dtype = np.dtype(dtype)
        self._shard_counter = len(self.base.shards) if self.base else 0

    # -- ids -----------------------------------------------------------------
    def _existing_ids(self) -> np.ndarray:
        parts = [pq.read_table(self.path / s.parquet, columns=["id"]).column("id").to_numpy()
                 for s in self.base.shards]
        if not parts:
            return np.empty(0, dtype=np.int64 if self.id_type == "int64" else object)
        ids = np.concatenate(parts)
        return np.sort(ids.astype(np.int64) if self.id_type == "int64" else ids.astype(str))

    def _check_ids(self, ids: np.ndarray, source: str, row0: int) -> np.ndarray:
        if self.id_type is None:
            self.id_type = "int64" if np.issubdtype(ids.dtype, np.integer) else "string"
        if self.id_type == "int64":
            if not np.issubdtype(ids.dtype, np.integer):
                raise BadInputError(f"{source}: ids are {ids.dtype} but the pool uses int64 ids")
            ids = ids.astype(np.int64)
            key = ids
        else:
            if np.issubdtype(ids.dtype, np.integer):
                raise BadInputError(f"{source}: ids are integers but the pool uses string ids")
            if any(v is None for v in ids.tolist()):
                raise BadInputError(f"{source}: row {row0 + [v is None for v in ids.tolist()].index(True)} has a null id")
            ids = ids.astype(object)
            key = ids.astype(str)
        order = np.argsort(key, kind="stable")
        srt = key[order]
        dup = np.flatnonzero(srt[1:] == srt[:-1])
        if dup.size:
            rows = sorted(order[dup[0]:dup[0] + 2])
            raise BadInputError(f"{source}: duplicate id {_show(srt[dup[0]])} at rows {row0 + rows[0]} and {row0 + rows[1]}")
        if self._seen is None:
            self._seen = srt
        else:
            pos = np.searchsorted(self._seen, srt)
            hit = (pos < len(self._seen)) & (self._seen[np.minimum(pos, len(self._seen) - 1)] == srt) if len(self._seen) else np.zeros(len(srt), bool)
            if hit.any():
                first = int(np.min(order[hit]))
                where = "already in the pool" if self.base is not None else "repeated from an earlier input row"
                raise BadInputError(f"{source}: row {row0 + first}: id {_show(key[first])} is {where}")
            self._seen = np.insert(self._seen, pos, srt)
        return ids

    # -- vectors -------------------------------------------------------------
    def add(self, vectors: np.ndarray, ids=None, *, source: str = "input", source_row0: int = 0) -> None:
        """Add a batch. ``ids=None`` generates int64 ids continuing the pool's."""
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
        vec = vectors.astype(np.float32, copy=False)
        finite = np.isfinite(vec).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise BadInputError(f"{source}: row {source_row0 + row} has NaN or Inf")
        if self.normalize == "l2":
            norms = np.linalg.norm(vec, axis=1, keepdims=True)
            if (norms == 0).any():
                row = int(np.flatnonzero(norms[:, 0] == 0)[0])
                raise BadInputError(f"{source}: row {source_row0 + row} is all zeros and cannot be l2-normalised")
            vec = vec / norms
        out = vec.astype(self.dtype)
        if self.dtype == np.float16 and not np.isfinite(out).all():
            row = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
            raise BadInputError(f"{source}: row {source_row0 + row} overflows float16 (|x| > 65504)",
                                hint="use --dtype float32 or --normalize l2")
        if ids is None:
            if self.id_type == "string":
                raise BadInputError(f"{source}: no ids given but the pool uses string ids")
            ids = np.arange(self._next_generated, self._next_generated + len(out), dtype=np.int64)
        ids = np.asarray(ids)
        if len(ids) != len(out):
            raise BadInputError(f"{source}: {len(ids)} ids for {len(out)} vectors")
        ids = self._check_ids(ids, source, source_row0)
        if self.id_type == "int64" and len(ids):
            self._next_generated = max(self._next_generated, int(ids.max()) + 1)
        self._pending_vecs.append(out)
        self._pending_ids.append(ids)
        self._pending += len(out)
        while self._pending >= self.shard_rows:
            self._flush(self.shard_rows)

    def _flush(self, rows: int) -> None:
        vecs = np.concatenate(self._pending_vecs) if len(self._pending_vecs) > 1 else self._pending_vecs[0]
        ids = np.concatenate(self._pending_ids) if len(self._pending_ids) > 1 else self._pending_ids[0]
        self._write_shard(vecs[:rows], ids[:rows])
        rest_v, rest_i = vecs[rows:], ids[rows:]
        self._pending_vecs = [rest_v] if len(rest_v) else []
        self._pending_ids = [rest_i] if len(rest_i) else []
        self._pending = len(rest_v)

    def _write_shard(self, vecs: np.ndarray, ids: np.ndarray) -> None:
        name = f"shard-{self._shard_counter:06d}"
        self._shard_counter += 1
        with atomic_path(self.workdir / f"{name}.npy", suffix=".npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(vecs), allow_pickle=False)
            sha = sha256_file(tmp)
        id_arr = pa.array(ids, type=pa.int64()) if self.id_type == "int64" else pa.array(ids.tolist(), type=pa.string())
        with atomic_path(self.workdir / f"{name}.parquet", suffix=".parquet") as tmp:
            pq.write_table(pa.table({"id": id_arr}), tmp)
            ids_sha = sha256_file(tmp)
        self._new_shards.append(ShardInfo(name=name, rows=len(vecs), sha256=sha, ids_sha256=ids_sha))

    @property
    def rows_written(self) -> int:
        return sum(s.rows for s in self._new_shards) + self._pending

    def close(self) -> Manifest:
        """Flush the last shard and publish: manifest last (append) or directory swap (fresh)."""
        if self._closed:
            raise RuntimeError("PoolWriter is closed")
        if self._pending:
            self._flush(self._pending)
        self._closed = True
        if not self._new_shards:
            self._cleanup()
            raise BadInputError("empty input: no rows to write")
        shards = (self.base.shards if self.base else ()) + tuple(self._new_shards)
        manifest = Manifest(dim=int(self.dim), dtype=str(self.dtype), id_type=self.id_type or "int64",
                            shards=shards, normalize=self.normalize)
        write_manifest(self.workdir, manifest)
        if self.base is None:
            self._publish_dir()
        return manifest

    def _publish_dir(self) -> None:
        if self.path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".old", dir=self.path.parent))
            os.rmdir(old)
            os.replace(self.path, old)
            os.replace(self.workdir, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.workdir, self.path)

    def abort(self) -> None:
        """Drop everything written by this writer; the existing pool is untouched."""
        self._closed = True
        self._cleanup()

    def _cleanup(self) -> None:
        if self.base is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for s in self._new_shards:
                for f in (s.npy, s.parquet):
                    try:
                        (self.workdir / f).unlink()
                    except FileNotFoundError:
                        pass

    def __enter__(self) -> PoolWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self._closed:
            self.abort()


def _show(v) -> str:
    return repr(v.item() if hasattr(v, "item") else v)


def digest_of(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
