"""An existing pool directory as an input: its rows and ids copied (or converted to another dtype)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from alq.embed.sources.base import Batch, Source


class PoolSource(Source):
    """Another pool directory: copy (or convert the dtype of) its rows and ids."""

    has_ids = True

    def __init__(self, path: str | Path):
        from alq.store import open_pool  # a pool opened only when one is an input

        self.path = path
        self.pool = open_pool(path)
        self.rows = self.pool.count
        self.dim = self.pool.dim

    def row_bytes(self) -> int:
        return self.pool.dim * self.pool.dtype.itemsize

    def batches(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        stop = self.rows if stop is None else min(stop, self.rows)
        for s in range(self.pool.n_shards):
            off, end = int(self.pool.offsets[s]), int(self.pool.offsets[s + 1])
            if end <= start or off >= stop:
                continue
            vecs = self.pool.shard_vectors(s)
            ids = self.pool.shard_ids(s)
            for a in range(max(start - off, 0), min(stop, end) - off, block_rows):
                b = min(a + block_rows, min(stop, end) - off)
                yield Batch(np.asarray(vecs[a:b]), ids[a:b], off + a, f"{self.path}/{self.pool.manifest.shards[s].npy}")
