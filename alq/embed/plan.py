"""Cut an embed job into tasks that each write whole shards of the new rows.

Task ``t`` covers rows ``[t*k*S, (t+1)*k*S)`` of the concatenated inputs
(``S`` rows per shard, ``k`` shards per task) and names its shards from
``first_shard + t*k``. Every task but the last writes only full shards, so
the shard boundaries, names and contents are exactly those of the local
engine, which streams the same rows through one writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    """Rows [start, stop) of input number ``input``; ``offset`` is the global row of ``start``."""

    input: int
    start: int
    stop: int
    offset: int


@dataclass(frozen=True)
class TaskRange:
    index: int
    first_shard: int
    lo: int  # global rows [lo, hi) over the concatenated inputs
    hi: int
    pieces: tuple[Piece, ...]

    @property
    def rows(self) -> int:
        return self.hi - self.lo


def plan_tasks(rows: Sequence[int], shard_rows: int, n_tasks: int, first_shard: int = 0) -> list[TaskRange]:
    """At most ``n_tasks`` tasks of whole shards over inputs of ``rows`` rows each."""
    total = int(sum(rows))
    n_shards = -(-total // shard_rows)
    n_tasks = max(1, min(int(n_tasks), n_shards))
    per_task = -(-n_shards // n_tasks)
    starts = [0]
    for r in rows:
        starts.append(starts[-1] + int(r))
    out = []
    for t in range(-(-n_shards // per_task)):
        lo, hi = t * per_task * shard_rows, min(total, (t + 1) * per_task * shard_rows)
        pieces = tuple(Piece(i, max(lo, a) - a, min(hi, b) - a, max(lo, a))
                       for i, (a, b) in enumerate(zip(starts, starts[1:])) if b > lo and a < hi)
        out.append(TaskRange(t, first_shard + t * per_task, lo, hi, pieces))
    return out


def shard_origins(task: TaskRange, names: Sequence[str], shard_rows: int) -> list[tuple[str, int]]:
    """(input, row) of the first row of each shard the task writes (for the writer's error lines)."""
    out = []
    for g in range(task.lo, task.hi, shard_rows):
        p = next(p for p in task.pieces if p.offset <= g < p.offset + p.stop - p.start)
        out.append((names[p.input], p.start + g - p.offset))
    return out
