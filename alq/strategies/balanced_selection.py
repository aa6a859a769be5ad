"""base: Balanced Selection (Emam et al. 2021, "Active Learning at the ImageNet Scale", Alg. 2).

Classes take turns, c = 0, 1, ..., C-1 (the head's class order), then again
from 0: each takes the not-yet-taken selectable row with the smallest
DCSDB(., c) (distance in feature space to class c's boundary; see
``alq.scoring.boundary``), until b rows are taken, so every class gets
floor(b/C) or ceil(b/C) rows near its boundary.

Exact at scale: one streamed pass keeps, per class, the k smallest
(DCSDB, row) pairs, k = 2 ceil(b/C) + 16 (rows wanted by several classes
use up the slack); the round-robin is then resolved exactly from those lists.
k = 3 ceil(b/C) + 256: on mixtures with heavy class overlap the deepest list
position used was 2.2-2.7 x b/C at C <= 100 and up to 17 x b/C (171 rows) at
C = 1000, b = 10,000 (tests/bench). If a class uses up its whole list (every
one of its k candidates taken before its turns end), its next pick may lie
past the list, so the pass is rerun with a larger k (extrapolated from how
far the round-robin got, at least 2k, capped at the selectable rows). The
result always equals the brute-force round-robin over all rows.

Ties: within a class, equal DCSDB goes to the smaller pool row; a row
wanted by several classes goes to the class whose turn comes first. DCSDB
is +inf where two classes have identical weight rows (no boundary); such rows
come last in that class's order, by row index.

Output: rank = pick order; score = DCSDB(row, c) for the class c whose turn
took it; column ``base_class`` = that class.
"""

from __future__ import annotations

import math

import numpy as np

from alq.errors import AlqFailure
from alq.scoring.boundary import PAD, NeedMoreCandidates, base_partial, inverse_pair_norms, merge_columns, round_robin
from alq.scoring.passes import _device_arg, _engine
from alq.strategies.base import Context, Selection, Strategy, register


def initial_candidates(budget: int, n_classes: int, n_selectable: int) -> int:
    return int(min(n_selectable, 3 * math.ceil(budget / n_classes) + 256))


def grown_candidates(k: int, picked: int, budget: int, n_selectable: int) -> int:
    """A larger k after a class ran dry at pick ``picked`` of ``budget``."""
    return int(min(n_selectable, max(2 * k, math.ceil(1.5 * k * budget / max(picked, 1)))))


def base_select(ctx: Context, k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(rows, DCSDB scores, class index per pick, info) of BASE on ``ctx``."""
    head = ctx.head
    b = int(ctx.budget)
    n_sel = ctx.n_unlabeled
    k = int(k or initial_candidates(b, head.n_classes, n_sel))
    g = inverse_pair_norms(head)
    engine = _engine(ctx)
    passes = 0
    stats: dict = {}
    while True:
        passes += 1
        parts = engine.map_pool(base_partial, ctx.pool, head, g, k, _device_arg(ctx), None,
                                row_arrays={"excluded": ctx.excluded})
        v, i = np.full((head.n_classes, k), np.inf, np.float32), np.full((head.n_classes, k), PAD, np.int64)
        if parts:
            v, i = parts[0]  # each part is sorted and padded to k
        for pv, pi in parts[1:]:
            v, i = merge_columns(v, i, pv, pi, k)
        try:
            rows, vals, cls = round_robin(v, i, b, stats)
            break
        except NeedMoreCandidates as short:
            if k >= n_sel:
                raise AlqFailure("base: round-robin ran out of candidates with every row listed (bug)") from None
            k = grown_candidates(k, short.taken, b, n_sel)
        except ValueError as exc:
            raise AlqFailure(f"base: {exc}") from None
    return rows, vals, cls, {"base_candidates_per_class": k, "base_passes": passes,
                             "base_deepest_candidate": int(stats["depth"])}


@register
class BaseStrategy(Strategy):
    name = "base"
    help = "class-balanced boundary selection: classes take turns picking their closest rows (BASE, Emam et al. 2021)"
    score_meaning = "DCSDB(row, c) for the class c whose turn took the row; rank = pick order"
    distributed = "sharded"

    def select(self, ctx: Context) -> Selection:
        rows, vals, cls, info = base_select(ctx, ctx.option("base_candidates"))
        names = np.asarray([ctx.head.classes[c] for c in cls.tolist()])
        counts = np.bincount(cls, minlength=ctx.head.n_classes)
        info["base_class_histogram"] = {str(ctx.head.classes[c]): int(counts[c]) for c in range(len(counts))
                                        if counts[c]}
        return Selection(indices=rows, scores=vals, columns={"base_class": names}, summary=info)
