"""facility-location: greedy facility location on the embeddings (cold start; no head needed).

Picks b rows that best *represent* the unlabeled pool: f(S) = sum over
ground-set rows i of max_{j in S} s_ij, s = cosine similarity clipped at 0,
maximised greedily (lazy greedy, exact greedy order). Labeled and pending
rows count as already chosen (each row's starting coverage is its best
similarity to them). Dense similarity up to ``DENSE_MAX_ROWS`` candidates
(held as a matrix while n^2 floats fit ``ALQ_WORKING_MEMORY``, else computed
row tile by row tile: same values, same picks), else each row's ``--option
knn=K`` (default 20) most similar rows via faiss (exact up to 50,000 rows,
IVF above). The choice never depends on the memory setting, and every
similarity is an aligned product (``alq.scoring.stream.aligned_mm``), so the
same inputs and seed give the same batch whatever ``ALQ_WORKING_MEMORY``. Pools larger
than ``--option max_candidates=M`` (default 200,000) are represented by a
seeded uniform sample of M unlabeled rows (reported in the summary).
"""

from __future__ import annotations

import numpy as np
import torch

from alq.config import working_memory_bytes
from alq.device import torch_device
from alq.diversity.facility import CosineRows, dense_similarity, greedy_dense, greedy_sparse
from alq.diversity.knn import knn_graph, normalize_rows
from alq.diversity.rows import RowTable
from alq.errors import BadInputError
from alq.scoring.stream import align_rows, aligned_mm
from alq.strategies.base import Context, Selection, Strategy, register, unlabeled_indices

DEFAULT_KNN = 20
DEFAULT_MAX_CANDIDATES = 200_000
# dense (exact) facility location up to this many candidates: n^2 float32 = 256 MiB, the default
# ALQ_WORKING_MEMORY, so the default setting keeps the matrix; a smaller setting computes its rows on demand
DENSE_MAX_ROWS = 8192


def table_array(table: RowTable) -> np.ndarray:
    """All rows of a table as one float32 (n, w) array (candidate sets only: they are bounded)."""
    out = np.empty((table.n, table.width), np.float32)
    for pos, x in table.blocks():
        out[pos] = x.cpu().numpy()
    return out


def labeled_coverage(x: np.ndarray, pool, covered: np.ndarray, *, transform, width: int, device) -> np.ndarray:
    """Each candidate's best clipped cosine similarity to the rows ``covered`` (streamed in blocks)."""
    cover = np.zeros(len(x), np.float64)
    if len(covered) == 0 or len(x) == 0:
        return cover
    u = torch.from_numpy(normalize_rows(x)).to(device)
    with RowTable(pool, covered, transform=transform, width=width, device=device) as lab:
        step = align_rows(working_memory_bytes() // (16 * max(1, lab.block)))
        for _, c in lab.blocks():
            c = torch.nn.functional.normalize(c, dim=1)
            for r0 in range(0, len(u), step):
                best = aligned_mm(u[r0:r0 + step], c).max(dim=1).values.double().cpu().numpy()
                np.maximum(cover[r0:r0 + step], best, out=cover[r0:r0 + step])
    return np.clip(cover, 0, None)


def facility_rows(pool, candidates: np.ndarray, covered: np.ndarray, budget: int, *, transform=None,
                  width: int | None = None, device=None, knn: int = DEFAULT_KNN, seed: int = 0,
                  dense: bool | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Facility location over pool rows ``candidates``; rows ``covered`` count as chosen.

    Returns (global indices in pick order, marginal gain of each, stats).
    """
    device = device or torch_device()
    width = width or pool.dim
    with RowTable(pool, candidates, transform=transform, width=width, device=device) as table:
        x = table_array(table)
    cover0 = labeled_coverage(x, pool, covered, transform=transform, width=width, device=device)
    n = len(x)
    if dense is None:
        dense = n <= DENSE_MAX_ROWS
    if dense:
        memory = working_memory_bytes()
        sim = dense_similarity(x) if n * n * 4 <= memory else CosineRows(x, memory)
        pos, gains = greedy_dense(sim, budget, cover0)
        stats = {"similarity": "dense cosine", "candidates": n}
    else:
        nbr, sim = knn_graph(x, knn, seed=seed)
        pos, gains = greedy_sparse(nbr, sim, budget, cover0)
        stats = {"similarity": f"cosine kNN graph (k={nbr.shape[1]})", "candidates": n}
    return candidates[pos], gains, stats


def _int_option(ctx: Context, name: str, default: int, minimum: int = 1) -> int:
    value = ctx.option(name, default)
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise BadInputError(f"--option {name}={value!r} must be a whole number >= {minimum}")
    return int(value)


@register
class FacilityLocationStrategy(Strategy):
    name = "facility-location"
    help = "greedy facility location (cosine, kNN graph for large pools) on the embeddings (cold start; no head)"
    needs_head = False
    score_meaning = "marginal gain in facility-location value when picked"
    distributed = "driver"

    def select(self, ctx: Context) -> Selection:
        knn = _int_option(ctx, "knn", DEFAULT_KNN, 2)
        cap = _int_option(ctx, "max_candidates", DEFAULT_MAX_CANDIDATES)
        unlabeled = unlabeled_indices(ctx)
        sampled = len(unlabeled) > max(cap, ctx.budget)
        if sampled:
            keep = ctx.rng(3).choice(len(unlabeled), max(cap, ctx.budget), replace=False)
            unlabeled = np.sort(unlabeled[keep])
        idx, gains, stats = facility_rows(ctx.pool, unlabeled, np.flatnonzero(ctx.excluded), ctx.budget,
                                          device=ctx.device, knn=knn, seed=ctx.seed)
        stats["sampled"] = bool(sampled)
        return Selection(indices=idx, scores=gains, summary={"facility_location": stats})
