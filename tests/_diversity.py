"""Shared helpers of the diversity tests: pools in memory and on disk, contexts, heads."""

from __future__ import annotations

import numpy as np

from alq.model.train import TrainOptions, train_head
from alq.store import MemoryPool, PoolWriter, open_pool
from alq.strategies import Context

# ALQ_WORKING_MEMORY values (MiB): everything cached / spilled or streamed / tiny blocks
MEMORIES = ["256", "0.02", "0.002"]


def mixture(n=400, d=8, c=3, seed=0, sep=3.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * sep
    y = rng.integers(0, c, size=n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def pools(x, tmp_path, shard_rows=70, dtype="float32"):
    """The same rows as a MemoryPool (virtual shards) and a ShardedPool on disk."""
    w = PoolWriter(tmp_path / f"pool-{dtype}", shard_rows=shard_rows, dtype=dtype)
    w.add(x)
    w.close()
    disk = open_pool(tmp_path / f"pool-{dtype}")
    mem = MemoryPool(x.astype(disk.dtype), shard_rows=shard_rows)
    return {"memory": mem, "disk": disk}


def context(pool, budget, labeled=(), pending=(), head=None, seed=0, **options):
    excluded = np.zeros(pool.count, dtype=bool)
    labeled = np.asarray(sorted(labeled), dtype=np.int64)
    excluded[labeled] = True
    excluded[np.asarray(list(pending), dtype=np.int64)] = True
    return Context(pool=pool, budget=budget, seed=seed, excluded=excluded, labeled=labeled, head=head,
                   options=dict(options))


def head_for(x, y, labeled, **opts):
    """A head on the raw embeddings by default (features = embeddings), so references can use x directly."""
    opts.setdefault("normalize", None)
    c = int(y.max()) + 1
    return train_head(x[labeled], y[labeled], list(range(c)), multilabel=False, opts=TrainOptions(**opts))
