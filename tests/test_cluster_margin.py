"""cluster-margin: round-robin == brute-force reference, candidates == lowest margins, CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alq.cluster.api import ClusterOptions, cluster_pool
from alq.cluster.store import load_clusters
from alq.errors import BadInputError
from alq.model.head import Head, HeadNet
from alq.select import SelectRequest, run_select
from alq.store import PoolWriter, open_pool
from alq.strategies.cluster_margin import round_robin
from tests.conftest import gaussian_pool


def reference_round_robin(rows, clusters, budget, keys, cluster_keys=None):
    """The paper's loop, literally: clusters by (size in M, random tie key); each visit takes one random member.

    "Random member" = the remaining member with the smallest key (ties by row), the keys being
    the same uniform draws the strategy uses; ``cluster_keys[j]`` is the tie key of the j-th
    smallest cluster id (None: ties by id).
    """
    members: dict[int, list[int]] = {}
    for i, c in enumerate(clusters.tolist()):
        members.setdefault(c, []).append(i)
    ids = sorted(members)
    tie = {c: (cluster_keys[j] if cluster_keys is not None else 0.0) for j, c in enumerate(ids)}
    order = sorted(members, key=lambda c: (len(members[c]), tie[c], c))
    taken: list[int] = []
    while len(taken) < budget:
        for c in list(order):
            if len(taken) == budget:
                break
            j = min(members[c], key=lambda i: (keys[i], rows[i]))
            members[c].remove(j)
            taken.append(j)
            if not members[c]:
                order.remove(c)
    return np.asarray(taken, dtype=np.int64)


@pytest.mark.parametrize("seed", range(6))
def test_round_robin_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 300))
    rows = np.sort(rng.choice(10_000, size=m, replace=False)).astype(np.int64)
    clusters = rng.integers(0, int(rng.integers(1, 40)), size=m).astype(np.int64)
    budget = int(rng.integers(1, m + 1))
    keys = np.random.default_rng([seed, 1]).random(m)
    ckeys = np.random.default_rng([seed, 2]).random(len(np.unique(clusters)))
    got, passes, n_clusters = round_robin(rows, clusters, budget, keys, ckeys)
    assert n_clusters == len(np.unique(clusters))
    np.testing.assert_array_equal(got, reference_round_robin(rows, clusters, budget, keys, ckeys))
    # without tie keys: ties by cluster id
    np.testing.assert_array_equal(round_robin(rows, clusters, budget, keys)[0],
                                  reference_round_robin(rows, clusters, budget, keys))
    assert (np.diff(passes) >= 0).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=80), st.integers(1, 80), st.integers(0, 2**31))
def test_first_picks_are_in_distinct_clusters(cluster_list, budget, seed):
    clusters = np.asarray(cluster_list, dtype=np.int64)
    budget = min(budget, len(clusters))
    rows = np.arange(len(clusters), dtype=np.int64)
    pick, _, _ = round_robin(rows, clusters, budget, np.random.default_rng(seed).random(len(clusters)))
    n_first = min(budget, len(np.unique(clusters)))
    assert len(np.unique(clusters[pick[:n_first]])) == n_first
    assert len(np.unique(pick)) == budget
    # and the first pass visits clusters smallest first
    sizes = np.bincount(clusters)
    first = clusters[pick[:n_first]]
    assert (np.diff(sizes[first]) >= 0).all()


def test_each_member_is_equally_likely():
    rows = np.arange(6, dtype=np.int64)
    clusters = np.array([0, 0, 0, 1, 1, 1])
    counts = np.zeros(6)
    for s in range(3000):
        pick, _, _ = round_robin(rows, clusters, 2, np.random.default_rng(s).random(6))
        counts[pick] += 1
    assert np.all(np.abs(counts / 3000 - 1 / 3) < 0.04)


# -- the strategy through alq.select -----------------------------------------------------------------------

def _head(dim, n_classes=4, *, multilabel=False, seed=0):
    torch.manual_seed(seed)
    net = HeadNet(dim, n_classes)
    return Head(nets=[net], classes=[f"c{i}" for i in range(n_classes)], multilabel=multilabel)


@pytest.fixture
def setup(tmp_path):
    x, y = gaussian_pool(900, d=8, c=5, seed=20, sep=2.0)
    w = PoolWriter(tmp_path / "pool", shard_rows=128, dtype="float32")
    w.add(x)
    w.close()
    pool = open_pool(tmp_path / "pool")
    cluster_pool(pool, tmp_path / "clusters", ClusterOptions(threshold=2.5))
    head = _head(8)
    head.save(tmp_path / "head.pt")
    import pyarrow as pa

    ids = np.arange(0, 900, 9)
    pq.write_table(pa.table({"id": ids, "label": [f"c{y[i] % 4}" for i in ids]}), tmp_path / "labels.parquet")
    return tmp_path, pool, x, head


def _margins(head, x):
    p = head.probs(torch.from_numpy(x)).double()
    if head.multilabel:
        return (2 * p - 1).abs().min(1).values.numpy()
    top = torch.topk(p, 2, dim=1).values
    return (top[:, 0] - top[:, 1]).numpy()


@pytest.mark.parametrize("ratio", [1.0, 1.25, 3.0, 10.0])
def test_selection_is_round_robin_over_lowest_margin_candidates(setup, ratio):
    tmp, pool, x, head = setup
    req = SelectRequest(pool=tmp / "pool", strategy="cluster-margin", budget=40, seed=3, head=tmp / "head.pt",
                        labels=tmp / "labels.parquet", clusters=tmp / "clusters", options={"candidates_ratio": ratio})
    table, summary = run_select(req, tmp / "sel.parquet")
    rows = table.column("row").to_numpy()
    labeled = np.arange(0, 900, 9)
    unl = np.setdiff1d(np.arange(900), labeled)
    m = _margins(head, x)
    k_m = min(len(unl), int(np.ceil(ratio * 40)))
    order = np.lexsort((unl, m[unl]))
    cand = np.sort(unl[order[:k_m]])
    assert np.isin(rows, cand).all() and not np.isin(rows, labeled).any()
    clusters = load_clusters(tmp / "clusters", pool)
    np.testing.assert_array_equal(table.column("cluster").to_numpy(), clusters[rows])
    np.testing.assert_allclose(table.column("score").to_numpy(), m[rows], rtol=1e-6, atol=1e-9)
    gen = np.random.default_rng([3, 0])
    keys = gen.random(len(cand))
    ckeys = gen.random(len(np.unique(clusters[cand])))
    want = cand[reference_round_robin(cand, clusters[cand], 40, keys, ckeys)]
    np.testing.assert_array_equal(rows, want)
    assert summary["candidates"] == k_m and summary["clusters_covered"] == len(np.unique(clusters[rows]))
    assert summary["candidate_clusters"] == len(np.unique(clusters[cand]))
    again, _ = run_select(req)
    assert again.column("row").to_numpy().tolist() == rows.tolist()  # same seed, same batch


def test_multilabel_mean_margin(setup):
    tmp, pool, x, _ = setup
    head = _head(8, 3, multilabel=True, seed=5)
    head.save(tmp / "ml.pt")
    req = SelectRequest(pool=tmp / "pool", strategy="cluster-margin", budget=25, head=tmp / "ml.pt",
                        clusters=tmp / "clusters", options={"candidates_ratio": 2, "aggregate": "mean"})
    table, summary = run_select(req)
    p = head.probs(torch.from_numpy(x)).double()
    m = (2 * p - 1).abs().mean(1).numpy()
    cand = np.lexsort((np.arange(900), m))[:50]
    assert np.isin(table.column("row").to_numpy(), cand).all()
    assert summary["candidates"] == 50


def test_bad_ratio_and_aggregate(setup):
    tmp, *_ = setup
    for opts, msg in (({"candidates_ratio": 0.5}, "candidates-ratio"), ({"aggregate": "max"}, "aggregate")):
        req = SelectRequest(pool=tmp / "pool", strategy="cluster-margin", budget=5, head=tmp / "head.pt",
                            clusters=tmp / "clusters", options=opts)
        with pytest.raises(BadInputError, match=msg):
            run_select(req)


# -- CLI ------------------------------------------------------------------------------------------------------

def test_cli_cluster_then_select_and_stale_refusal(setup, cli):
    tmp, pool, x, _ = setup
    code, out, err = cli("cluster", tmp / "pool", "--out", tmp / "c2", "--n-clusters", "7", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n_clusters"] == 7 and summary["method"] == "exact"
    code, out, err = cli("select", tmp / "pool", "--strategy", "cluster-margin", "--budget", "30",
                         "--head", tmp / "head.pt", "--clusters", tmp / "c2", "--out", tmp / "b.parquet", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["candidates"] == 90 and s["candidates_ratio"] == 3.0  # auto: 0.1 x 900 unlabeled / 30
    assert s["clusters_covered"] == s["candidate_clusters"] >= 3
    assert "cluster" in pq.read_schema(tmp / "b.parquet").names
    # append rows: select refuses, naming the command; --update fixes it
    w = PoolWriter(tmp / "pool", append=True)
    w.add(x[:50] + 0.01)
    w.close()
    before = (tmp / "b.parquet").read_bytes()
    code, out, err = cli("select", tmp / "pool", "--strategy", "cluster-margin", "--budget", "30",
                         "--head", tmp / "head.pt", "--clusters", tmp / "c2", "--out", tmp / "b.parquet")
    assert code == 2 and "Error:" in err and f"alq cluster {tmp / 'pool'} --update --out {tmp / 'c2'}" in err
    assert (tmp / "b.parquet").read_bytes() == before
    code, out, err = cli("cluster", tmp / "pool", "--out", tmp / "c2", "--update", "--json")
    assert code == 0, err
    assert json.loads(out)["rows_updated"] == 50
    code, out, err = cli("select", tmp / "pool", "--strategy", "cluster-margin", "--budget", "30",
                         "--head", tmp / "head.pt", "--clusters", tmp / "c2", "--out", tmp / "b2.parquet", "--json")
    assert code == 0, err


def test_cli_cluster_help_and_bad_args(setup, cli):
    tmp, *_ = setup
    code, out, _ = cli("cluster", "--help")
    assert code == 0 and "Example:" in out and "--update" in out
    code, _, err = cli("cluster", tmp / "pool", "--out", tmp / "c3", "--threshold", "1", "--n-clusters", "3")
    assert code == 2 and "not both" in err and not (tmp / "c3").exists()
    code, _, err = cli("cluster", tmp / "pool", "--out", tmp / "c3", "--method", "magic")
    assert code == 2 and "--method" in err
    code, _, err = cli("cluster", tmp / "nope", "--out", tmp / "c3")
    assert code == 2 and "nope" in err


@pytest.mark.parametrize("k", [1, 5, 37, 200])
def test_lowest_k_is_exact_with_ties(k):
    from alq.strategies.cluster_margin import LowestK

    rng = np.random.default_rng(k)
    scores = rng.integers(0, 6, size=500).astype(np.float64)  # many ties
    rows = np.arange(500, dtype=np.int64)
    top = LowestK(k)
    for lo in range(0, 500, 23):
        top.push(scores[lo:lo + 23], rows[lo:lo + 23])
    got_rows, got_scores = top.result()
    want = np.sort(np.lexsort((rows, scores))[:k])
    np.testing.assert_array_equal(got_rows, want)
    np.testing.assert_array_equal(got_scores, scores[want])


# -- seeded ties: no pool-row-order bias (issue: the batch ignored --seed at fine cuts) -------------------------

def _ctx(x, clusters, seed, budget, head, ratio="auto"):
    from alq.store import MemoryPool
    from alq.strategies import Context

    n = len(x)
    return Context(pool=MemoryPool(x, shard_rows=250), budget=budget, seed=seed, excluded=np.zeros(n, dtype=bool),
                   labeled=np.empty(0, dtype=np.int64), head=head, clusters=clusters,
                   options={"candidates_ratio": ratio})


def _select(ctx):
    from alq.strategies import get_strategy, load_all

    load_all()
    return get_strategy("cluster-margin").select(ctx)


def test_seed_changes_the_batch_when_clusters_tie_and_same_seed_gives_same_bytes():
    x, _ = gaussian_pool(2000, d=8, c=4, seed=3, sep=1.0)
    head = _head(8, seed=1)
    clusters = np.arange(2000, dtype=np.int64)  # all singletons: every cluster ties at size 1
    batches = [_select(_ctx(x, clusters, s, 50, head, ratio=5)).indices for s in (0, 1, 2)]
    assert len({tuple(b.tolist()) for b in batches}) == 3
    again = _select(_ctx(x, clusters, 1, 50, head, ratio=5)).indices
    assert again.tobytes() == batches[1].tobytes()


def test_singleton_picks_spread_over_the_pool_like_the_candidates():
    """Clusters of equal size are visited in random order, so the picks' pool rows follow the candidates'
    distribution (before: the lowest cluster ids, i.e. the first rows of the pool, went first)."""
    x, _ = gaussian_pool(6000, d=8, c=4, seed=4, sep=1.0)
    head = _head(8, seed=2)
    clusters = np.arange(6000, dtype=np.int64)
    ctx = _ctx(x, clusters, 7, 300, head, ratio=10)
    sel = _select(ctx)
    m = _margins(head, x)
    cand = np.sort(np.lexsort((np.arange(6000), m))[:3000])
    assert np.isin(sel.indices, cand).all()
    qs = [0.1, 0.25, 0.5, 0.75, 0.9]
    spread = np.quantile(cand, qs)
    picked = np.quantile(sel.indices, qs)
    # a uniform subsample of 300 of the candidates: quantiles within ~6% of the pool of the candidates'
    assert np.all(np.abs(picked - spread) < 0.06 * 6000), (picked, spread)
    assert np.mean(sel.indices < 2000) < 0.45  # the first third of the pool is not favoured


def test_auto_candidates_ratio_scales_with_the_batch_to_pool_ratio():
    from alq.strategies.cluster_margin import candidates_ratio

    assert candidates_ratio("auto", 100_000, 10_000_000) == 10.0  # the paper's large-scale setting
    assert candidates_ratio(None, 2000, 59_000) == pytest.approx(2.95)
    assert candidates_ratio("auto", 200, 59_000) == 10.0
    assert candidates_ratio("auto", 5000, 20_000) == 1.25
    assert candidates_ratio("3", 10, 10) == 3.0
    with pytest.raises(BadInputError, match="must be 'auto' or a number"):
        candidates_ratio("lots", 10, 100)
    with pytest.raises(BadInputError, match=">= 1"):
        candidates_ratio(0.5, 10, 100)
