"""Open the pool at a path or URI: a local directory or an object-storage prefix, one interface."""

from __future__ import annotations

from alq.fs.uris import is_remote
from alq.store.manifest import Manifest
from alq.store.pool import ShardedPool
from alq.store.remote import RemotePool
from alq.store.stored import StoredPool


def open_pool(path) -> StoredPool:
    """The pool at a local path or an ``s3://`` / ``gs://`` URI."""
    return pool_at(path)


def pool_at(path, manifest: Manifest | None = None) -> StoredPool:
    """The pool at ``path``, described by ``manifest`` when the caller has read it already."""
    if is_remote(path):
        return RemotePool(path, manifest)
    return ShardedPool(path, manifest)
