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

from alq.engine.base import Engine, shard_ranges
from alq.engine.local import LocalEngine
from alq.errors import BadInputError

ENGINES = ("local", "ray")


def get_engine(name: str = "local", **kwargs) -> Engine:
    if name == "local":
        return LocalEngine(**kwargs)
    if name == "ray":
        from alq.engine import ray_engine  # optional extra

        return ray_engine.RayEngine(**kwargs)
    raise BadInputError(f"--engine {name!r} is not known; choose from: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Engine", "LocalEngine", "get_engine", "shard_ranges"]
