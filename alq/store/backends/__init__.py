"""Where a pool's files go: the storage backend a :class:`~alq.store.writer.PoolWriter` writes through.

The writer is a coordinator (ids, shard numbering, duplicate checks, the
manifest); a backend knows one kind of storage and offers it the handful of
operations below. Shards are always built as local files first, in the
backend's ``build_dir`` (a shard's NPY streamed to a temp name and renamed,
its ids Parquet beside it); the backend then publishes each finished shard,
and the pool changes only when :meth:`StorageBackend.commit` writes the
manifest atomically.

==================  ==========================================================
verb                what it means
==================  ==========================================================
``open``            check the target under the writer's lock, sweep debris,
                    prepare ``build_dir``; return the pool appended to / replaced
``open_part``       a Ray worker's share: a ``build_dir`` at ``location``, no
                    lock and no manifest (the driver adopts the shards)
``publish_shard``   a finished shard becomes durable where a manifest can list
                    it (background thread); returns the vectors' sha256
``commit``          the manifest, atomically: the pool changes here or not at all
``after_commit``    drop what the commit made obsolete
``abort``           remove everything this writer put down; the pool is untouched
``sweep``           remove what killed writers left (only under the lock)
==================  ==========================================================

plus three small reads the coordinator needs: ``shard_checker`` (the cheap
pre-append check of the existing shards), ``new_ids`` (ids of shards written
but not yet committed, for a duplicate-id message) and ``claim`` (shards a
worker published become this writer's, so ``abort`` removes them).

Implementations: :class:`~alq.store.backends.local.LocalBackend` (a
directory: temp + rename, a fresh pool built beside the target and swapped in)
and :class:`~alq.store.backends.object.ObjectBackend` (S3/GCS: shards
uploaded whole, the manifest written with one conditional PUT). A new kind of
storage (Azure Blob, say) is one more module implementing this class, and one
more branch in :func:`backend_for`. The protocol itself is in
:mod:`alq.store.backends.base` (so that the implementations and this package
do not import each other).
"""

from __future__ import annotations

from alq.fs.uris import is_remote
from alq.store.backends.base import StorageBackend
from alq.store.backends.local import LocalBackend
from alq.store.backends.object import ObjectBackend

__all__ = ["StorageBackend", "LocalBackend", "ObjectBackend", "backend_for"]


def backend_for(path) -> StorageBackend:
    """The backend of a pool location: a local directory, or an ``s3://`` / ``gs://`` prefix."""
    if is_remote(path):
        return ObjectBackend(path)
    return LocalBackend(path)
