"""coreset / kcenter: k-center greedy == a naive O(N^2) loop; 2-approximation; streaming equality."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from _diversity import MEMORIES, context, head_for, mixture, pools

from alq.diversity.kcenter import kcenter_greedy
from alq.diversity.rows import RowTable
from alq.store import MemoryPool
from alq.strategies import get_strategy


def naive_kcenter(x, candidates, centres, budget, first=None):
    """The textbook loop in float64: full distance recomputation every pick."""
    x = np.asarray(x, np.float64)
    d = np.full(len(candidates), np.inf)
    for c in centres:
        d = np.minimum(d, ((x[candidates] - x[c]) ** 2).sum(1))
    picks = []
    for t in range(budget):
        j = first if (t == 0 and len(centres) == 0) else int(np.argmax(d))
        picks.append(j)
        d = np.minimum(d, ((x[candidates] - x[candidates[j]]) ** 2).sum(1))
        d[picks] = -1
    return candidates[np.array(picks)]


@pytest.mark.parametrize("memory", MEMORIES)
@pytest.mark.parametrize("where", ["memory", "disk"])
def test_coreset_equals_naive_loop(tmp_path, monkeypatch, memory, where):
    monkeypatch.setenv("ALQ_WORKING_MEMORY", memory)
    x, y = mixture(400, 8)
    pool = pools(x, tmp_path)[where]
    labeled = np.arange(0, 400, 13)
    pending = [5, 6]
    head = head_for(x, y, labeled)  # linear, no normalisation: features = embeddings
    ctx = context(pool, 40, labeled, pending, head=head)
    sel = get_strategy("coreset").select(ctx)
    cand = np.flatnonzero(~ctx.excluded)
    want = naive_kcenter(x, cand, np.flatnonzero(ctx.excluded), 40)
    np.testing.assert_array_equal(sel.indices, want)
    # scores: distance of each pick to its nearest centre when picked, non-increasing
    assert np.all(np.diff(sel.scores) <= 1e-5)


@pytest.mark.parametrize("memory", MEMORIES)
def test_kcenter_cold_start_first_pick_is_seeded(tmp_path, monkeypatch, memory):
    monkeypatch.setenv("ALQ_WORKING_MEMORY", memory)
    x, _ = mixture(300, 6, seed=3)
    pool = pools(x, tmp_path, dtype="float16")["disk"]
    x16 = x.astype(np.float16).astype(np.float32)
    ctx = context(pool, 25, seed=11)
    sel = get_strategy("kcenter").select(ctx)
    first = int(ctx.rng().integers(300))
    np.testing.assert_array_equal(sel.indices, naive_kcenter(x16, np.arange(300), [], 25, first=first))
    assert sel.indices[0] == first and np.isinf(sel.scores[0])
    again = get_strategy("kcenter").select(context(pool, 25, seed=11))
    np.testing.assert_array_equal(sel.indices, again.indices)
    assert not np.array_equal(get_strategy("kcenter").select(context(pool, 25, seed=12)).indices, sel.indices)


def test_coreset_uses_head_features_for_an_mlp_head(tmp_path):
    x, y = mixture(300, 8, seed=1)
    pool = MemoryPool(x, shard_rows=64)
    labeled = np.arange(0, 300, 10)
    head = head_for(x, y, labeled, hidden=16, normalize="standardize")
    with torch.no_grad():
        feats = head.net.features(torch.from_numpy(x)).numpy()
    ctx = context(pool, 30, labeled, head=head)
    sel = get_strategy("coreset").select(ctx)
    want = naive_kcenter(feats, np.flatnonzero(~ctx.excluded), labeled, 30)
    np.testing.assert_array_equal(sel.indices, want)


def exact_kcenter_radius(x, k):
    best = np.inf
    for centres in itertools.combinations(range(len(x)), k):
        d = np.sqrt(((x[:, None, :] - x[None, list(centres), :]) ** 2).sum(-1)).min(1).max()
        best = min(best, d)
    return best


def far_from_origin(kind, n=1500, d=16, seed=0):
    """Rows whose norms dwarf their distances: the float32 expansion around 0 gets these wrong."""
    x = np.random.default_rng(seed).normal(size=(n, d))
    if kind == "offset":
        x = x + 1000.0
    elif kind == "scaled":
        x = x * 1e3 + 3e5
    elif kind == "narrow":  # a standardised-head-like cloud: spread 0.01 at norm 200
        x = x * 0.01 + 50.0
    return x.astype(np.float32)


@pytest.mark.parametrize("kind", ["offset", "scaled", "narrow"])
@pytest.mark.parametrize("memory", ["256", "0.02"])
def test_kcenter_is_exact_far_from_the_origin(monkeypatch, kind, memory):
    monkeypatch.setenv("ALQ_WORKING_MEMORY", memory)
    x = far_from_origin(kind)
    pool = MemoryPool(x, shard_rows=300)
    cand, cent = np.arange(40, len(x)), np.arange(40)
    picks, scores, _ = kcenter_greedy(RowTable(pool, cand), 60, centres=RowTable(pool, cent),
                                      rng=np.random.default_rng(0))
    np.testing.assert_array_equal(cand[picks], naive_kcenter(x, cand, cent, 60))
    # the reported distance is the true one (float64, direct differences)
    x64 = x.astype(np.float64)
    true = [np.sqrt(((x64[np.r_[cent, cand[picks[:t]]]] - x64[cand[p]]) ** 2).sum(1)).min()
            for t, p in enumerate(picks)]
    np.testing.assert_allclose(scores, true, rtol=1e-3)
    cold = get_strategy("kcenter").select(context(pool, 60, seed=5))
    first = int(context(pool, 60, seed=5).rng().integers(len(x)))
    np.testing.assert_array_equal(cold.indices, naive_kcenter(x, np.arange(len(x)), [], 60, first=first))


def test_coreset_is_exact_in_a_narrow_feature_space():
    """An l2-normalised head on offset data: features of norm 1 within ~1e-3 of each other."""
    x, y = mixture(600, 8, seed=2)
    x = x + 1000.0
    pool = MemoryPool(x, shard_rows=128)
    labeled = np.arange(0, 600, 12)
    head = head_for(x, y, labeled, normalize="l2")
    with torch.no_grad():
        feats = head.net.features(torch.from_numpy(x)).numpy()
    ctx = context(pool, 40, labeled, head=head)
    sel = get_strategy("coreset").select(ctx)
    np.testing.assert_array_equal(sel.indices, naive_kcenter(feats, np.flatnonzero(~ctx.excluded), labeled, 40))


@pytest.mark.parametrize("offset", [0.0, 1000.0])
@pytest.mark.parametrize("seed", range(6))
def test_greedy_radius_within_twice_optimal(seed, offset):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(11, 2)) * 0.01 + offset).astype(np.float32)
    pool = MemoryPool(x)
    for k in (2, 3, 4):
        table = RowTable(pool, np.arange(11))
        picks, _, _ = kcenter_greedy(table, k, rng=np.random.default_rng(seed))
        radius = np.sqrt(((x[:, None, :] - x[None, picks, :]) ** 2).sum(-1)).min(1).max()
        assert radius <= 2 * exact_kcenter_radius(x.astype(np.float64), k) + 1e-6


def test_duplicates_and_full_budget_give_distinct_rows():
    x = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # 12 rows, 3 distinct points
    pool = MemoryPool(x)
    sel = get_strategy("kcenter").select(context(pool, 12, seed=0))
    assert sorted(sel.indices.tolist()) == list(range(12))
    assert np.all(sel.scores[3:] == 0)  # after the 3 distinct points every row is covered


def test_bank_overflow_keeps_exact_picks(monkeypatch):
    """A tiny centre bank forces the full-refresh path; picks must not change."""
    x, _ = mixture(500, 16, seed=4)
    pool = MemoryPool(x, shard_rows=100)
    cand = np.arange(20, 500)
    want = naive_kcenter(x, cand, np.arange(20), 60)
    table = RowTable(pool, cand, working_memory=6_000)
    cent = RowTable(pool, np.arange(20), working_memory=6_000)
    picks, _, _ = kcenter_greedy(table, 60, centres=cent, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(cand[picks], want)
