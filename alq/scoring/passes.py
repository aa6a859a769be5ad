"""Pool-wide uncertainty passes: a per-range partial top-k plus an exact merge.

Each pass is ``ctx.engine.map_pool(partial, pool, ..., row_arrays={"excluded":
mask})``: the module-level partial streams its shard-aligned range [lo, hi)
block by block and returns the k smallest (key, row) pairs of its
selectable rows; the driver merges the partials with :class:`StreamingTopK`.
Order everywhere is (key ascending, pool row index ascending), so the result
is exactly the first k rows of a full sort of all selectable rows, whatever
the number of tasks or the block size (see ``alq.scoring.stream``).

``uncertainty_topk(ctx, measure, k)`` is the entry point strategies use
(margin, least-confidence, entropy; Cluster-Margin's candidate set). It reads
a fresh scores file (``ctx.scores``, from ``alq score``) when there is one,
otherwise it computes the measure from the head.
"""

from __future__ import annotations

import numpy as np
import torch

from alq.scoring.stream import Buffers, head_block_rows, iter_logits, resolve_device
from alq.scoring.topk import StreamingTopK
from alq.scoring.uncertainty import DESCENDING, MEASURES, check_aggregate, measures_from_logits


def _device_arg(ctx) -> str | None:
    return str(ctx.device) if getattr(ctx, "device", None) is not None else None


def _engine(ctx):
    if getattr(ctx, "engine", None) is not None:
        return ctx.engine
    from alq.engine import LocalEngine

    return LocalEngine()


def uncertainty_partial(pool, lo: int, hi: int, head, measure: str, aggregate: str, k: int, device: str | None,
                        block_rows: int | None, *, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map task: the k smallest (key, row) of rows [lo, hi) not excluded; key = measure (negated if descending).

    Logits are computed for every row of an aligned block and excluded rows
    dropped afterwards, so a row's value never depends on which rows are excluded.
    """
    dev = resolve_device(device)
    top = StreamingTopK(k)
    rows = block_rows or head_block_rows(pool, head)
    buffers = Buffers(dev)
    for block, _, z in iter_logits(pool, head, lo=lo, hi=hi, block_rows=rows, device=dev, buffers=buffers):
        keep = ~excluded[block.start - lo:block.stop - lo]
        if not keep.any():
            continue
        work = buffers.get("work", len(z), tuple(z.shape[1:])) if measure == "entropy" else None
        values = measures_from_logits(z, multilabel=head.multilabel, aggregate=aggregate, which=(measure,),
                                      inplace=True, work=work)[measure]
        key = (-values if measure in DESCENDING else values).cpu().numpy()
        top.push(key[keep], block.indices[keep])
    return top.result()


def store_partial(pool, lo: int, hi: int, store, measure: str, k: int, *,
                  excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map task: as :func:`uncertainty_partial`, reading the measure from a scores file."""
    top = StreamingTopK(k)
    offsets = pool.offsets
    for s in range(pool.n_shards):
        s0, s1 = int(offsets[s]), int(offsets[s + 1])
        if s1 <= lo or s0 >= hi:
            continue
        a, b = max(lo, s0), min(hi, s1)
        keep = ~excluded[a - lo:b - lo]
        if not keep.any():
            continue
        values = store.read_column(s, measure)[a - s0:b - s0]
        key = -values if measure in DESCENDING else values
        top.push(key[keep], np.arange(a, b, dtype=np.int64)[keep])
    return top.result()


def merge_topk(parts, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Driver reduce: the k smallest (key, row) over every partial, sorted."""
    top = StreamingTopK(k)
    for idx, key in parts:
        top.push(key, idx)
    return top.result()


def uncertainty_topk(ctx, measure: str, k: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The k most uncertain selectable rows: (rows, natural scores, info), ranked.

    ``measure``: margin | least_confidence | entropy; ``ctx.options['aggregate']``
    picks min|mean for multi-label heads. Scores are the measure itself
    (entropy: the entropy, ranked largest first). ``info`` says whether a
    scores file was read.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure={measure!r} must be one of {MEASURES}")
    aggregate = check_aggregate(ctx.option("aggregate"))
    engine = _engine(ctx)
    store = getattr(ctx, "scores", None)
    if store is not None and store.usable_for(measure, aggregate, ctx.head):
        parts = engine.map_pool(store_partial, ctx.pool, store, measure, int(k),
                                row_arrays={"excluded": ctx.excluded})
        info = {"scores_source": "file"}
    else:
        parts = engine.map_pool(uncertainty_partial, ctx.pool, ctx.head, measure, aggregate, int(k),
                                _device_arg(ctx), None, row_arrays={"excluded": ctx.excluded})
        info = {"scores_source": "head"}
    idx, key = merge_topk(parts, int(k))
    values = -key if measure in DESCENDING else key
    return idx, values, info


def block_measures(head, x: np.ndarray, measures=MEASURES, aggregate: str = "min", device=None) -> dict:
    """Measures of an in-memory (n, d) array (small inputs, tests): {name: (n,) float64 ndarray}."""
    dev = resolve_device(device)
    head.to(dev)
    with torch.no_grad():
        z = head.net.eval()(torch.as_tensor(np.asarray(x, dtype=np.float32), device=dev))
        out = measures_from_logits(z, multilabel=head.multilabel, aggregate=aggregate, which=tuple(measures))
    return {k: v.cpu().numpy() for k, v in out.items()}
