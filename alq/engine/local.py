"""The local engine: tasks run in this process, or in a pool of spawned worker processes."""

from __future__ import annotations

from alq.engine.base import Engine
from alq.errors import BadInputError


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
