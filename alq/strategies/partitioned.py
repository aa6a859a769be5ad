"""partitioned-coreset, partitioned-badge: the strategy run on p random partitions.

BASE appendix (Emam et al. 2021), after Citovsky et al. 2021: shuffle the
unlabeled rows and the labeled (and pending) rows into p random parts, pair
them, and run coreset or BADGE in each part with budget b/p (the remainder
b % p goes one each to the first parts). Parts are independent, so they run
in parallel: ``ctx.engine.map`` over parts (local engine: a process pool,
``--option processes=N``, default min(p, CPUs) on CPU and 1 on a GPU; Ray:
one task per part). Each part draws from its own generator, seeded by
(seed, part), so the union is the same whatever runs where.

``--partitions`` (default: about 100,000 unlabeled rows per part, at least
1, at most b). The result interleaves the parts' picks by rank (rank 0 of
every part, then rank 1, ...), so any prefix is spread over all parts.
``ALQ_WORKING_MEMORY`` applies per process.
"""

from __future__ import annotations

import os

import numpy as np

from alq.diversity.partition import default_partitions, plan
from alq.engine import LocalEngine
from alq.errors import BadInputError
from alq.strategies.badge import badge_rows
from alq.strategies.base import Context, Selection, Strategy, register, unlabeled_indices
from alq.strategies.coreset import kcenter_rows

_STREAM = 17  # generator stream of the partitioning (parts use (seed, 18, k))


def run_part(kind: str, pool, unlabeled: np.ndarray, centres: np.ndarray, budget: int, head, seed: int, part: int,
             device) -> tuple[np.ndarray, np.ndarray, dict]:
    """One partition (module level, picklable: the unit of a process pool or a Ray task)."""
    rng = np.random.default_rng([seed, _STREAM + 1, part])
    if budget == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64), {}
    if kind == "coreset":
        idx, scores, stats = kcenter_rows(pool, unlabeled, centres, budget, head=head, device=device, rng=rng)
    else:
        idx, scores, stats = badge_rows(pool, unlabeled, budget, head=head, device=device, rng=rng)
    stats["process_peak_rss_mib"] = _peak_rss_mib()
    return idx, scores, stats


def _peak_rss_mib() -> float | None:
    """This process's high-water RSS (Linux), so a run can report its workers' memory."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def interleave(results: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Round-robin by rank over parts: (indices, scores, part of each)."""
    idx, sc, part = [], [], []
    longest = max((len(r[0]) for r in results), default=0)
    for rank in range(longest):
        for k, (i, s) in enumerate(results):
            if rank < len(i):
                idx.append(i[rank])
                sc.append(s[rank])
                part.append(k)
    return np.asarray(idx, np.int64), np.asarray(sc, np.float64), np.asarray(part, np.int64)


class _Partitioned(Strategy):
    kind: str
    distributed = "partitioned"

    def select(self, ctx: Context) -> Selection:
        unlabeled = unlabeled_indices(ctx)
        parts = ctx.option("partitions", default_partitions(ctx.budget, len(unlabeled)))
        if not isinstance(parts, (int, np.integer)) or parts < 1:
            raise BadInputError(f"--partitions={parts!r} must be a whole number >= 1")
        parts = int(parts)
        if parts > ctx.budget:
            raise BadInputError(f"--partitions={parts} exceeds --budget={ctx.budget}: every part needs a pick",
                                hint=f"use --partitions <= {ctx.budget}")
        tasks_plan = plan(unlabeled, np.flatnonzero(ctx.excluded), ctx.budget, parts, ctx.rng(_STREAM))
        engine = ctx.engine
        if engine is None or (isinstance(engine, LocalEngine) and engine.processes == 1):
            engine = LocalEngine(processes=_processes(ctx, parts))
        tasks = [(self.kind, ctx.pool, u, c, b, ctx.head, ctx.seed, k, ctx.device)
                 for k, (u, c, b) in enumerate(tasks_plan)]
        ctx.report(self.name, 0, parts)
        results = engine.map(run_part, tasks)
        ctx.report(self.name, parts, parts)
        idx, scores, part = interleave([(r[0], r[1]) for r in results])
        peaks = [r[2].get("process_peak_rss_mib") for r in results if r[2].get("process_peak_rss_mib")]
        summary = {"partitions": parts, "processes": getattr(engine, "processes", None),
                   "max_process_peak_rss_mib": round(max(peaks), 1) if peaks else None,
                   "part_budgets": [int(t[2]) for t in tasks_plan],
                   "part_rows": [int(len(t[0])) for t in tasks_plan]}
        return Selection(indices=idx, scores=scores, columns={"partition": part}, summary={self.name: summary})


def _processes(ctx: Context, parts: int) -> int:
    want = ctx.option("processes")
    if want is not None:
        if not isinstance(want, (int, np.integer)) or want < 1:
            raise BadInputError(f"--option processes={want!r} must be a whole number >= 1")
        return int(min(want, parts))
    if ctx.device is not None and str(ctx.device).startswith("cuda"):
        return 1
    return int(max(1, min(parts, os.cpu_count() or 1)))


@register
class PartitionedCoreset(_Partitioned):
    name = "partitioned-coreset"
    kind = "coreset"
    help = "coreset on --partitions random parts of labeled/unlabeled rows, budget split, in parallel (BASE)"
    score_meaning = "distance to the nearest centre within its partition when picked"


@register
class PartitionedBadge(_Partitioned):
    name = "partitioned-badge"
    kind = "badge"
    help = "BADGE on --partitions random parts of the unlabeled rows, budget split, in parallel (BASE)"
    score_meaning = "squared gradient-embedding distance within its partition when drawn"
