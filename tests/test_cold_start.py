"""Cold start (no head, no labels): facility-location, typiclust, kcenter, and `alq select` with none."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _diversity import context, mixture, pools
from test_fass import cosine, naive_greedy

from alq.diversity.knn import kmeans
from alq.store import MemoryPool
from alq.strategies import get_strategy
from alq.strategies.typiclust import assign_rows


@pytest.mark.parametrize("labeled", [(), (0, 50, 99)])
def test_facility_location_equals_naive(tmp_path, labeled):
    x, _ = mixture(160, 6, c=4, seed=1)
    for pool in pools(x, tmp_path).values():
        ctx = context(pool, 10, labeled)
        sel = get_strategy("facility-location").select(ctx)
        cand = np.flatnonzero(~ctx.excluded)
        cover0 = cosine(x[cand], x[list(labeled)]).max(1) if labeled else None
        np.testing.assert_array_equal(sel.indices, cand[naive_greedy(cosine(x[cand], x[cand]), 10, cover0)])


def naive_typiclust(x, labels, excluded, budget, k):
    """Brute force: typicality from all pairwise distances inside each cluster, round-robin by the rules."""
    n_c = labels.max() + 1
    size = np.bincount(labels, minlength=n_c)
    covered = np.bincount(labels[excluded], minlength=n_c) > 0
    clusters = sorted(range(n_c), key=lambda c: (covered[c], -size[c], c))
    queues = {}
    for c in clusters:
        mem = np.flatnonzero(labels == c)
        d = np.sqrt(((x[mem, None, :].astype(np.float64) - x[None, mem, :]) ** 2).sum(-1))
        kk = min(k, len(mem) - 1)
        typ = np.zeros(len(mem)) if kk < 1 else 1 / np.sort(d, axis=1)[:, 1:kk + 1].mean(1)
        order = sorted(range(len(mem)), key=lambda i: (-typ[i], mem[i]))
        queues[c] = [mem[i] for i in order if not excluded[mem[i]]]
    out = []
    while len(out) < budget:
        for c in clusters:
            if queues[c] and len(out) < budget:
                out.append(queues[c].pop(0))
    return np.array(out)


@pytest.mark.parametrize("labeled", [(), (3, 4, 5, 200)])
def test_typiclust_equals_naive(labeled):
    x, _ = mixture(300, 5, c=6, sep=4.0, seed=2)
    pool = MemoryPool(x, shard_rows=64)
    budget = 8
    ctx = context(pool, budget, labeled, seed=3, knn=5)
    sel = get_strategy("typiclust").select(ctx)
    # the same seeded faiss k-means the strategy runs, then everything else by brute force
    n_clusters = budget + len(labeled)
    fit = np.sort(ctx.rng(5).choice(300, min(300, 256 * n_clusters), replace=False))
    centroids = kmeans(x[fit], n_clusters, seed=3)
    labels = assign_rows(pool, 0, 300, centroids).astype(np.int64)
    brute = np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(labels, brute)
    np.testing.assert_array_equal(sel.indices, naive_typiclust(x, labels, ctx.excluded, budget, 5))
    np.testing.assert_array_equal(sel.columns["cluster"], labels[sel.indices])
    if not labeled:
        assert len(np.unique(sel.columns["cluster"])) == budget  # one row per cluster


def select_argv(*args):
    """``select ARGS`` (typer collapses a one-command app to its root: true on a branch with only select)."""
    from alq.cli import load_commands

    return args if len(load_commands().registered_commands) == 1 else ("select", *args)


def test_cold_start_strategies_run_through_the_cli(cli, small_pool, tmp_path):
    path, _, _ = small_pool
    for name in ("kcenter", "facility-location", "typiclust", "random"):
        out = tmp_path / f"{name}.parquet"
        code, stdout, err = cli(*select_argv(path, "--strategy", name, "--budget", "12", "--out", out, "--json",
                                             "--seed", "4"))
        assert code == 0, err
        summary = json.loads(stdout)
        assert summary["selected"] == 12 and out.exists()
    code, _, err = cli(*select_argv(path, "--strategy", "coreset", "--budget", "5", "--out", path.parent / "c.parquet"))
    assert code == 2 and "needs a head" in err and "kcenter" in err and "typiclust" in err


def test_select_help_lists_every_diversity_strategy(cli):
    code, out, _ = cli(*select_argv("--help"))
    assert code == 0
    for name in ("coreset", "badge", "partitioned-coreset", "partitioned-badge", "fass", "bald", "kcenter",
                 "facility-location", "typiclust"):
        assert name in out


def test_typicality_many_equals_one_at_a_time():
    from alq.strategies.typiclust import typicality, typicality_many

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((n, 7)).astype(np.float32) for n in (1, 2, 3, 5, 8, 9, 17, 33, 64, 65, 100, 3)]
    xs.append(np.repeat(xs[5][:2], 3, axis=0))  # exact duplicates: distance 0 neighbours
    for k in (1, 3, 20):
        for x, t in zip(xs, typicality_many(xs, k)):
            np.testing.assert_allclose(t, typicality(x, k), rtol=1e-9)
            # and the definition, brute force
            d = np.sqrt(((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1))
            kk = min(k, len(x) - 1)
            want = np.zeros(len(x)) if kk < 1 else 1 / np.maximum(np.sort(d, axis=1)[:, 1:kk + 1].mean(1), 1e-12)
            np.testing.assert_allclose(t, want, rtol=1e-6)


def test_split_clusters_is_proportional_and_feasible():
    from alq.diversity.hkmeans import split_clusters

    rng = np.random.default_rng(1)
    for _ in range(200):
        rows = rng.integers(1, 50, size=rng.integers(1, 12))
        k = int(rng.integers(len(rows), rows.sum() + 1))
        alloc = split_clusters(rows, k)
        assert alloc.sum() == k and (alloc >= 1).all() and (alloc <= rows).all()
        assert np.abs(alloc - rows * k / rows.sum()).max() < 1 + 1e-9 or (alloc == 1).any() or (alloc == rows).any()


def test_two_level_kmeans_assigns_within_the_nearest_cell():
    from alq.diversity.hkmeans import two_level_kmeans

    x, _ = mixture(2000, 8, c=10, seed=4)
    model = two_level_kmeans(x, 150, seed=0)
    assert model.n_clusters == 150 and len(model.coarse) <= 13
    lab = model.assign(x)
    cell = np.argmin(((x[:, None, :] - model.coarse[None]) ** 2).sum(-1), axis=1)
    for i in range(0, 2000, 97):  # brute force: nearest fine centroid among the nearest cell's
        lo, hi = model.offsets[cell[i]], model.offsets[cell[i] + 1]
        assert lab[i] == lo + np.argmin(((model.fine[lo:hi] - x[i]) ** 2).sum(-1))
    assert len(np.unique(lab)) > 120  # the fine centroids are used, not collapsed


def test_typiclust_two_level_equals_naive_on_its_clusters():
    from alq.strategies.typiclust import assign_rows

    x, _ = mixture(600, 5, c=6, sep=4.0, seed=2)
    pool = MemoryPool(x, shard_rows=128)
    ctx = context(pool, 40, (), seed=3, knn=5, kmeans="two-level")
    sel = get_strategy("typiclust").select(ctx)
    assert sel.summary["typiclust"]["kmeans"] == "two-level"
    from alq.diversity.hkmeans import two_level_kmeans

    fit = np.sort(ctx.rng(5).choice(600, 600, replace=False))
    labels = assign_rows(pool, 0, 600, two_level_kmeans(x[fit], 40, seed=3)).astype(np.int64)
    np.testing.assert_array_equal(sel.indices, naive_typiclust(x, labels, ctx.excluded, 40, 5))
    assert len(np.unique(labels[sel.indices])) == 40


def test_typiclust_kmeans_option_is_checked():
    x, _ = mixture(100, 4, c=3, seed=0)
    ctx = context(MemoryPool(x), 5, (), kmeans="fast")
    with pytest.raises(Exception, match="kmeans"):
        get_strategy("typiclust").select(ctx)
