"""The pool store: sharded NPY embeddings + Parquet ids + a manifest.

``open_pool(path)`` gives a :class:`Pool`, the one data-access object every
strategy uses; ``MemoryPool`` has the same interface over in-memory arrays.
"""

from alq.store.base import Pool
from alq.store.manifest import Manifest, ShardInfo, is_pool, read_manifest
from alq.store.opener import open_pool
from alq.store.pool import MemoryPool, ShardedPool
from alq.store.writer import PoolWriter

__all__ = ["Manifest", "ShardInfo", "Pool", "ShardedPool", "MemoryPool", "PoolWriter", "open_pool",
           "is_pool", "read_manifest"]
