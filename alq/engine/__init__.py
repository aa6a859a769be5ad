"""Engines run the map of a pool-wide stage; the reduce stays on the driver.

``local`` (default) runs tasks in-process, in order. ``ray`` (``alq[ray]``)
runs them as Ray tasks. A task is a picklable callable plus arguments; pools
pickle as their path, so nothing pool-sized travels through the driver.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from alq.errors import BadInputError

ENGINES = ("local", "ray")


class Engine:
    name = "base"
    parallelism = 1

    def map(self, fn: Callable[..., Any], tasks: Iterable[Sequence[Any]]) -> list[Any]:
        """``[fn(*args) for args in tasks]``, in task order."""
        raise NotImplementedError


class LocalEngine(Engine):
    name = "local"

    def map(self, fn, tasks):
        return [fn(*args) for args in tasks]


def get_engine(name: str = "local", **kwargs) -> Engine:
    if name == "local":
        return LocalEngine()
    if name == "ray":
        from alq.engine import ray_engine  # noqa: F401  (optional extra)

        return ray_engine.RayEngine(**kwargs)
    raise BadInputError(f"--engine {name!r} is not known; choose from: {', '.join(ENGINES)}")
