"""Per-class streaming top-k (BASE's candidate lists) against a brute-force lexsort per class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alq.scoring.boundary import base_partial, inverse_pair_norms
from alq.scoring.class_topk import PAD, ClassTopK, class_value_keys


def ref_lists(d: np.ndarray, rows: np.ndarray, k: int):
    v = np.full((d.shape[1], k), np.inf, np.float32)
    i = np.full((d.shape[1], k), PAD, np.int64)
    for c in range(d.shape[1]):
        o = np.lexsort((rows, d[:, c]))[:k]
        v[c, :len(o)], i[c, :len(o)] = d[o, c], rows[o]
    return v, i


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_class_topk_matches_lexsort_with_ties_and_exclusions(block, k):
    rng = np.random.default_rng(block * 100 + k)
    n, c = 700, 6
    d = rng.integers(0, 30, size=(n, c)).astype(np.float32)  # heavy ties at every threshold
    d[:, 4] = np.inf  # a class with no finite value (no boundary)
    d[rng.random(n) < 0.3, 2] = 0.0
    d[::9] = rng.random((len(d[::9]), c)).astype(np.float32) * 1e-3  # late rows far below the thresholds
    rows = np.arange(n, dtype=np.int64) * 3 + 5
    keep = rng.random(n) > 0.2
    top = ClassTopK(c, k)
    for s in range(0, n, block):
        dt = torch.from_numpy(d[s:s + block].copy())
        top.push(dt, torch.from_numpy(rows[s:s + block]), keep=torch.from_numpy(keep[s:s + block]))
    v, i = top.result()
    want_v, want_i = ref_lists(d[keep], rows[keep], k)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(v, want_v)
    if block < 100 and k < 40:
        assert top.merges > 0  # the pending buffer was merged mid-stream


def test_class_topk_dense_block_after_fill():
    """A block where most entries beat the thresholds takes the column-wise path; same answer."""
    rng = np.random.default_rng(3)
    first = rng.random((50, 4)).astype(np.float32) + 10
    second = rng.integers(0, 3, size=(400, 4)).astype(np.float32)
    d = np.concatenate([first, second])
    rows = np.arange(len(d), dtype=np.int64)
    top = ClassTopK(4, 20)
    top.push(torch.from_numpy(first.copy()), torch.from_numpy(rows[:50]))
    top.push(torch.from_numpy(second.copy()), torch.from_numpy(rows[50:]))
    v, i = top.result()
    want_v, want_i = ref_lists(d, rows, 20)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(v, want_v)


def test_class_value_keys_order_like_floats():
    vals = torch.tensor([-np.inf, -2.5, -1e-30, -0.0, 0.0, 1e-30, 1.0, 3.5, np.inf], dtype=torch.float32)
    cls = torch.tensor([1, 0, 1, 0, 1, 0, 0, 1, 0])
    keys = class_value_keys(cls, vals).numpy()
    want = np.lexsort((np.arange(9), vals.numpy(), cls.numpy()))
    np.testing.assert_array_equal(np.argsort(keys, kind="stable"), want)


def test_base_partial_small_blocks_match_reference():
    """Many small blocks (many merges) give the same lists as one brute-force sort."""
    from test_mase_base import ref_dcsdb
    from test_uncertainty import _world

    from alq.store import MemoryPool

    x, _, head, excluded, _ = _world(False, seed=2)
    d, _ = ref_dcsdb(head, x)
    pool = MemoryPool(x, shard_rows=90)
    v, i = base_partial(pool, 0, len(x), head, inverse_pair_norms(head), 6, None, 64,
                        excluded=excluded)
    rows = np.flatnonzero(~excluded)
    for c in range(d.shape[1]):
        o = np.lexsort((rows, d[rows, c]))[:6]
        np.testing.assert_array_equal(i[c], rows[o])
        np.testing.assert_allclose(v[c], d[rows[o], c], rtol=1e-4, atol=1e-6)


def test_row_dots_depend_only_on_the_row():
    """BADGE's per-row dot products give a row the same bits at any position, alignment or stride."""
    from alq.diversity.metric import GradientEmbedding, row_dots

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((3000, 37)).astype(np.float32))
    c = torch.from_numpy(rng.standard_normal((1, 37)).astype(np.float32))
    metric = GradientEmbedding(11)
    sq = metric.sq_norms(x)
    full, dots = metric.sq_dists_one(x, sq, c, metric.sq_norms(c)), row_dots(x, c)
    wide = torch.zeros((3000, 50))
    wide[:, 5:42] = x
    for lo, hi in ((0, 1), (3, 4), (7, 70), (1001, 2999)):
        part = x[lo:hi].clone()
        np.testing.assert_array_equal(metric.sq_dists_one(part, sq[lo:hi], c, metric.sq_norms(c)), full[lo:hi])
        np.testing.assert_array_equal(row_dots(part, c), dots[lo:hi])
        np.testing.assert_array_equal(row_dots(wide[lo:hi, 5:42], c), dots[lo:hi])
