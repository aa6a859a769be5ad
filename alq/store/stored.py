"""What every pool a manifest describes shares, wherever its shards live.

:class:`StoredPool` is the common base of the local
:class:`~alq.store.pool.ShardedPool` (a directory, memory-mapped) and the
:class:`~alq.store.remote.RemotePool` (an object-storage prefix, read in byte
ranges): the manifest's shape, the fingerprint, and ``verify()``. An
implementation says how to reach its files (``_where``, ``_file_digests``,
``_recheck_shard``) and how to read a shard's vectors, ids and metadata.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import pyarrow as pa

from alq.errors import StoreError
from alq.store.base import Pool
from alq.store.manifest import Manifest


class StoredPool(Pool):
    """A :class:`~alq.store.base.Pool` whose shards a :class:`~alq.store.manifest.Manifest` lists."""

    path: object  # a local Path or a remote URI string
    manifest: Manifest

    def _use_manifest(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.dim = manifest.dim
        self.dtype = np.dtype(manifest.dtype)
        self.id_type = manifest.id_type
        self.shard_rows = tuple(s.rows for s in manifest.shards)

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @property
    def normalize(self) -> str | None:
        return self.manifest.normalize

    # -- what an implementation provides beyond the Pool's three -----------------------
    @abstractmethod
    def shard_schema(self, shard: int = 0) -> pa.Schema:
        """Schema of one shard's id/metadata Parquet (which metadata columns the pool keeps)."""

    @abstractmethod
    def shard_table(self, shard: int, columns: list[str] | None = None) -> pa.Table:
        """The id/metadata table of one shard."""

    @abstractmethod
    def _where(self, name: str):
        """The location (Path or URI) of the pool's file ``name``."""

    @abstractmethod
    def _file_digests(self):
        """A function: name -> sha256 of the pool's file of that name, or None when it is missing."""

    @abstractmethod
    def _recheck_shard(self, shard: int) -> None:
        """Reopen a shard's vectors, so shape and dtype are checked against the manifest again."""

    def _shard_label(self, shard: int) -> str:
        return str(self._where(self.manifest.shards[shard].npy))

    # -- verify ----------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Re-check every shard's files, shapes, checksums and values (all finite); return problems (first bad
        first)."""
        problems: list[str] = []
        digest = self._file_digests()
        for s, info in enumerate(self.manifest.shards):
            for fname, want in ((info.npy, info.sha256), (info.parquet, info.ids_sha256)):
                got = digest(fname)
                if got is None:
                    problems.append(f"{self._where(fname)}: missing")
                elif got != want:
                    problems.append(f"{self._where(fname)}: checksum mismatch (changed or truncated)")
            if problems:
                break
            try:
                self._recheck_shard(s)
                self.shard_ids(s)
                for _ in self.iter_blocks(lo=int(self.offsets[s]), hi=int(self.offsets[s + 1])):
                    pass  # values too: a NaN row whose checksum was updated is named here
            except StoreError as exc:
                problems.append(str(exc))
                break
        if not problems and self.manifest.shards:
            problems.extend(self._duplicate_ids())
        return problems

    def _duplicate_ids(self) -> list[str]:
        """Ids are identities: the full check (every id once across all shards), for --verify."""
        parts = [np.asarray(self.shard_ids(s)) for s in range(len(self.manifest.shards))]
        ids = np.concatenate(parts)
        key = ids if ids.dtype.kind in "iu" else ids.astype(str)
        order = np.argsort(key, kind="stable")
        same = np.flatnonzero(key[order][1:] == key[order][:-1])
        if not same.size:
            return []
        a, b = int(order[same[0]]), int(order[same[0] + 1])
        starts = np.cumsum([0] + [len(p) for p in parts])
        sa, sb = (int(np.searchsorted(starts, r, side="right") - 1) for r in (a, b))
        v = ids[a].item() if hasattr(ids[a], "item") else ids[a]
        return [f"{self.path}: id {v!r} appears twice (shard {self.manifest.shards[sa].name} row {a - starts[sa]} "
                f"and shard {self.manifest.shards[sb].name} row {b - starts[sb]}); {same.size} duplicate ids in all"]
