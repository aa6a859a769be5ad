"""random: a uniform sample of the unlabeled rows (the baseline of every paper)."""

from __future__ import annotations

import numpy as np

from alq.strategies.base import Context, Selection, Strategy, register


@register
class RandomStrategy(Strategy):
    name = "random"
    help = "uniform random sample of unlabeled rows (baseline; no head needed)"
    needs_head = False
    score_meaning = "uniform random key (lower ranks first)"
    distributed = "driver"  # draws keys only; reads no pool rows

    def select(self, ctx: Context) -> Selection:
        # One uniform key per pool row from a seeded generator, then the b
        # smallest keys among unlabeled rows: streaming-friendly and the same
        # rows whatever the block size.
        from alq.scoring.topk import StreamingTopK

        top = StreamingTopK(ctx.budget)
        rng = ctx.rng()
        step = 1 << 20
        for lo in range(0, ctx.pool.count, step):
            hi = min(lo + step, ctx.pool.count)
            keys = rng.random(hi - lo)
            keep = ~ctx.excluded[lo:hi]
            top.push(keys[keep], np.arange(lo, hi, dtype=np.int64)[keep])
        idx, keys = top.result()
        return Selection(indices=idx, scores=keys)
