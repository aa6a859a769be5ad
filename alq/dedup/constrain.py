"""``alq select --dedup DUPS/`` and ``--min-distance D``: constraints on any strategy's ranking.

- ``--dedup``: rows whose near-duplicate group (``alq dedup``) holds a
  labeled or pending row are excluded before the strategy runs; then at
  most one row per group is kept, the first in the strategy's ranking.
- ``--min-distance D``: walking the ranking in order, a row is kept only if
  no row kept before it, and no labeled or pending row, is closer than D
  (Euclidean on the stored vectors; :mod:`alq.diversity.mindist`).

Both filter a ranking, so the strategy is asked for more rows than the
budget (2x, then 4x more each time the filtered list falls short, up to
every selectable row) and the first ``budget`` rows that pass are kept,
ranks and scores as the strategy gave them. For ranking strategies
(margin, entropy, ...) this is exactly the greedy filter of their full
ranking; for batch strategies (badge, coreset, cluster-margin) it filters
the ranked batch they choose at the larger budget.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from alq.errors import BadInputError, BudgetError
from alq.strategies.base import Selection

FIRST_ASK = 2  # first over-request: this many times the budget (at least budget + 64)
GROW = 4


def validate(dedup, min_distance) -> None:
    """Input checks before any work (one-line errors)."""
    if min_distance is not None and not (math.isfinite(min_distance) and min_distance >= 0):
        raise BadInputError(f"--min-distance={min_distance} must be a finite distance >= 0",
                            hint="e.g. --min-distance 0.1 (Euclidean, in the pool's embedding units)")
    if dedup is not None:
        from alq.dedup.store import read_summary

        read_summary(dedup)  # a missing or foreign directory is named now, not after the strategy ran


def _pending_rows(pool, pending) -> np.ndarray:
    from alq.store.labels import read_id_list

    parts = [pool.lookup(read_id_list(p)) for p in pending]
    rows = np.concatenate(parts) if parts else np.empty(0, np.int64)
    return rows[rows >= 0]


def _first_per_group(groups_of_ranked: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each group, in rank order."""
    _, first = np.unique(groups_of_ranked, return_index=True)
    return np.sort(first)


def constrained_select(strat, ctx, *, dedup=None, min_distance: float | None = None, pending=(),
                       allow_smaller: bool = False) -> Selection:
    """Run ``strat`` on ``ctx`` under the constraints (module docstring); ``ctx.budget`` may shrink
    (``allow_smaller``), and ``ctx.excluded`` gains the rows of blocked groups."""
    pool = ctx.pool
    anchors = np.union1d(np.asarray(ctx.labeled, dtype=np.int64), _pending_rows(pool, pending))
    info: dict = {}
    groups = None
    cap = ctx.n_unlabeled
    if dedup is not None:
        from alq.dedup.store import load_groups

        groups = load_groups(dedup, pool)
        blocked_groups = np.unique(groups[anchors])
        blocked = np.isin(groups, blocked_groups) & ~ctx.excluded
        ctx.excluded = ctx.excluded | blocked
        cap = int(len(np.unique(groups[~ctx.excluded])))
        info["dedup"] = {"path": str(dedup), "groups_blocked": int(len(blocked_groups)),
                         "rows_blocked": int(blocked.sum()), "groups_selectable": cap}
    n_avail = ctx.n_unlabeled
    want = int(ctx.budget)
    if cap == 0:
        raise BudgetError("no row is left to select: every unlabeled row's near-duplicate group has a labeled or "
                          "pending row", hint="drop --dedup, or add rows with `alq embed --append`")
    if want > cap:
        if not allow_smaller:
            raise BudgetError(f"--budget={want} exceeds the {cap} rows selectable under --dedup (one per "
                              "near-duplicate group, none from a group with a labeled or pending row)",
                              hint="lower --budget or pass --allow-smaller")
        want = cap
    mdf = None
    if min_distance is not None:
        from alq.diversity.mindist import MinDistanceFilter

        mdf = MinDistanceFilter(pool, min_distance, anchors)
    ask = min(n_avail, max(FIRST_ASK * want, want + 64))
    attempts = 0
    while True:
        attempts += 1
        sel = strat.select(dataclasses.replace(ctx, budget=ask))
        ranked = np.asarray(sel.indices, dtype=np.int64)
        keep = _filter(ranked, groups, mdf, want)
        if len(keep) >= want or ask >= n_avail:
            break
        ask = min(n_avail, ask * GROW)
    if mdf is not None:
        info["min_distance"] = {"distance": float(min_distance), "anchors": int(len(anchors)),
                                "rejected_near_labeled_or_pending": mdf.rejected_by_anchor,
                                "rejected_near_a_pick": mdf.rejected_by_pick}
    if len(keep) < want:
        if not allow_smaller or len(keep) == 0:
            raise BudgetError(f"--min-distance={min_distance:g}: only {len(keep)} of the {n_avail} selectable rows "
                              f"keep that distance from each other and from labeled/pending rows; --budget={want}",
                              hint="lower --min-distance or --budget, or pass --allow-smaller")
        want = len(keep)
    pos = keep[:want]
    ctx.budget = want
    info.update(ranked_rows_asked=int(ask), strategy_runs=attempts, ranked_rows_skipped=int(pos[-1] + 1 - want))
    columns = {k: np.asarray(v)[pos] for k, v in sel.columns.items()}
    return Selection(indices=ranked[pos], scores=np.asarray(sel.scores)[pos], columns=columns,
                     summary={**sel.summary, "constraints": info})


def _filter(ranked: np.ndarray, groups, mdf, want: int) -> np.ndarray:
    """Positions in ``ranked`` that pass, greedily in rank order (at most ``want``)."""
    if mdf is None:
        return _first_per_group(groups[ranked])[:want]
    from alq.diversity.mindist import CHUNK

    mdf.reset()
    taken: set[int] = set()
    out: list[np.ndarray] = []
    n = 0
    for s in range(0, len(ranked), CHUNK):
        part = ranked[s:s + CHUNK]
        allowed = veto = None
        if groups is not None:
            g = groups[part]
            allowed = np.fromiter((int(v) not in taken for v in g), bool, len(g))

            def veto(i, g=g):
                if int(g[i]) in taken:
                    return True
                taken.add(int(g[i]))  # the last check: the row is accepted
                return False

        ok = mdf.accept_chunk(part, limit=want - n, allowed=allowed, veto=veto)
        out.append(s + np.flatnonzero(ok))
        n += int(ok.sum())
        if n >= want:
            break
    return np.concatenate(out) if out else np.empty(0, np.int64)
