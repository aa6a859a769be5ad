"""Engines run the map of a pool-wide stage; the reduce stays on the driver.

A pool-wide stage is written as a module-level (picklable) function::

    def partial(pool, lo, hi, *args, **row_slices) -> small result

run over contiguous, shard-aligned row ranges by ``engine.map_pool``, then
reduced on the driver (top-k merge, round-robin, sum). ``row_arrays`` are
pool-length arrays (e.g. the excluded mask) sliced to each range, so a task
only receives its own rows. ``local`` (default) runs tasks in-process;
``ray`` (``alq[ray]``) runs them as Ray tasks. Pools pickle as their path,
so nothing pool-sized travels through the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from alq.errors import BadInputError

ENGINES = ("local", "ray")


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


class LocalEngine(Engine):
    """In this machine. ``processes=1`` (default): in-process, in order, one task over the whole pool.

    ``processes=N``: tasks run in a pool of N spawned worker processes (each
    with ``CPUs // N`` torch threads); results still come back in task order.
    Task functions and arguments must pickle (module-level functions; pools
    pickle as their path). Used for partitioned strategies, whose parts are
    independent.
    """

    name = "local"

    def __init__(self, processes: int = 1):
        if int(processes) < 1:
            raise BadInputError(f"processes={processes!r} must be >= 1")
        self.processes = int(processes)

    def default_tasks(self, pool) -> int:
        return self.processes

    def slots(self) -> int:
        return self.processes

    def in_process(self) -> bool:
        return self.processes <= 1

    def map(self, fn, tasks, *, on_done=None):
        tasks = list(tasks)
        if self.processes <= 1 or len(tasks) <= 1:
            out = []
            for i, args in enumerate(tasks):
                out.append(fn(*args))
                if on_done is not None:
                    on_done(i)
            return out
        import multiprocessing as mp
        import os
        from concurrent.futures import ProcessPoolExecutor

        workers = min(self.processes, len(tasks))
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            out = list(pool.map(_star, [(fn, args) for args in tasks]))
        for i in range(len(out) if on_done is not None else 0):
            on_done(i)
        return out


def _init_worker(threads: int) -> None:
    import os

    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _star(fn_args):
    fn, args = fn_args
    return fn(*args)


def get_engine(name: str = "local", **kwargs) -> Engine:
    if name == "local":
        return LocalEngine(**kwargs)
    if name == "ray":
        from alq.engine import ray_engine  # optional extra

        return ray_engine.RayEngine(**kwargs)
    raise BadInputError(f"--engine {name!r} is not known; choose from: {', '.join(ENGINES)}")
