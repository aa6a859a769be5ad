"""FASS and facility location: lazy greedy == naive greedy, dense and on the kNN graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _diversity import context, head_for, mixture, pools

from alq.diversity.facility import greedy_dense, greedy_sparse
from alq.diversity.knn import knn_graph
from alq.store import MemoryPool
from alq.strategies import get_strategy


def cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.clip(a @ b.T, 0, None)


def naive_greedy(sim, budget, cover0=None):
    """Plain greedy: every gain recomputed every step; ties to the smaller position."""
    n = len(sim)
    cover = np.zeros(n) if cover0 is None else np.asarray(cover0, np.float64).copy()
    picks = []
    for _ in range(budget):
        gains = np.maximum(sim - cover[:, None], 0).sum(0)  # gain of candidate j = column j
        gains[picks] = -1
        j = int(np.argmax(gains))
        picks.append(j)
        cover = np.maximum(cover, sim[:, j])
    return np.array(picks)


def sparse_as_dense(nbr, sim):
    n = len(nbr)
    s = np.zeros((n, n))
    for i in range(n):
        for j, v in zip(nbr[i], sim[i]):
            s[i, j] = max(s[i, j], v)
    return s


@pytest.mark.parametrize("seed", range(3))
def test_lazy_greedy_equals_naive(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 5))
    s = cosine(x, x).astype(np.float32)
    cover0 = rng.random(120) * 0.5 if seed else None
    picks, gains = greedy_dense(s, 25, cover0)
    np.testing.assert_array_equal(picks, naive_greedy(s.astype(np.float64), 25, cover0))
    assert np.all(np.diff(gains) <= 1e-9)  # submodular: gains never grow
    nbr, sim = knn_graph(x.astype(np.float32), 8, seed=seed)
    assert np.all(nbr[:, 0] == np.arange(120)) and np.allclose(sim[:, 0], 1)
    sp, _ = greedy_sparse(nbr, sim, 25, cover0)
    np.testing.assert_array_equal(sp, naive_greedy(sparse_as_dense(nbr, sim), 25, cover0))


def fass_reference(head, x, excluded, budget, multiple, knn=None):
    with torch.no_grad():
        p = torch.softmax(head.net(torch.from_numpy(x)), 1).double().numpy()
        feats = head.net.features(torch.from_numpy(x)).numpy()
    ent = -(p * np.log(np.clip(p, 1e-12, None))).sum(1)
    ent[excluded] = -np.inf
    m = min(int(multiple * budget), int((~excluded).sum()))
    kept = np.sort(np.lexsort((np.arange(len(x)), -ent))[:m])
    cover0 = cosine(feats[kept], feats[excluded]).max(1) if excluded.any() else None
    if knn is None:
        sim = cosine(feats[kept], feats[kept])
    else:
        sim = sparse_as_dense(*knn_graph(feats[kept], knn))
    return kept[naive_greedy(sim, budget, cover0)]


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_fass_dense_equals_reference(tmp_path, where):
    x, y = mixture(400, 8, c=3, sep=1.0, seed=6)
    pool = pools(x, tmp_path)[where]
    labeled = np.arange(0, 400, 10)
    head = head_for(x, y, labeled, hidden=12)
    ctx = context(pool, 12, labeled, pending=[7], head=head, filter_multiple=4)
    sel = get_strategy("fass").select(ctx)
    np.testing.assert_array_equal(sel.indices, fass_reference(head, x, ctx.excluded, 12, 4))
    assert sel.summary["fass"]["similarity"] == "dense cosine"


def test_fass_knn_graph_path_equals_reference(monkeypatch):
    import alq.strategies.facility_location as fl

    monkeypatch.setattr(fl, "DENSE_MAX_ROWS", 50)  # 90 candidates: above the dense limit -> kNN graph
    monkeypatch.setenv("ALQ_WORKING_MEMORY", "0.02")
    x, y = mixture(300, 8, c=3, sep=1.0, seed=7)
    labeled = np.arange(0, 300, 10)
    head = head_for(x, y, labeled)
    ctx = context(MemoryPool(x, shard_rows=40), 15, labeled, head=head, filter_multiple=6, knn=6)
    sel = get_strategy("fass").select(ctx)
    assert sel.summary["fass"]["similarity"].startswith("cosine kNN graph")
    np.testing.assert_array_equal(sel.indices, fass_reference(head, x, ctx.excluded, 15, 6, knn=6))


def test_fass_dense_rows_on_demand_when_the_matrix_does_not_fit(monkeypatch):
    """A working memory too small for the (R b)^2 matrix keeps the dense algorithm (rows computed tile by
    tile): the memory setting never changes the batch."""
    monkeypatch.setenv("ALQ_WORKING_MEMORY", "0.02")  # 20 KB: 90^2 floats do not fit
    x, y = mixture(300, 8, c=3, sep=1.0, seed=7)
    labeled = np.arange(0, 300, 10)
    head = head_for(x, y, labeled, hidden=12)
    ctx = context(MemoryPool(x, shard_rows=40), 15, labeled, head=head, filter_multiple=6)
    sel = get_strategy("fass").select(ctx)
    assert sel.summary["fass"]["similarity"] == "dense cosine"
    np.testing.assert_array_equal(sel.indices, fass_reference(head, x, ctx.excluded, 15, 6))
