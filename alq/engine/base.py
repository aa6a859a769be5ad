"""The engine contract: run a picklable function over tasks, or over shard-aligned row ranges of a pool.

:class:`Engine` is what every pool-wide stage is written against
(:mod:`alq.engine` explains the map/reduce split); :mod:`alq.engine.local`
and :mod:`alq.engine.ray_engine` implement it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np


def shard_ranges(pool, n_tasks: int) -> list[tuple[int, int]]:
    """Split the pool into at most ``n_tasks`` contiguous row ranges on shard boundaries."""
    offsets = np.asarray(pool.offsets)
    n_shards = len(offsets) - 1
    if n_shards == 0:
        return []
    n_tasks = max(1, min(int(n_tasks), n_shards))
    targets = [pool.count * t // n_tasks for t in range(1, n_tasks)]
    cuts = sorted({int(np.argmin(np.abs(offsets - t))) for t in targets} - {0, n_shards})
    bounds = [0, *cuts, n_shards]
    return [(int(offsets[a]), int(offsets[b])) for a, b in zip(bounds, bounds[1:]) if offsets[b] > offsets[a]]


def _call_range(fn, pool, lo, hi, args, slices):
    return fn(pool, lo, hi, *args, **slices)


class Engine:
    name = "base"

    def map(self, fn: Callable[..., Any], tasks: Iterable[Sequence[Any]], *,
            on_done: Callable[[int], None] | None = None) -> list[Any]:
        """``[fn(*args) for args in tasks]``, in task order; ``on_done(i)`` as task ``i`` finishes."""
        raise NotImplementedError

    def share(self, obj: Any) -> Any:
        """``obj`` as an argument many tasks receive (Ray: put in the object store once)."""
        return obj

    def share_result(self, fn: Callable[..., Any], *args) -> Any:
        """``fn(*args)`` as an argument many tasks receive, made on this machine (it may read local files).

        Ray: made by a task on the driver's node and kept in the object store as
        that task's result, so the driver never holds or maps its bytes.
        """
        return fn(*args)

    def in_process(self) -> bool:
        """Whether tasks run in this process (so they may report progress through a callback)."""
        return False

    def default_tasks(self, pool) -> int:
        return 1

    def map_pool(self, fn: Callable[..., Any], pool, *args, row_arrays: dict[str, np.ndarray] | None = None,
                 tasks: int | None = None) -> list[Any]:
        """Run ``fn(pool, lo, hi, *args, **{k: a[lo:hi]})`` over shard-aligned ranges; results in row order."""
        ranges = shard_ranges(pool, tasks or self.default_tasks(pool))
        row_arrays = row_arrays or {}
        for name, arr in row_arrays.items():
            if len(arr) != pool.count:
                raise ValueError(f"row array {name!r} has length {len(arr)}, pool has {pool.count} rows")
        work = [(fn, pool, lo, hi, args, {k: v[lo:hi] for k, v in row_arrays.items()}) for lo, hi in ranges]
        return self.map(_call_range, work)
