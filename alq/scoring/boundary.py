"""Distances to the head's decision boundaries: MASE and BASE (Emam et al. 2021).

In the feature space of the last linear layer (``HeadNet.features``; for an
MLP head the input of its last linear layer) with logits z = W f + b, the
distance from f to the boundary between classes a and c is

    D(i, a, c) = (z_ia - z_ic) / ||w_a - w_c||        (ALGORITHMS.md)

with ``1 / ||w_a - w_c||`` precomputed once as a C x C matrix ``G``.
y-hat_i = argmax_c z_ic, ties to the smaller class index.

- DDB(i) = min over c != y-hat_i of D(i, y-hat_i, c)          (MASE score)
- DCSDB(i, c) = D(i, y-hat_i, c) if c != y-hat_i else DDB(i)    (BASE)

Conventions (documented, tested): where w_a = w_c the two classes have no
boundary in feature space and D = +inf (so a class whose weight row equals
the predicted class's never pulls rows to itself; rows with DCSDB = +inf rank
last for that class, by row index). Multi-label heads (an alq extension, not
in the paper): class c's own boundary is z_ic = 0, so D(i, c) = |z_ic| / ||w_c||,
DDB(i) = min_c D(i, c) and DCSDB(i, c) = D(i, c).

Streaming: ``mase_partial`` keeps a running top-b of DDB; ``base_partial``
keeps, per class, the k smallest (DCSDB, row) pairs (exact with ties, see
``alq.scoring.class_topk``); ``round_robin`` resolves BASE's class round-robin
exactly from those lists or reports that k was too small.
"""

from __future__ import annotations

import numpy as np
import torch

from alq.scoring.class_topk import PAD, ClassTopK, column_smallest, merge_columns  # noqa: F401 - re-exported
from alq.scoring.stream import Buffers, head_block_rows, iter_logits, resolve_device
from alq.scoring.topk import StreamingTopK

INF = float("inf")


def inverse_pair_norms(head) -> np.ndarray:
    """G (float32): multi-class (C, C), G[a, c] = 1/||w_a - w_c|| (+inf on the diagonal and where
    w_a = w_c); multi-label (C,), G[c] = 1/||w_c|| (+inf where w_c = 0). Computed in float64."""
    w = head.net.out.weight.detach().to("cpu", torch.float64)
    if head.multilabel:
        norms = w.norm(dim=1)
    else:
        norms = torch.cdist(w, w, compute_mode="donot_use_mm_for_euclid_dist")
    with np.errstate(divide="ignore"):
        g = np.where(norms.numpy() > 0, 1.0 / norms.numpy(), np.inf)
    return g.astype(np.float32)


def boundary_distances(z: torch.Tensor, g: torch.Tensor, *, multilabel: bool, dcsdb: bool = True,
                       zero_pairs: bool | None = None, inplace: bool = False, work: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(DCSDB (n, C) or None, DDB (n,)) of a logits block ``z`` (n, C), float32.

    ``g`` from :func:`inverse_pair_norms` on the same device; ``zero_pairs``
    (computed when None): whether two classes share a weight row. With
    ``dcsdb=False`` only DDB is returned (MASE). ``inplace`` lets the (n, C)
    result reuse ``z``'s memory (the caller no longer needs the logits).
    """
    if zero_pairs is None:
        zero_pairs = has_zero_pairs(g, multilabel=multilabel)
    if multilabel:
        d = torch.abs(z, out=z) if inplace else z.abs()
        d.mul_(g[None, :])
        if zero_pairs:
            d = torch.nan_to_num(d, nan=INF, posinf=INF)
        return (d if dcsdb else None), d.amin(dim=1)
    zmax, yhat = z.max(dim=1)  # the first maximum (documented for max along a dim, as for argmax)
    d = z if inplace else torch.empty_like(z)
    torch.sub(zmax[:, None], z, out=d)  # z_(y-hat) - z_c >= 0
    d.scatter_(1, yhat[:, None], 1.0)  # 1 x G[a, a] = +inf keeps the predicted class out of the min
    d.mul_(torch.index_select(g, 0, yhat, out=work) if work is not None else g.index_select(0, yhat))
    if zero_pairs:
        d = torch.nan_to_num(d, nan=INF, posinf=INF)  # tie with an identical weight row: no boundary
    ddb = d.amin(dim=1)
    if dcsdb:
        d.scatter_(1, yhat[:, None], ddb[:, None])
    return (d if dcsdb else None), ddb


def has_zero_pairs(g: torch.Tensor, *, multilabel: bool) -> bool:
    """Whether some D is 0 x inf: a zero weight row (multi-label) or two equal rows (multi-class)."""
    n_inf = int(torch.isinf(g).sum())
    return n_inf > (0 if multilabel else g.shape[0])  # the multi-class diagonal is always +inf


def mase_partial(pool, lo: int, hi: int, head, g: np.ndarray, k: int, device: str | None,
                 block_rows: int | None, *, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map task: the k smallest (DDB, row) pairs of rows [lo, hi) not excluded."""
    dev = resolve_device(device)
    gt = torch.from_numpy(g).to(dev)
    zero_pairs = has_zero_pairs(gt, multilabel=head.multilabel)
    top = StreamingTopK(k)
    rows = block_rows or head_block_rows(pool, head, extra_per_row=8 * head.n_classes)
    buffers = Buffers(dev)
    for block, _, z in iter_logits(pool, head, lo=lo, hi=hi, block_rows=rows, device=dev, buffers=buffers):
        keep = ~excluded[block.start - lo:block.stop - lo]
        if not keep.any():
            continue
        _, ddb = boundary_distances(z, gt, multilabel=head.multilabel, dcsdb=False, zero_pairs=zero_pairs,
                                    inplace=True, work=buffers.get("g", len(z), tuple(z.shape[1:])))
        top.push(ddb.double().cpu().numpy()[keep], block.indices[keep])
    return top.result()


def base_partial(pool, lo: int, hi: int, head, g: np.ndarray, k: int, device: str | None,
                 block_rows: int | None, *, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map task: per class c, the k smallest (DCSDB(., c), row) pairs of rows [lo, hi) not excluded.

    Returns (values (C, k) float32, rows (C, k) int64), each row of C sorted by
    (value, row) and padded with (+inf, PAD). The per-class lists are a
    :class:`~alq.scoring.class_topk.ClassTopK`: once they are full, a block
    offers only the entries below their class's k-th value, and rows whose
    DDB (their smallest DCSDB) is not below the largest of those are skipped.
    """
    dev = resolve_device(device)
    gt = torch.from_numpy(g).to(dev)
    zero_pairs = has_zero_pairs(gt, multilabel=head.multilabel)
    n_classes = head.n_classes
    top = ClassTopK(n_classes, k, dev)
    rows = block_rows or head_block_rows(pool, head, extra_per_row=12 * n_classes)
    buffers = Buffers(dev)
    for block, _, z in iter_logits(pool, head, lo=lo, hi=hi, block_rows=rows, device=dev, buffers=buffers):
        keep = ~excluded[block.start - lo:block.stop - lo]
        if not keep.any():
            continue
        n = len(z)
        d, ddb = boundary_distances(z, gt, multilabel=head.multilabel, dcsdb=True, zero_pairs=zero_pairs,
                                    inplace=True, work=buffers.get("g", n, (n_classes,)))
        idx = torch.from_numpy(block.indices).to(dev)
        top.push(d, idx, row_min=ddb, keep=None if keep.all() else torch.from_numpy(keep).to(dev))
    return top.result()


class NeedMoreCandidates(Exception):
    """A class's candidate list ran out during the round-robin: rerun with a larger k."""

    def __init__(self, cls: int, taken: int):
        super().__init__(f"class {cls} ran out of candidates after {taken} picks")
        self.cls, self.taken = cls, taken


def round_robin(values: np.ndarray, rows: np.ndarray, budget: int, stats: dict | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BASE's exact round-robin over per-class candidate lists (Emam et al. 2021, Algorithm 2).

    ``values``/``rows``: (C, k), each class's k smallest (DCSDB, row) pairs
    among all selectable rows, sorted, padded with PAD. Classes are visited
    0, 1, ..., C-1, 0, ...; each takes its first not-yet-taken row, until
    ``budget`` rows are taken. Returns (rows, DCSDB values, class per pick),
    in pick order; ``stats['depth']`` gets the deepest list position used.
    Raises :class:`NeedMoreCandidates` when a full list (k
    real entries) is used up: rows past its end may be that class's next
    pick, so the answer would not be exact.
    """
    n_classes, k = rows.shape
    lists = rows.tolist()
    vals = values.tolist()
    ptr = [0] * n_classes
    taken: set[int] = set()
    out_rows: list[int] = []
    out_vals: list[float] = []
    out_cls: list[int] = []
    while len(out_rows) < budget:
        for c in range(n_classes):
            lst, p = lists[c], ptr[c]
            while p < k and lst[p] != PAD and lst[p] in taken:
                p += 1
            if p >= k or lst[p] == PAD:
                if p >= k:
                    raise NeedMoreCandidates(c, len(out_rows))
                # A short list holds every selectable row, so all are taken: budget > selectable rows.
                raise ValueError(f"budget {budget} exceeds the selectable rows")
            r = lst[p]
            taken.add(r)
            out_rows.append(r)
            out_vals.append(vals[c][p])
            out_cls.append(c)
            ptr[c] = p + 1
            if len(out_rows) == budget:
                break
    if stats is not None:
        stats["depth"] = max(ptr)
    return (np.asarray(out_rows, dtype=np.int64), np.asarray(out_vals, dtype=np.float64),
            np.asarray(out_cls, dtype=np.int64))
