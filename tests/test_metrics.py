"""Evaluation measures against hand-computed tables, brute force, scikit-learn and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alq.metrics import (
    accuracy_metrics,
    average_precision,
    class_counts,
    class_entropy,
    empty_classes,
    imbalance_ratio,
    multilabel_metrics,
)
from alq.report.analysis import Series, labeling_efficiency, labels_saved, labels_to_reach, penalty_matrix
from alq.report.stats import betainc, mean_ci, paired_ttest, t_cdf, t_ppf, t_two_sided_p

scipy_stats = pytest.importorskip("scipy.stats")
scipy_special = pytest.importorskip("scipy.special")


# -- class balance ----------------------------------------------------------------------------------
@pytest.mark.parametrize("counts, ratio, empty, entropy", [
    ([10, 10, 10, 10], 1.0, 0, 1.0),
    ([40, 20, 10, 5], 8.0, 0, None),
    ([7, 0, 3], math.inf, 1, None),
    ([5, 0, 0, 0], math.inf, 3, 0.0),
    ([1, 3], 3.0, 0, None),
])
def test_imbalance_ratio_and_entropy_on_constructed_counts(counts, ratio, empty, entropy):
    assert imbalance_ratio(counts) == ratio
    assert empty_classes(counts) == empty
    c = np.array(counts, dtype=float)
    p = c[c > 0] / c.sum()
    want = -(p * np.log(p)).sum() / math.log(len(counts))  # by hand: H(p) / log C
    assert class_entropy(counts) == pytest.approx(want, abs=1e-12)
    if entropy is not None:
        assert class_entropy(counts) == pytest.approx(entropy, abs=1e-12)


def test_entropy_hand_values():
    # [1, 3]: H = -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.5623351446; / ln 2 = 0.8112781245
    assert class_entropy([1, 3]) == pytest.approx(0.8112781244591328, abs=1e-12)
    assert math.isnan(class_entropy([0, 0, 0]))
    assert math.isnan(imbalance_ratio([0, 0]))


def test_class_counts_multiclass_and_multilabel():
    assert class_counts(np.array([0, 2, 2, 1, 2]), 4).tolist() == [1, 1, 3, 0]
    mh = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0]])
    assert class_counts(mh, 3).tolist() == [2, 1, 1]


# -- accuracy ---------------------------------------------------------------------------------------
def test_accuracy_metrics_against_brute_force():
    rng = np.random.default_rng(3)
    n, c = 300, 7
    z = rng.normal(size=(n, c))
    y = rng.integers(0, c - 1, size=n)  # class c-1 has no test row
    got = accuracy_metrics(z, y)
    pred = [int(np.argmax(r)) for r in z]
    assert got["top1"] == pytest.approx(np.mean([p == t for p, t in zip(pred, y)]))
    top5 = np.mean([t in np.argsort(-r)[:5] for r, t in zip(z, y)])
    assert got["top5"] == pytest.approx(top5)
    per = []
    for k in range(c):
        rows = [i for i in range(n) if y[i] == k]
        per.append(np.mean([pred[i] == k for i in rows]) if rows else math.nan)
    np.testing.assert_allclose(got["per_class_accuracy"], per, equal_nan=True)
    assert math.isnan(got["per_class_accuracy"][-1])
    assert got["macro_accuracy"] == pytest.approx(np.nanmean(per))


def test_top5_absent_below_five_classes():
    z = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    got = accuracy_metrics(z, np.array([1, 2]))
    assert got["top5"] is None
    assert got["top1"] == 0.5
    assert got["per_class_accuracy"][0] != got["per_class_accuracy"][0]  # nan: class 0 has no test row
    assert got["macro_accuracy"] == 0.5  # classes 1 (1/1) and 2 (0/1)


def test_average_precision_matches_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(2, 60))
        s = np.round(rng.normal(size=n), 1)  # rounding makes ties
        t = rng.random(n) < 0.3
        if not t.any():
            t[0] = True
        assert average_precision(s, t) == pytest.approx(metrics.average_precision_score(t, s), abs=1e-12), trial
    assert math.isnan(average_precision([0.3, 0.2], [0, 0]))
    # hand: scores 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = 1/2 (1/1 + 2/3) = 5/6
    assert average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(5 / 6)


def test_multilabel_metrics_against_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    z = rng.normal(size=(80, 6))
    y = (rng.random((80, 6)) < 0.3).astype(int)
    y[:, 5] = 0  # a class with no positive is left out of the mAP
    got = multilabel_metrics(z, y)
    aps = [metrics.average_precision_score(y[:, k], z[:, k]) for k in range(5)]
    assert got["map"] == pytest.approx(np.mean(aps), abs=1e-12)
    assert got["pooled_ap"] == pytest.approx(metrics.average_precision_score(y.ravel(), z.ravel()), abs=1e-12)
    assert got["top1"] == pytest.approx(np.mean([y[i, np.argmax(z[i])] for i in range(80)]))
    np.testing.assert_allclose(got["per_class_accuracy"], ((z > 0) == (y > 0)).mean(axis=0))


# -- Student t --------------------------------------------------------------------------------------
def test_betainc_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b, x = rng.uniform(0.05, 60), rng.uniform(0.05, 60), rng.uniform()
        assert betainc(a, b, x) == pytest.approx(scipy_special.betainc(a, b, x), abs=1e-12)
    assert betainc(2.0, 3.0, 0.0) == 0.0 and betainc(2.0, 3.0, 1.0) == 1.0


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 29, 200])
def test_t_distribution_matches_scipy(df):
    for t in (-40.0, -2.5, -0.3, 0.0, 0.7, 2.1, 8.0):
        assert t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-12)
        assert t_two_sided_p(t, df) == pytest.approx(2 * scipy_stats.t.sf(abs(t), df), abs=1e-12)
    for q in (0.005, 0.025, 0.4, 0.975, 0.995):
        assert t_ppf(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9)


def test_paired_ttest_matches_scipy():
    rng = np.random.default_rng(5)
    for n in (2, 3, 5, 10):
        for _ in range(20):
            a = rng.normal(size=n)
            b = a + rng.normal(0.3, 0.5, size=n)
            t, p, df = paired_ttest(a, b)
            ref = scipy_stats.ttest_rel(a, b)
            assert t == pytest.approx(ref.statistic, rel=1e-10)
            assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
            assert df == n - 1
    # constant difference: scipy says t = inf, p = 0; no difference at all: nan
    t, p, _ = paired_ttest([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert math.isinf(t) and t > 0 and p == 0.0
    t, p, _ = paired_ttest([1.0, 2.0], [1.0, 2.0])
    assert math.isnan(t) and math.isnan(p)


def test_mean_ci_matches_scipy_interval():
    v = np.array([0.71, 0.74, 0.69, 0.77, 0.72])
    m, h = mean_ci(v)
    lo, hi = scipy_stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=scipy_stats.sem(v))
    assert m == pytest.approx(v.mean())
    assert m - h == pytest.approx(lo, rel=1e-10) and m + h == pytest.approx(hi, rel=1e-10)
    assert math.isnan(mean_ci([0.5])[1])


# -- labeling efficiency (hand-computed) ------------------------------------------------------------
N = np.array([10, 20, 30, 40])
RANDOM = np.array([0.5, 0.6, 0.7, 0.8])
STRAT = np.array([0.5, 0.7, 0.8, 0.85])


@pytest.mark.parametrize("curve, a, want", [
    (RANDOM, 0.65, 25.0),  # between (20, .6) and (30, .7)
    (STRAT, 0.65, 17.5),  # between (10, .5) and (20, .7): 10 + .15/.2 * 10
    (RANDOM, 0.5, 10.0),  # reached at the first round
    (RANDOM, 0.4, 10.0),  # below the first point: the fewest labels run
    (RANDOM, 0.8, 40.0),
    (RANDOM, 0.81, math.inf),  # never reached
    (np.array([0.5, 0.7, 0.65, 0.8]), 0.68, 32.0),  # the last upward crossing counts: 30 + .03/.15 * 10
    (np.array([0.5, 0.7, 0.65, 0.8]), 0.65, 17.5),  # touching a again (0.65 at 30) does not fall below it
    (np.array([0.5, 0.9, 0.6, 0.7]), 0.8, math.inf),  # up to 0.9 once, ends below: never stays there
])
def test_labels_to_reach_interpolates(curve, a, want):
    assert labels_to_reach(N, curve, a) == pytest.approx(want)


def test_labeling_efficiency_and_labels_saved_by_hand():
    assert labeling_efficiency(N, RANDOM, N, STRAT, 0.65) == pytest.approx(25.0 / 17.5)
    assert labeling_efficiency(N, RANDOM, N, STRAT, 0.8) == pytest.approx(40.0 / 30.0)
    assert math.isnan(labeling_efficiency(N, RANDOM, N, STRAT, 0.84))  # random never gets there
    a_star, nb, ns, saved = labels_saved(N, RANDOM, N, STRAT)
    assert (a_star, nb, ns) == (0.8, 40.0, 30.0)
    assert saved == pytest.approx(0.25)
    worse = np.array([0.5, 0.55, 0.6, 0.75])
    assert math.isnan(labels_saved(N, RANDOM, N, worse)[3])  # never reaches a*: not a number of labels
    slower = np.array([0.5, 0.55, 0.65, 0.8])
    assert labels_saved(N, RANDOM, N, slower)[3] == pytest.approx(0.0)
    lagging = np.array([0.5, 0.55, 0.6, 0.7, 0.8])
    n5 = np.array([10, 20, 30, 40, 50])
    assert labels_saved(N, RANDOM, n5, lagging)[3] == pytest.approx(1 - 50 / 40)  # needs 25% more labels


def _brute_labels_to_stay(n, curve, a, steps=200_001):
    """The fewest labels after which the piecewise-linear curve never drops below a, on a fine grid."""
    grid = np.linspace(n[0], n[-1], steps)
    y = np.interp(grid, n, curve)
    below = np.flatnonzero(y < a - 1e-12)
    if below.size == 0:
        return float(n[0])
    if below[-1] == steps - 1:
        return math.inf
    return float(grid[below[-1] + 1])


@pytest.mark.parametrize("seed", range(20))
def test_labels_to_reach_is_the_last_upward_crossing(seed):
    rng = np.random.default_rng(seed)
    n = np.cumsum(rng.integers(5, 50, size=6)).astype(np.float64)
    curve = np.clip(np.linspace(0.3, 0.8, 6) + rng.normal(0, 0.08, 6), 0, 1)
    for a in np.linspace(curve.min() - 0.01, curve.max() + 0.01, 13):
        want = _brute_labels_to_stay(n, curve, a)
        got = labels_to_reach(n, curve, a)
        if math.isinf(want):
            assert math.isinf(got)
        else:
            assert got == pytest.approx(want, abs=(n[-1] - n[0]) * 2e-5)


def test_labels_saved_is_measured_at_the_baselines_final_value_not_its_maximum():
    n = np.array([10, 20, 30, 40])
    base = np.array([0.5, 0.8, 0.7, 0.72])  # peaks at 0.8, ends at 0.72
    strat = np.array([0.5, 0.65, 0.74, 0.78])
    a_star, nb, ns, saved = labels_saved(n, base, n, strat)
    assert a_star == 0.72 and a_star != base.max()
    nb_want, ns_want = _brute_labels_to_stay(n, base, 0.72), _brute_labels_to_stay(n, strat, 0.72)
    assert nb == pytest.approx(nb_want, abs=1e-3) and ns == pytest.approx(ns_want, abs=1e-3)
    assert saved == pytest.approx(1 - ns_want / nb_want, abs=1e-4)
    # balanced-random-like: above the baseline early, ends 3.5 points below it: no labels saved
    noisy = np.array([0.5, 0.85, 0.74, 0.685])
    assert math.isnan(labels_saved(n, base, n, noisy)[3])


# -- penalty matrix against scipy.stats.ttest_rel ---------------------------------------------------
def _brute_penalty(vals: dict, alpha: float) -> np.ndarray:
    names = list(vals)
    k = next(iter(vals.values())).shape[1]
    mat = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j:
                continue
            for rnd in range(1, k):  # selection rounds: round 0 is the seed set every strategy shares
                res = scipy_stats.ttest_rel(vals[a][:, rnd], vals[b][:, rnd])
                if res.pvalue < alpha and res.statistic > 0:
                    mat[i, j] += 1 / (k - 1)
    return mat


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_penalty_matrix_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    repeats, rounds = 5, 6
    base = rng.normal(0.6, 0.05, size=(repeats, rounds))  # shared per-repeat effect: pairing matters
    vals = {"random": base + rng.normal(0, 0.01, size=base.shape),
            "margin": base + 0.015 + rng.normal(0, 0.01, size=base.shape),
            "badge": base + 0.03 * np.linspace(0, 1, rounds) + rng.normal(0, 0.01, size=base.shape),
            "same": base.copy()}
    vals["same"][:, 0] = vals["random"][:, 0]  # identical round: nan t, never significant
    series = {n: Series(rounds=np.arange(rounds), repeats=np.arange(repeats), values=v) for n, v in vals.items()}
    got = penalty_matrix(series, 0.05)
    want = _brute_penalty(vals, 0.05)
    np.testing.assert_allclose(got.matrix, want, atol=1e-12)
    assert got.matrix.sum() > 0  # the construction does produce significant rounds
    assert all(k == rounds - 1 for k in got.rounds.values())


def test_penalty_matrix_by_hand():
    # 3 repeats x 2 rounds. Round 0 identical; round 1: a beats b by 0.1 +- tiny noise (significant).
    a = np.array([[0.5, 0.80], [0.6, 0.91], [0.7, 1.00]])
    b = np.array([[0.5, 0.70], [0.6, 0.80], [0.7, 0.90]])
    s = {n: Series(rounds=np.arange(2), repeats=np.arange(3), values=v) for n, v in (("a", a), ("b", b))}
    pm = penalty_matrix(s)
    assert pm.matrix.tolist() == [[0.0, 1.0], [0.0, 0.0]]  # 1 of 1 selection round (round 0 is the seed set)
