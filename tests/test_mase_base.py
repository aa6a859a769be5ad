"""MASE and BASE (Emam et al. 2021) against brute force: explicit loops over classes and rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_uncertainty import _ctx, _ThreeTasks, _world, ref_features

from alq.model.head import Head, HeadNet
from alq.scoring.boundary import (
    PAD,
    NeedMoreCandidates,
    column_smallest,
    inverse_pair_norms,
    merge_columns,
    round_robin,
)
from alq.store import MemoryPool
from alq.strategies import get_strategy


# -- references ----------------------------------------------------------------------
def ref_dcsdb(head, x):
    """(DCSDB (n, C), DDB (n,)) in float64 by explicit loops over class pairs."""
    f = ref_features(head, x)
    w = head.net.out.weight.detach().double().numpy()
    z = f @ w.T + head.net.out.bias.detach().double().numpy()
    n, c = z.shape
    d = np.full((n, c), np.inf)
    if head.multilabel:
        for k in range(c):
            nrm = np.linalg.norm(w[k])
            d[:, k] = np.abs(z[:, k]) / nrm if nrm > 0 else np.inf
        return d, d.min(1)
    yhat = np.argmax(z, axis=1)  # first maximum
    for i in range(n):
        a = yhat[i]
        for k in range(c):
            if k == a:
                continue
            nrm = np.linalg.norm(w[a] - w[k])
            d[i, k] = (z[i, a] - z[i, k]) / nrm if nrm > 0 else np.inf
    ddb = d.min(1)
    d[np.arange(n), yhat] = ddb
    return d, ddb


def ref_base(d, excluded, budget):
    """Algorithm 2, literally: classes in turn take the untaken selectable row with the smallest (DCSDB, row)."""
    free = set(np.flatnonzero(~excluded).tolist())
    rows, classes = [], []
    while len(rows) < budget:
        for c in range(d.shape[1]):
            r = min(free, key=lambda i: (d[i, c], i))
            free.remove(r)
            rows.append(r)
            classes.append(c)
            if len(rows) == budget:
                break
    return np.array(rows), np.array(classes)


def assert_clear_orders(d, excluded, depth):
    """Precondition: within each class, the first ``depth`` selectable DCSDB values have no near-ties."""
    rows = np.flatnonzero(~excluded)
    for c in range(d.shape[1]):
        srt = np.sort(d[rows, c])[:depth + 1]
        gaps = np.diff(srt[np.isfinite(srt)])
        assert (gaps[gaps > 0] > 2e-6).all(), f"near-tie in class {c}'s order"


@pytest.fixture(scope="module")
def world():
    return _world(False, seed=2)


# -- pieces ----------------------------------------------------------------------------
def test_inverse_pair_norms_brute_force(world):
    head = world[2]
    w = head.net.out.weight.detach().double().numpy()
    g = inverse_pair_norms(head)
    for a in range(len(w)):
        for c in range(len(w)):
            want = np.inf if a == c else 1 / np.linalg.norm(w[a] - w[c])
            assert g[a, c] == pytest.approx(want, rel=1e-6)


def test_column_smallest_is_exact_with_ties():
    rng = np.random.default_rng(0)
    d = torch.from_numpy(rng.integers(0, 4, size=(200, 6)).astype(np.float32))  # heavy ties
    d[:, 5] = float("inf")
    rows = torch.arange(1000, 1200)
    v, i = column_smallest(d, rows, 7)
    v, i = merge_columns(v.numpy(), i.numpy(), np.empty((6, 0), np.float32), np.empty((6, 0), np.int64), 7)
    for c in range(6):
        order = np.lexsort((rows.numpy(), d[:, c].numpy()))[:7]
        np.testing.assert_array_equal(i[c], rows.numpy()[order])
        np.testing.assert_array_equal(v[c], d[:, c].numpy()[order])


def test_round_robin_reports_exhausted_lists():
    rows = np.array([[1, 2], [1, 2]])
    vals = np.zeros((2, 2), np.float32)
    picks, _, cls = round_robin(vals, rows, 2)
    assert picks.tolist() == [1, 2] and cls.tolist() == [0, 1]
    with pytest.raises(NeedMoreCandidates):
        round_robin(vals, rows, 3)  # class 0's full list is used up: rows past it are unknown
    short = np.array([[1, 2, PAD], [2, 1, PAD]])
    with pytest.raises(ValueError, match="exceeds"):
        round_robin(np.zeros((2, 3), np.float32), short, 3)


# -- MASE ------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["linear", "mlp", "multilabel"])
def test_mase_matches_bruteforce(variant):
    x, _, head, excluded, labeled = _world(variant == "multilabel", seed=4, hidden=16 if variant == "mlp" else 0)
    _, ddb = ref_dcsdb(head, x)
    rows = np.flatnonzero(~excluded)
    order = np.lexsort((rows, ddb[rows]))[:40]
    srt = np.sort(ddb[rows])
    assert srt[40] - srt[39] > 1e-6  # no near-tie at the cut
    sel = get_strategy("mase").select(_ctx(MemoryPool(x, shard_rows=90), head, excluded, labeled, 40))
    np.testing.assert_array_equal(sel.indices, rows[order])
    np.testing.assert_allclose(sel.scores, ddb[rows[order]], rtol=1e-4, atol=1e-6)


# -- BASE ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [1, 3, 5, 12, 61])
def test_base_matches_bruteforce_round_robin(world, budget):
    x, _, head, excluded, labeled = world
    d, _ = ref_dcsdb(head, x)
    assert_clear_orders(d, excluded, budget + 5)
    want_rows, want_cls = ref_base(d, excluded, budget)
    sel = get_strategy("base").select(_ctx(MemoryPool(x, shard_rows=90), head, excluded, labeled, budget))
    np.testing.assert_array_equal(sel.indices, want_rows)
    np.testing.assert_array_equal(sel.columns["base_class"], np.asarray(head.classes)[want_cls])
    np.testing.assert_allclose(sel.scores, d[want_rows, want_cls], rtol=1e-4, atol=1e-6)
    counts = np.bincount(want_cls, minlength=5)
    assert counts.max() - counts.min() <= 1  # balanced: floor or ceil of b / C each


@pytest.mark.parametrize("k", [1, 2, 3])
def test_base_rerun_with_more_candidates_is_still_exact(world, k):
    """Tiny candidate lists force the fallback pass(es); the answer must not change."""
    x, _, head, excluded, labeled = world
    d, _ = ref_dcsdb(head, x)
    want_rows, _ = ref_base(d, excluded, 40)
    sel = get_strategy("base").select(_ctx(MemoryPool(x, shard_rows=90), head, excluded, labeled, 40,
                                           options={"base_candidates": k}, engine=_ThreeTasks()))
    np.testing.assert_array_equal(sel.indices, want_rows)
    assert sel.summary["base_passes"] > 1


@pytest.mark.parametrize("variant", ["mlp", "multilabel"])
def test_base_mlp_and_multilabel_match_bruteforce(variant):
    x, _, head, excluded, labeled = _world(variant == "multilabel", seed=6, hidden=16 if variant == "mlp" else 0)
    d, _ = ref_dcsdb(head, x)
    assert_clear_orders(d, excluded, 30)
    want_rows, want_cls = ref_base(d, excluded, 23)
    sel = get_strategy("base").select(_ctx(MemoryPool(x, shard_rows=128), head, excluded, labeled, 23))
    np.testing.assert_array_equal(sel.indices, want_rows)
    np.testing.assert_array_equal(sel.columns["base_class"], np.asarray(head.classes)[want_cls])


def _hand_head(weights, bias=None, classes=None):
    w = torch.tensor(weights, dtype=torch.float32)
    net = HeadNet(w.shape[1], w.shape[0])
    with torch.no_grad():
        net.out.weight.copy_(w)
        net.out.bias.copy_(torch.zeros(w.shape[0]) if bias is None else torch.tensor(bias, dtype=torch.float32))
    return Head(nets=[net.eval()], classes=classes or list(range(w.shape[0])))


def test_base_two_classes_alternate_along_the_boundary():
    """w0 = -w1 = e1: both classes rank rows by |x_1| (distance to the line x_1 = 0), so BASE takes rows
    closest to the boundary in turn, class 0 then class 1; labeled rows are skipped."""
    head = _hand_head([[1.0, 0.0], [-1.0, 0.0]], classes=["neg", "pos"])
    xs = np.array([3.0, -0.5, 0.2, -2.0, 0.9, -0.05, 1.5, 0.4], np.float32)
    x = np.stack([xs, np.ones_like(xs)], axis=1)
    excluded = np.zeros(len(x), bool)
    excluded[2] = True  # labeled: |0.2| would otherwise be second
    sel = get_strategy("base").select(_ctx(MemoryPool(x, shard_rows=3), head, excluded, [2], 5))
    assert sel.indices.tolist() == [5, 7, 1, 4, 6]  # |x| = 0.05, 0.4, 0.5, 0.9, 1.5
    assert sel.columns["base_class"].tolist() == ["neg", "pos", "neg", "pos", "neg"]
    np.testing.assert_allclose(sel.scores, [0.05, 0.4, 0.5, 0.9, 1.5], rtol=1e-6)


def test_base_fills_each_class_quota_where_mase_ignores_a_rare_class():
    """Four classes at 0, 90, 180, 270 degrees; almost every row lies in the first two sectors.
    BASE gives every class its quota (3, 3, 2, 2 for b = 10); MASE follows the crowded boundary."""
    angles = np.deg2rad([0, 90, 180, 270])
    head = _hand_head(np.stack([np.cos(angles), np.sin(angles)], 1).tolist())
    rng = np.random.default_rng(0)
    theta = np.concatenate([rng.uniform(-0.7, 2.3, 300), rng.uniform(2.4, 5.5, 6)])
    x = (np.stack([np.cos(theta), np.sin(theta)], 1) * rng.uniform(0.5, 2, (len(theta), 1))).astype(np.float32)
    excluded = np.zeros(len(x), bool)
    base = get_strategy("base").select(_ctx(MemoryPool(x, shard_rows=50), head, excluded, [], 10))
    assert np.bincount(base.columns["base_class"], minlength=4).tolist() == [3, 3, 2, 2]
    d, _ = ref_dcsdb(head, x)
    np.testing.assert_array_equal(base.indices, ref_base(d, excluded, 10)[0])
    mase = get_strategy("mase").select(_ctx(MemoryPool(x, shard_rows=50), head, excluded, [], 10))
    pred = np.argmax(x @ np.stack([np.cos(angles), np.sin(angles)], 1).T, axis=1)
    assert np.isin(pred[mase.indices], [0, 1]).all()  # MASE never leaves the crowded 0|1 boundary


def test_identical_weight_rows_have_no_boundary():
    """Classes 1 and 2 share a weight row: argmax ties go to class 1, D(., 1, 2) = +inf (documented),
    so class 2 takes rows by their distance to the 0|2 boundary."""
    head = _hand_head([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    excluded = np.zeros(40, bool)
    d, ddb = ref_dcsdb(head, x)
    assert np.isinf(d[np.argmax(x @ [[1, 0], [0, 1]], axis=1) == 1, 2]).all()
    for budget in (3, 9, 40):
        sel = get_strategy("base").select(_ctx(MemoryPool(x, shard_rows=16), head, excluded, [], budget))
        np.testing.assert_array_equal(sel.indices, ref_base(d, excluded, budget)[0])
    mase = get_strategy("mase").select(_ctx(MemoryPool(x, shard_rows=16), head, excluded, [], 7))
    np.testing.assert_array_equal(mase.indices, np.lexsort((np.arange(40), ddb))[:7])


def test_base_ties_within_a_class_go_to_the_smaller_row(world):
    x, _, head, excluded, labeled = world
    d, _ = ref_dcsdb(head, x)
    rows = np.flatnonzero(~excluded)
    best = rows[np.argmin(d[rows, 0])]
    x = x.copy()
    x[[r for r in (7, 150, 151, 600) if not excluded[r]]] = x[best]
    d, _ = ref_dcsdb(head, x)
    want, _ = ref_base(d, excluded, 20)
    sel = get_strategy("base").select(_ctx(MemoryPool(x, shard_rows=90), head, excluded, labeled, 20))
    np.testing.assert_array_equal(sel.indices, want)
