"""The Ray engine: the map of each pool-wide stage runs as Ray tasks.

One task per shard-aligned range (by default one per shard, capped by
``max_tasks``). Tasks receive the pool by name (``ShardedPool`` pickles as
its directory, ``RemotePool`` as its URI + manifest) and their own slice of
per-row arrays, so nothing pool-sized travels through the driver; workers
read shards themselves, from a shared filesystem or straight from
``s3://`` / ``gs://``. Ray retries a task whose worker dies
(``max_retries``), and stages are pure functions of their inputs, so a
retried task gives the same partial result. ``alq embed`` uses :meth:`map`
(tasks that write whole shards: :mod:`alq.embed.distributed`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from alq.engine.base import Engine, shard_ranges
from alq.errors import BadInputError, MissingFeatureError

INSTALL_HINT = "install the extra: pip install 'alq[ray]'"


def quiet_ray_logging() -> None:
    """Keep Ray's own log lines (its token-authentication warning, "Started a local Ray instance") off alq's
    stderr: a failing command prints one ``Error:`` line whatever the engine. Ray's errors still show."""
    for name in ("ray", "ray._private", "ray.runtime_env"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise MissingFeatureError("--engine ray needs Ray, which is not installed", hint=INSTALL_HINT) from None
    return ray


class RayEngine(Engine):
    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, gpus_per_task: float = 0.0,
                 cpus_per_task: float = 1.0, max_retries: int = 3, max_tasks: int = 4096):
        self.ray = _import_ray()
        self.gpus_per_task = float(gpus_per_task or 0.0)
        self.cpus_per_task = float(cpus_per_task)
        self.max_retries = int(max_retries)
        self.max_tasks = int(max_tasks)
        address = address or os.environ.get("RAY_ADDRESS") or None
        if not self.ray.is_initialized():
            quiet_ray_logging()
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                      "include_dashboard": False, "logging_level": logging.ERROR}
            if address:
                kwargs["address"] = address
            else:
                # A local instance: make sure its workers import this same alq.
                root = str(Path(__file__).resolve().parents[2])
                path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}}
                if num_cpus:
                    kwargs["num_cpus"] = int(num_cpus)
            self.ray.init(**kwargs)

    def default_tasks(self, pool) -> int:
        return min(pool.n_shards, self.max_tasks)

    def _remote(self, fn):
        return self.ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                               max_retries=self.max_retries, retry_exceptions=False)(fn)

    def _gather(self, refs, *, cancel=None, order=None) -> list[Any]:
        """``ray.get``, re-raising alq's own errors from tasks as they are (one line at the CLI).

        ``cancel``: refs to cancel when one fails (``True``: ``refs`` themselves). When tasks fail, the
        error raised is the one of the earliest failing task in ``order`` (default ``refs``), as the local
        engine, which runs them in order, would raise: the first bad row, not whichever task failed first.
        """
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayError as exc:
            exc = self._earliest_error(list(order if order is not None else refs), exc)
            if cancel is not None:
                self._cancel(refs if cancel is True else cancel)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception) and not isinstance(cause, self.ray.exceptions.RayError):
                # the task's own exception, as the local engine would have raised it: the same one line and exit
                # code at the CLI (an AlqError exits 2, an OSError names the file, anything else exits 1)
                raise cause from None
            raise exc from None

    def _earliest_error(self, refs: list, exc: BaseException) -> BaseException:
        """The error of the lowest-index failed task of ``refs``: tasks after a known failure are cancelled,
        the ones before it are waited for (they may fail too, on an earlier row)."""
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        done = set(ready)
        failed = None
        for i, r in enumerate(refs):
            if r in done:
                try:
                    self.ray.get(r)
                except self.ray.exceptions.RayError:
                    failed = i
                    break
        if failed is None:
            return exc
        self._cancel(refs[failed + 1:])
        for r in refs[:failed]:  # earlier tasks: still running or done; the first of them to fail wins
            try:
                self.ray.get(r)
            except self.ray.exceptions.RayError as earlier:
                return earlier
        try:
            self.ray.get(refs[failed])
        except self.ray.exceptions.RayError as first:
            return first
        return exc

    def _cancel(self, refs) -> None:
        """Stop the tasks still running and wait until they are gone.

        Not ``force=True``: that kills the worker process outright (one full
        suite run lost its pytest worker in a test that takes this path; the
        cause was not pinned down). A KeyboardInterrupt in the task stops it at
        its next Python step; its writes are whole objects or temp files, and a
        failed run publishes nothing either way.
        """
        for r in refs:
            try:
                self.ray.cancel(r, force=False)
            except Exception:  # noqa: BLE001 - finished tasks cannot be cancelled; that is fine
                pass
        try:
            self.ray.wait(list(refs), num_returns=len(refs), timeout=30)
        except Exception:  # noqa: BLE001 - best effort
            pass

    def share(self, obj):
        return self.ray.put(obj)  # top-level ObjectRef arguments are resolved by Ray in the worker

    def share_result(self, fn, *args):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = self.ray.get_runtime_context().get_node_id()
        ref = self._remote(fn).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote(*args)
        self.ray.wait([ref], fetch_local=False)  # made before the tasks that need it start
        return ref

    def slots(self) -> int:
        """How many tasks the cluster runs at once (its CPUs, or GPUs, over what one task asks for)."""
        res = self.ray.cluster_resources()
        if self.gpus_per_task:
            if res.get("GPU", 0) < self.gpus_per_task:  # the tasks would wait for a GPU forever
                raise BadInputError(f"--ray-gpus-per-task={self.gpus_per_task:g} but the Ray cluster has "
                                    f"{res.get('GPU', 0):g} GPUs", hint="drop --ray-gpus-per-task, or join a "
                                    "cluster with GPU nodes (--ray-address)")
            return max(1, int(res.get("GPU", 0) // self.gpus_per_task))
        return max(1, int(res.get("CPU", 1) // max(self.cpus_per_task, 1e-9)))

    def map(self, fn: Callable[..., Any], tasks, *, on_done: Callable[[int], None] | None = None) -> list[Any]:
        """``[fn(*args) for args in tasks]`` as Ray tasks, in task order.

        ``on_done(i)`` is called on the driver as each task finishes (progress).
        When one task fails, the others are cancelled before the error is raised,
        so nothing is still writing when the caller cleans up.
        """
        remote = self._remote(fn)
        refs = [remote.remote(*args) for args in tasks]
        if on_done is None:
            return self._gather(refs, cancel=True)
        index = {r: i for i, r in enumerate(refs)}
        pending = list(refs)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            self._gather(ready, cancel=refs, order=refs)
            on_done(index[ready[0]])
        return self._gather(refs)

    def map_pool(self, fn, pool, *args, row_arrays=None, tasks=None) -> list[Any]:
        """Like :meth:`Engine.map_pool`, with the pool and the shared arguments (a head, a
        faiss index...) put in the object store once, not serialised again for every task."""
        ranges = shard_ranges(pool, tasks or self.default_tasks(pool))
        row_arrays = row_arrays or {}
        for name, arr in row_arrays.items():
            if len(arr) != pool.count:
                raise ValueError(f"row array {name!r} has length {len(arr)}, pool has {pool.count} rows")
        put = self.ray.put
        pool_ref = put(pool)
        shared = [put(a) for a in args]  # top-level ObjectRef arguments are resolved by Ray in the worker
        remote = self._remote(_range_task)
        return self._gather([remote.remote(fn, pool_ref, lo, hi, {k: v[lo:hi] for k, v in row_arrays.items()},
                                           *shared) for lo, hi in ranges])


def _range_task(fn, pool, lo, hi, slices, *args):
    return fn(pool, lo, hi, *args, **slices)


def shutdown() -> None:
    """Stop a Ray instance this process started (tests)."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
