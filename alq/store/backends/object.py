"""A pool on object storage (``s3://``, ``gs://``): whole-object uploads, the manifest by one conditional PUT.

There is no rename on a store: shards are built in a local temporary directory
(the stage), uploaded whole as each is finished (and the local copy of its
vectors dropped, so local disk holds about two shards), and the manifest is then
written with one conditional PUT: ``If-None-Match: *`` for a new pool,
``If-Match`` on the version the writer started from for an append or a
replace. A writer that lost a race publishes nothing. A replaced pool's shards
get new names (numbers past the old ones), so the old manifest stays readable
until the new one is in place; they are deleted after it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from alq.errors import BadInputError, StoreError
from alq.fs.conditional import create_exclusive, replace_if
from alq.fs.lock import REMOTE_LOCK
from alq.fs.ops import delete, listdir, read_table, upload
from alq.fs.uris import join, normalize
from alq.store.backends.base import StorageBackend
from alq.store.debris import SHARD_FILE
from alq.store.manifest import MANIFEST, Manifest, ShardInfo, manifest_bytes, manifest_path, read_manifest_versioned
from alq.store.npyfile import HEADER_BYTES, sync_and_hash


class ObjectBackend(StorageBackend):
    """A pool prefix on S3 or GCS (see the module docstring)."""

    stages_locally = True

    def __init__(self, uri: str):
        self.path = normalize(uri)
        self.build_dir: Path | None = None  # the local stage
        self.swept: list[str] = []
        self._base_version: str | None = None  # store version of the manifest this writer builds on
        self._replaced: Manifest | None = None  # the pool an --overwrite replaces
        self._uploaded: list[str] = []  # object names this writer put on the store (or adopted)

    @property
    def location(self) -> str:
        return self.path  # workers upload their shards to the pool prefix itself

    @property
    def spill_at(self) -> Path:
        return self.build_dir / "ids"

    def open(self, *, append: bool, overwrite: bool) -> tuple[Manifest | None, Manifest | None]:
        self.build_dir = Path(tempfile.mkdtemp(prefix="alq-pool-stage-"))
        have = listdir(self.path)
        current = None
        if MANIFEST in have:
            current, self._base_version = read_manifest_versioned(self.path, versioned=True)
        if append:
            if current is None:
                raise StoreError(f"{self.path}: --append needs an existing pool (no manifest.json there)",
                                 hint="drop --append to create it")
            self.swept = sweep_remote(self.path, current, have)
            return current, None
        others = [n for n in have if n != REMOTE_LOCK]
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
        self._replaced = current
        if current is not None:
            self.swept = sweep_remote(self.path, current, have)
        return None, current

    def open_part(self) -> None:
        self.build_dir = Path(tempfile.mkdtemp(prefix="alq-part-stage-"))

    def sweep(self, manifest: Manifest | None) -> list[str]:
        return sweep_remote(self.path, manifest)

    def publish_shard(self, npy: Path) -> str:
        """Hash a finished shard, put both its files on the store (whole objects), drop the local vectors."""
        digest = sync_and_hash(npy)
        for f in (npy, npy.with_suffix(".parquet")):
            self._uploaded.append(f.name)
            upload(f, join(self.path, f.name))
        npy.unlink()  # the ids Parquet stays: a duplicate-id message reads it back
        return digest

    def commit(self, manifest: Manifest) -> None:
        """One conditional PUT of the manifest: the pool changes here or not at all."""
        data = manifest_bytes(manifest)
        uri = manifest_path(self.path)
        if self._base_version is None:
            ok = create_exclusive(uri, data)
        else:
            ok = replace_if(uri, data, self._base_version)
        if ok is None:
            raise StoreError(f"{self.path}: the pool changed while this writer ran (another writer committed "
                             "first); nothing of this run was published",
                             hint="rerun: the new run starts from the pool as it is now")

    def after_commit(self, manifest: Manifest) -> None:
        self._drop_stage()
        if self._replaced is not None:  # readers now see the new manifest: the replaced pool's shards can go
            keep = {f for sh in manifest.shards for f in (sh.npy, sh.parquet)}
            for sh in self._replaced.shards:
                for f in (sh.npy, sh.parquet):
                    if f not in keep:
                        delete(join(self.path, f))

    def abort(self, new_shards: Iterable[ShardInfo]) -> None:
        for name in self._uploaded:
            with contextlib.suppress(Exception):
                delete(join(self.path, name))
        self._uploaded = []
        self._drop_stage()

    def _drop_stage(self) -> None:
        if self.build_dir is not None:
            shutil.rmtree(self.build_dir, ignore_errors=True)

    def claim(self, shards: Iterable[ShardInfo]) -> None:
        for sh in shards:
            self._uploaded.extend([sh.npy, sh.parquet])

    def shard_checker(self, manifest: Manifest) -> Callable[[ShardInfo], None]:
        sizes = listdir(self.path)  # one listing for every shard

        def check(s: ShardInfo) -> None:
            _check_remote_shard(self.path, s, manifest.dim, manifest.dtype, sizes)

        return check

    def new_ids(self, manifest: Manifest, adopted: set[str]) -> Callable[[np.ndarray], np.ndarray]:
        # ids Parquets of shards written here are still in the stage; adopted ones are on the store
        return _StagedIds(manifest, self.build_dir, self.path, adopted).ids


def sweep_remote(pool: str, manifest: Manifest | None, have: dict[str, int] | None = None) -> list[str]:
    """Delete shard objects no manifest lists (a killed writer's uploads); only while holding the lock."""
    have = listdir(pool) if have is None else have
    listed = {f for s in manifest.shards for f in (s.npy, s.parquet)} if manifest else set()
    removed = sorted(n for n in have if SHARD_FILE.fullmatch(n) and n not in listed)
    for n in removed:
        delete(join(pool, n))
    return removed


def _check_remote_shard(pool: str, s: ShardInfo, dim: int, dtype: str, sizes: dict[str, int]) -> None:
    """The remote pre-append check: both objects present, the vectors object exactly the manifest's size."""
    for f in (s.npy, s.parquet):
        if f not in sizes:
            raise StoreError(f"{join(pool, f)}: shard listed in the manifest is missing",
                             hint="run `alq info --verify` on the pool")
    want = HEADER_BYTES + s.rows * dim * np.dtype(dtype).itemsize
    if sizes[s.npy] != want:
        raise StoreError(f"{join(pool, s.npy)}: {sizes[s.npy]} bytes, but a ({s.rows}, {dim}) {dtype} shard "
                         f"has {want}", hint="run `alq info --verify` on the pool")


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
            src = join(self.pool, info.parquet) if info.name in self.adopted else self.stage / info.parquet
            col = read_table(src, columns=["id"]).column("id").to_numpy(zero_copy_only=False)
            m = shard == s
            out[m] = col[rows[m] - self.offsets[s]]
        return out
