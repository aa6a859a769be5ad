"""Issue 20 correctness audit: exact candidate counts, HAC cuts at tied heights, the head's CV search,
block-size-independent batches. Each test fails on the code before its fix (or on the named mutation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alq.strategies import Context


# -- item 23: cluster-margin's auto k_m in integer arithmetic ------------------------------------------------

def _reference_k_m(n_unlabeled: int, b: int) -> int:
    """k_m = ceil(clip(0.1 n / b, 1.25, 10) x b) = clip(ceil(n / 10), ceil(5 b / 4), 10 b), at most n; integers only."""
    return min(n_unlabeled, max(-(-5 * b // 4), min(10 * b, -(-n_unlabeled // 10))))


def test_auto_candidate_count_is_exact_over_many_pool_and_batch_sizes():
    from alq.strategies.cluster_margin import candidates_count

    rng = np.random.default_rng(23)
    pairs = [(80_760, 1000)] + [(int(n), int(b)) for n, b in zip(rng.integers(1_000, 2_000_000, 1400),
                                                                  rng.integers(1, 50_000, 1400)) if b <= n]
    wrong = [(n, b) for n, b in pairs if candidates_count("auto", b, n) != _reference_k_m(n, b)]
    assert not wrong, wrong[:5]
    assert candidates_count("auto", 1000, 80_760) == 8076  # floats: 8076.000000000001 -> 8077
    # a given ratio is read as its decimal value: 1.1 x 1000 = 1100, not 1101
    assert candidates_count("1.1", 1000, 10**6) == candidates_count(1.1, 1000, 10**6) == 1100
    assert candidates_count(3, 10, 25) == 25  # never more than the unlabeled rows


def test_cluster_margin_strategy_takes_the_exact_candidate_count():
    from alq.model.head import Head, HeadNet
    from alq.store import MemoryPool
    from alq.strategies.cluster_margin import ClusterMarginStrategy

    n, b = 80_760, 1000
    x = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
    net = HeadNet(2, 3)
    head = Head(nets=[net], classes=[0, 1, 2], multilabel=False, meta={})
    ctx = Context(pool=MemoryPool(x, shard_rows=20_000), budget=b, seed=0, excluded=np.zeros(n, bool),
                  labeled=np.empty(0, np.int64), head=head, clusters=np.arange(n, dtype=np.int64) // 7)
    sel = ClusterMarginStrategy().select(ctx)
    assert sel.summary["candidates"] == 8076


# -- item 22: exact HAC --n-clusters never splits rows joined at the same height -----------------------------

def test_exact_hac_n_clusters_matches_scipy_maxclust_when_heights_tie():
    from scipy.cluster.hierarchy import fcluster, linkage

    from alq.cluster.exact import exact_average_linkage
    from alq.cluster.linkage import canonical_labels

    distinct = np.random.default_rng(22).normal(size=(60, 5))
    x = np.repeat(distinct, 3, axis=0)[np.random.default_rng(1).permutation(180)]  # 60 distinct rows x 3
    den = exact_average_linkage(x)
    z = linkage(x, "average")
    for k in (90, 61, 60, 59, 30, 150, 179, 180, 500):
        ref = canonical_labels(fcluster(z, k, criterion="maxclust"))
        np.testing.assert_array_equal(den.cut(n_clusters=k), ref, err_msg=f"n_clusters={k}")
    assert len(np.unique(den.cut(n_clusters=90))) == 60  # scipy: copies of a row are never split


@pytest.mark.parametrize("seed", range(8))
def test_dendrogram_maxclust_cut_matches_scipy_on_integer_heights(seed):
    """Random complete dendrograms with many tied (integer) heights: cut(n_clusters=K) == fcluster maxclust."""
    from scipy.cluster.hierarchy import fcluster

    from alq.cluster.linkage import Dendrogram, canonical_labels

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    roots = list(range(n))
    reps_a, reps_b = [], []
    heights = np.sort(rng.integers(0, 4, size=n - 1)).astype(np.float64)
    for _ in range(n - 1):
        i, j = rng.choice(len(roots), 2, replace=False)
        reps_a.append(roots[i])
        reps_b.append(roots[j])
        roots = [r for r in roots if r != reps_b[-1]]
    den = Dendrogram.from_rep_merges(n, np.array(reps_a), np.array(reps_b), heights)
    z = den.to_scipy()
    for k in range(1, n + 2):
        ref = canonical_labels(fcluster(z, k, criterion="maxclust"))
        np.testing.assert_array_equal(den.cut(n_clusters=k), ref, err_msg=f"n={n} n_clusters={k}")
