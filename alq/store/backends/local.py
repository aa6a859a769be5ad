"""A pool in a local directory: temp + rename for every file, the manifest last.

A fresh pool is built in a temporary sibling directory (``.POOL.XXXX.building``)
and moved into place when complete, so an existing pool at the same path
survives any crash. An append adds new shards to the existing pool: shard
files go in under new names (each written to a temporary name and renamed) and
the manifest, the only thing that makes them part of the pool, is replaced
last, so a crash mid-append leaves the previous pool verifying. Each shard is
fsynced before the manifest that lists it is written.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from alq.errors import BadInputError, StoreError
from alq.fs.uris import local
from alq.io import apply_umask, replace_dir, restore_moved_aside
from alq.store.backends.base import StorageBackend
from alq.store.debris import SHARD_FILE, sweep
from alq.store.manifest import Manifest, ShardInfo, is_pool, read_manifest, write_manifest
from alq.store.npyfile import npy_info, sync_and_hash
from alq.store.pool import ShardedPool


class LocalBackend(StorageBackend):
    """A pool directory (see the module docstring). ``mode``: "fresh", "append" or "part" once opened."""

    def __init__(self, path):
        self.path = local(path)
        self.build_dir: Path | None = None
        self.mode: str | None = None
        self.base: Manifest | None = None
        self.swept: list[str] = []

    @property
    def location(self) -> Path:
        return self.build_dir  # workers write straight into the build directory

    @property
    def spill_at(self) -> Path:
        return self.path

    def open(self, *, append: bool, overwrite: bool) -> tuple[Manifest | None, Manifest | None]:
        # we hold the lock: a pool that a killed replace left moved aside is put back before anything looks at it
        restored = restore_moved_aside(self.path, locked=True)
        if append:
            if not is_pool(self.path):
                raise StoreError(f"{self.path}: --append needs an existing pool (no manifest.json there)",
                                 hint="drop --append to create it")
            self.base = read_manifest(self.path)
            self.swept = self.sweep(self.base)  # we hold the lock: a killed writer's leftovers are nobody's
            self.mode, self.build_dir = "append", self.path
            return self.base, None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # under our lock: a previous pool a killed --overwrite moved aside comes back first, so that
        # the checks below see it (a plain rerun never silently replaces it)
        self.swept = self.sweep(None)
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
        self.build_dir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".building",
                                               dir=self.path.parent))
        apply_umask(self.build_dir)
        self.mode = "fresh"
        return None, None

    def open_part(self) -> None:
        self.mode, self.build_dir = "part", self.path  # the driver's build directory

    def sweep(self, manifest: Manifest | None) -> list[str]:
        return sweep(self.path, manifest)

    def publish_shard(self, npy: Path) -> str:
        return sync_and_hash(npy)

    def commit(self, manifest: Manifest) -> None:
        write_manifest(self.build_dir, manifest)
        if self.mode == "fresh":
            replace_dir(self.build_dir, self.path)  # the whole new pool appears at once

    def abort(self, new_shards: Iterable[ShardInfo]) -> None:
        if self.mode == "fresh":
            shutil.rmtree(self.build_dir, ignore_errors=True)
            return
        for s in new_shards:
            for f in (s.npy, s.parquet):
                if self.build_dir is not None:
                    (self.build_dir / f).unlink(missing_ok=True)
        if self.mode != "append":
            return  # a worker removes only its own shards: the driver's writer owns the rest
        # a signal between mkstemp (or the rename to a shard name) and bookkeeping can orphan a file;
        # under our lock, no temp file and no shard the base manifest does not list is anyone else's
        for f in self.build_dir.glob(".shard-*.tmp"):
            f.unlink(missing_ok=True)
        listed = {name for sh in self.base.shards for name in (sh.npy, sh.parquet)}
        for pattern in ("shard-*.npy", "shard-*.parquet"):
            for f in self.build_dir.glob(pattern):
                if f.name not in listed:
                    f.unlink(missing_ok=True)

    def shard_checker(self, manifest: Manifest) -> Callable[[ShardInfo], None]:
        def check(s: ShardInfo) -> None:
            _check_shard_file(self.path / s.npy, s.rows, manifest.dim, manifest.dtype)

        return check

    def new_ids(self, manifest: Manifest, adopted: set[str]) -> Callable[[np.ndarray], np.ndarray]:
        return ShardedPool(self.build_dir, manifest).ids  # adopted shards are in the build directory too


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


def _sweep_unfinished(pool_dir: Path) -> list[str]:
    """A directory with no manifest that holds only shard files (and their temp halves): a first build that was
    killed before its commit. Nothing reads it; the next writer (holding the lock) clears it."""
    names = [p.name for p in pool_dir.iterdir()]
    junk = [n for n in names if SHARD_FILE.fullmatch(n) or (n.startswith(".shard-") and n.endswith(".tmp"))]
    if not junk or len(junk) != len(names):
        return []
    for n in junk:
        (pool_dir / n).unlink(missing_ok=True)
    return sorted(junk)
