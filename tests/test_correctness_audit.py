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


# -- item 24: the lambda <-> C equivalence, per head kind ----------------------------------------------------

@pytest.mark.parametrize("kind", ["two-class", "multi-class", "multi-label"])
def test_c_equivalent_reproduces_the_head_in_sklearn(kind):
    """LogisticRegression(C=c_equivalent) on the same rows is the same model as the head at weight_decay."""
    from sklearn.linear_model import LogisticRegression

    from alq.model.cv import sklearn_c
    from alq.model.train import TrainOptions, train_head
    from tests.conftest import gaussian_pool

    c = {"two-class": 2, "multi-class": 4, "multi-label": 3}[kind]
    x, y = gaussian_pool(300, d=6, c=c, seed=24, sep=0.8)
    lam = 3e-2
    opts = TrainOptions(weight_decay=lam, normalize=None, tol=1e-7, max_iter=2000)
    x64 = x.astype(np.float64)
    if kind == "multi-label":
        targets = np.zeros((len(y), c), np.float32)
        targets[np.arange(len(y)), y] = 1
        targets[:, 2] = np.maximum(targets[:, 2], (x[:, 0] > 0))  # a second label on some rows
        head = train_head(x, targets, list(range(c)), multilabel=True, opts=opts)
        got = head.probs(torch.from_numpy(x)).numpy()
        want = np.column_stack([LogisticRegression(C=sklearn_c(lam, len(x), c, multilabel=True), tol=1e-10,
                                                   max_iter=10_000).fit(x64, targets[:, j]).predict_proba(x64)[:, 1]
                                for j in range(c)])
    else:
        head = train_head(x, y, list(range(c)), multilabel=False, opts=opts)
        got = head.probs(torch.from_numpy(x)).numpy()
        ref = LogisticRegression(C=sklearn_c(lam, len(x), c, multilabel=False), tol=1e-10, max_iter=10_000)
        want = ref.fit(x64, y).predict_proba(x64)
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert head.meta["metrics"]["c_equivalent"] == pytest.approx(sklearn_c(lam, len(x), c, multilabel=kind == "multi-label"))


def test_sklearn_c_factors():
    from alq.model.cv import sklearn_c

    assert sklearn_c(1e-2, 100, 2, multilabel=False) == pytest.approx(2.0)  # C = 2 / (lambda n)
    assert sklearn_c(1e-2, 100, 5, multilabel=False) == pytest.approx(1.0)  # C = 1 / (lambda n)
    assert sklearn_c(1e-2, 100, 5, multilabel=True) == pytest.approx(0.2)  # C = 1 / (lambda n C)


# -- item 25: the near-constant-column guard of the standardisation ------------------------------------------

def test_near_constant_columns_get_the_typical_scale_exactly():
    """scale_j = std_j where std_j > 1e-4 x rms(std), else rms(std): brute force on columns with stds far from 1,
    including an exactly constant column and a nearly constant one (nonzero std, 1e-6 of the typical)."""
    from alq.model.standardize import ColumnStats

    rng = np.random.default_rng(25)
    base = rng.normal(size=(500, 1))
    base = (base - base.mean()) / base.std()  # std exactly 1 (up to rounding)
    stds = np.array([3.0, 9.0, 0.0, 9.0e-6, 2.0e-3, 1.0])
    x = base * stds + np.arange(6) * 100.0
    mean, scale = ColumnStats.of(x).standardizer()
    col_std = x.std(axis=0)
    typical = np.sqrt(np.mean(col_std ** 2))  # rms of the column stds (~4.0 here, not 1, not their mean)
    want = np.array([s if s > 1e-4 * typical else typical for s in col_std])
    np.testing.assert_allclose(scale, want.astype(np.float32), rtol=1e-5)
    assert scale[2] == scale[3] == pytest.approx(typical, rel=1e-5) and typical > 3.5
    assert scale[4] == pytest.approx(2.0e-3, rel=1e-4)  # small but real variation keeps its own scale
    np.testing.assert_allclose(mean, x.mean(axis=0).astype(np.float32), rtol=1e-6)
    # a pool constant in every column: scale 1 (no division by zero)
    _, ones = ColumnStats.of(np.full((10, 3), 7.0)).standardizer()
    np.testing.assert_array_equal(ones, np.ones(3, np.float32))
