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
