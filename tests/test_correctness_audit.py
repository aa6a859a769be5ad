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


# -- item 5: the same batch whatever the block size and the sharding ----------------------------------------

def _duplicated_pool(seed=5, n=700, d=24, c=5):
    """A mixture where one boundary row is copied 40 times and 30 other rows 3 times each, at scattered rows."""
    from tests.conftest import gaussian_pool

    x, y = gaussian_pool(n, d=d, c=c, seed=seed, sep=1.2)
    rng = np.random.default_rng(seed)
    mid = (x[y == 0].mean(0) + x[y == 1].mean(0)) / 2  # near the 0/1 boundary: among the most uncertain
    spots = rng.choice(n, 40 + 90, replace=False)
    x[spots[:40]] = mid
    for j in range(30):
        x[spots[40 + 3 * j:43 + 3 * j]] = x[rng.integers(n)]
    return x, y


@pytest.fixture(scope="module")
def dup_world():
    from alq.model.train import TrainOptions, train_head

    x, y = _duplicated_pool()
    labeled = np.arange(0, len(x), 7)
    linear = train_head(x[labeled], y[labeled], list(range(5)), multilabel=False, opts=TrainOptions(weight_decay=1e-3))
    mlp = train_head(x[labeled], y[labeled], list(range(5)), multilabel=False,
                     opts=TrainOptions(weight_decay=1e-3, hidden=16, max_iter=100))
    ensemble = train_head(x[labeled], y[labeled], list(range(5)), multilabel=False,
                          opts=TrainOptions(weight_decay=1e-3, ensemble=2, bootstrap=True))
    dropout = train_head(x[labeled], y[labeled], list(range(5)), multilabel=False,
                         opts=TrainOptions(weight_decay=1e-3, hidden=16, dropout=0.2, epochs=20))
    return x, labeled, {"linear": linear, "mlp": mlp, "ensemble": ensemble, "dropout": dropout}


@pytest.mark.parametrize("strategy,kind", [(s, k) for s in ["margin", "entropy", "least-confidence", "mase", "base",
                                                            "fass", "facility-location", "coreset", "kcenter",
                                                            "badge", "typiclust", "partitioned-coreset",
                                                            "partitioned-badge", "cluster-margin"]
                                                  for k in ["linear", "mlp"]]
                         + [("bald", "ensemble"), ("bald", "dropout")])
def test_batch_does_not_depend_on_shard_rows_or_working_memory(dup_world, strategy, kind, monkeypatch):
    """Identical rows get bitwise identical scores wherever they sit in a block, so the batch (rows, order and
    scores) is the same for any --shard-rows and ALQ_WORKING_MEMORY, and copies of a row tie, by row."""
    from alq.store import MemoryPool
    from alq.strategies import get_strategy

    x, labeled, heads = dup_world
    head = heads[kind]
    excluded = np.zeros(len(x), bool)
    excluded[labeled] = True
    runs = []
    for shard_rows, memory in [(700, None), (70, None), (97, "0.05"), (333, "0.003"), (1, "0.01")]:
        if memory is None:
            monkeypatch.delenv("ALQ_WORKING_MEMORY", raising=False)
        else:
            monkeypatch.setenv("ALQ_WORKING_MEMORY", memory)
        ctx = Context(pool=MemoryPool(x, shard_rows=shard_rows), budget=25, seed=3, excluded=excluded.copy(),
                      labeled=labeled, head=head, device=torch.device("cpu"),
                      clusters=np.arange(len(x), dtype=np.int64) // 4)
        sel = get_strategy(strategy).select(ctx)
        runs.append((np.asarray(sel.indices), np.asarray(sel.scores)))
    for idx, sc in runs[1:]:
        np.testing.assert_array_equal(idx, runs[0][0])
        np.testing.assert_array_equal(sc, runs[0][1])


@pytest.mark.parametrize("strategy", ["margin", "entropy", "least-confidence", "mase"])
def test_copies_of_a_row_tie_exactly_and_go_in_row_order(dup_world, strategy):
    """The 40 copies of one boundary row: those in the batch have one score and are the unlabeled copies with
    the smallest rows, consecutive and in row order (the documented tie rule), for any shard size."""
    from alq.store import MemoryPool
    from alq.strategies import get_strategy

    x, labeled, heads = dup_world
    excluded = np.zeros(len(x), bool)
    excluded[labeled] = True
    uniq, counts = np.unique(x, axis=0, return_counts=True)
    copies = np.flatnonzero((x == uniq[np.argmax(counts)]).all(axis=1))
    assert len(copies) >= 40
    free = copies[~excluded[copies]]
    for shard_rows in (700, 61, 1):
        ctx = Context(pool=MemoryPool(x, shard_rows=shard_rows), budget=60, seed=0, excluded=excluded.copy(),
                      labeled=labeled, head=heads["linear"], device=torch.device("cpu"))
        sel = get_strategy(strategy).select(ctx)
        idx = np.asarray(sel.indices)
        at = np.flatnonzero(np.isin(idx, copies))
        assert len(at) > 0, "the boundary copies should be among the most uncertain rows"
        assert len(np.unique(np.asarray(sel.scores)[at])) == 1
        np.testing.assert_array_equal(idx[at], free[:len(at)])
        np.testing.assert_array_equal(at, np.arange(at[0], at[0] + len(at)))


# -- item 5: the tie rules of the streaming top-k and of k-center greedy -----------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_streaming_topk_ties_go_to_the_smaller_row_in_any_arrival_order(seed):
    """Scores with many ties, rows arriving in shuffled blocks (as partial results do): the k smallest by
    (score, row), exactly as a brute-force lexsort, also after merging two accumulators."""
    from alq.scoring.topk import StreamingTopK, smallest_k

    rng = np.random.default_rng(seed)
    n, k = 500, int(rng.integers(1, 120))
    rows = rng.permutation(10_000)[:n].astype(np.int64)
    scores = rng.integers(0, 6, size=n).astype(np.float64)  # ~80 rows per value: ties straddle the cut
    want = np.lexsort((rows, scores))[:k]
    got_i, got_s = smallest_k(scores, rows, k)
    np.testing.assert_array_equal(got_i, rows[want])
    np.testing.assert_array_equal(got_s, scores[want])
    cuts = np.sort(rng.choice(np.arange(1, n), 7, replace=False))
    parts = np.split(np.arange(n), cuts)
    a, b = StreamingTopK(k), StreamingTopK(k)
    for j, p in enumerate(parts):
        (a if j % 2 else b).push(scores[p], rows[p])
    got_i, got_s = a.merge(b).result()
    np.testing.assert_array_equal(got_i, rows[want])
    np.testing.assert_array_equal(got_s, scores[want])


def _reference_kcenter(x, centres, budget):
    """Plain k-center greedy in float64: the largest distance to the nearest centre, ties to the smaller position."""
    d = np.min(((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1), axis=1)
    picks = []
    for _ in range(budget):
        j = int(np.flatnonzero(d == d.max())[0])
        picks.append(j)
        d = np.minimum(d, ((x - x[j]) ** 2).sum(-1))
    return np.asarray(picks)


@pytest.mark.parametrize("memory", ["256", "0.004"])
def test_kcenter_ties_go_to_the_smallest_position(memory, monkeypatch):
    """Copies of the farthest rows tie exactly: each pick is the copy at the smallest position (then the other
    copies are at distance 0), as plain greedy with the documented tie rule."""
    from alq.diversity.kcenter import kcenter_greedy
    from alq.diversity.rows import RowTable
    from alq.store import MemoryPool

    monkeypatch.setenv("ALQ_WORKING_MEMORY", memory)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    far = np.array([[30.0, 0, 0, 0, 0, 0], [0, -25.0, 0, 0, 0, 0]], np.float32)
    x[[41, 43, 77, 203, 251]] = far[0]
    x[[12, 151, 152]] = far[1]
    labeled = np.arange(0, 300, 10)  # centres: every 10th row (none of the copies)
    cand = np.setdiff1d(np.arange(300), labeled)
    pool = MemoryPool(x, shard_rows=64)
    with RowTable(pool, cand) as table, RowTable(pool, labeled) as centres:
        picks, _, _ = kcenter_greedy(table, 12, centres=centres, rng=np.random.default_rng(0))
    want = _reference_kcenter(x[cand].astype(np.float64), x[labeled].astype(np.float64), 12)
    np.testing.assert_array_equal(cand[picks], cand[want])
    assert cand[picks[0]] == 41 and cand[picks[1]] == 12  # the first copies


def test_cosine_rows_on_demand_equal_the_dense_matrix_bitwise():
    from alq.diversity.facility import TILE_ROWS, CosineRows, dense_similarity

    x = np.random.default_rng(0).normal(size=(2 * TILE_ROWS + 37, 9)).astype(np.float32)
    full = dense_similarity(x)
    rows = CosineRows(x, budget_bytes=1)  # one tile kept at a time
    for j in (0, 1, TILE_ROWS - 1, TILE_ROWS, len(x) - 1, 5):
        np.testing.assert_array_equal(rows[j], full[j])
    for a, b in ((0, len(x)), (3, TILE_ROWS + 5), (TILE_ROWS, 2 * TILE_ROWS), (7, 7)):
        np.testing.assert_array_equal(rows[a:b], full[a:b])
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(full, np.clip(u @ u.T, 0, None), atol=1e-6)


# -- items 24 and 25: the head's cross-validated strength --------------------------------------------------

def _sample_digits_100():
    """sample_data: the 100 seed labels (labels_round0.csv) and the pool's column statistics."""
    import csv
    from pathlib import Path

    import pyarrow.parquet as pq

    from alq.model.standardize import ColumnStats

    root = Path(__file__).resolve().parent.parent / "sample_data"

    def vectors(name):
        t = pq.read_table(root / name)
        return t.column("id").to_numpy(), np.stack([np.asarray(v, np.float32) for v in t.column("embedding").to_pylist()])

    ids, pool = vectors("pool.parquet")
    test_ids, test = vectors("test.parquet")
    where = {int(i): r for r, i in enumerate(ids)}
    rows = sorted((where[int(r["id"])], int(r["label"])) for r in csv.DictReader(open(root / "labels_round0.csv")))
    idx = np.array([r for r, _ in rows])
    y = np.array([lab for _, lab in rows])
    tl = pq.read_table(root / "test_labels.parquet").to_pydict()
    truth = dict(zip(tl["id"], tl["label"]))
    test_y = np.array([truth[int(i)] for i in test_ids])
    return pool[idx], y, test, test_y, ColumnStats.of(pool).standardizer()


@pytest.fixture(scope="module")
def digits100():
    return _sample_digits_100()


def test_cv_grid_reports_converged_fold_fits(digits100):
    """Every cv_grid accuracy equals scikit-learn's tightly converged fits on the same folds and standardised
    inputs (the 15-iteration fold fits were 0.01 off at lambda = 1e-4), and says it converged."""
    from sklearn.linear_model import LogisticRegression

    from alq.model.cv import cv_repeats, stratified_folds
    from alq.model.train import TrainOptions, train_head

    x, y, _, _, stats = digits100
    head = train_head(x, y, list(range(10)), multilabel=False, opts=TrainOptions(seed=0), standardizer=stats)
    m = head.meta["metrics"]
    xs = ((x - stats[0]) / stats[1]).astype(np.float64)
    splits = [stratified_folds(y, 5, multilabel=False, seed=0, repeat=r) for r in range(cv_repeats(len(y)))]
    assert len(m["cv_grid"]) >= 5 and min(g["weight_decay"] for g in m["cv_grid"]) <= 1e-4
    for g in m["cv_grid"]:
        lam, correct = g["weight_decay"], 0
        for folds in splits:
            for f in range(5):
                tr, va = folds != f, folds == f
                ref = LogisticRegression(C=1.0 / (lam * tr.sum()), tol=1e-10, max_iter=20_000).fit(xs[tr], y[tr])
                correct += int((ref.predict(xs[va]) == y[va]).sum())
        assert g["converged"] is True
        assert abs(g["accuracy"] * len(y) * len(splits) - correct) <= 1, (lam, g["accuracy"], correct)


def test_small_sample_head_matches_sklearn_logistic_regression_cv(digits100):
    """sample_data, 100 labels: the default head is as accurate on the test set as scikit-learn's
    LogisticRegressionCV(Cs=10, cv=5) on the same standardised inputs (0.893 both; the head was at 0.867)."""
    from sklearn.linear_model import LogisticRegressionCV

    from alq.model.train import TrainOptions, train_head

    x, y, test, test_y, stats = digits100
    head = train_head(x, y, list(range(10)), multilabel=False, opts=TrainOptions(seed=0), standardizer=stats)
    ours = float((head.probs(torch.from_numpy(test)).argmax(1).numpy() == test_y).mean())
    ref = LogisticRegressionCV(Cs=10, cv=5, max_iter=5000).fit((x - stats[0]) / stats[1], y)
    theirs = float((ref.predict((test - stats[0]) / stats[1]) == test_y).mean())
    assert ours >= theirs - 0.005, (ours, theirs)


class _Table:
    """Fake fold fits for the CV search: lambda (by its exponent) -> (held-out correct, summed log-loss)."""

    def __init__(self, table):
        self.table = {round(float(e), 1): v for e, v in table.items()}
        self.tried: list[float] = []

    def install(self, monkeypatch):
        from alq.model import cv

        table, tried = self.table, self.tried

        def evaluate(path, lam, start_from):
            e = round(float(np.log10(lam)), 1)
            assert e in table, f"the search asked for 10^{e}, which the scenario does not expect"
            tried.append(e)
            path.scores[lam] = table[e]
            path.nets[lam] = [None] * len(path.splits)
            path.unconverged[lam] = 0

        monkeypatch.setattr(cv._Path, "evaluate", evaluate)


def _search(monkeypatch, table, n=40):
    """Run select_weight_decay on n labels with fake fold fits; (chosen exponent, exponents tried in order)."""
    from alq.model.cv import select_weight_decay
    from alq.model.train import TrainOptions

    fake = _Table(table)
    fake.install(monkeypatch)
    y = torch.as_tensor(np.arange(n) % 2)
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32))
    lam, report, _ = select_weight_decay(x, y, 2, multilabel=False, opts=TrainOptions(), weights=None, stats=None)
    return round(float(np.log10(lam)), 1), fake.tried


def test_cv_search_continues_while_either_measure_improves(monkeypatch):
    """10^-2 is less accurate than 10^-1 but has a lower log-loss: the downward pass goes on (the stop rule is
    'improves neither', an `or`), finds 10^-3, stops after 10^-4, then refines around 10^-3."""
    from alq.model.cv import cv_repeats

    r = cv_repeats(40)  # 25 repeated splits' worth of predictions per label: keep gaps well above one label
    table = {-1: (30 * r, 50.0), -2: (25 * r, 45.0), -3: (36 * r, 44.0), -4: (33 * r, 46.0),
             -2.5: (32 * r, 44.5), -3.5: (31 * r, 45.5), 0: (20 * r, 60.0), -0.5: (20 * r, 60.0), -1.5: (20 * r, 60.0)}
    chosen, tried = _search(monkeypatch, table)
    assert tried == [-1, -2, -3, -4, -2.5, -3.5]
    assert chosen == -3


def test_cv_search_refines_by_half_decades(monkeypatch):
    from alq.model.cv import cv_repeats

    r = cv_repeats(40)
    table = {-1: (30 * r, 50.0), -2: (33 * r, 45.0), -3: (28 * r, 47.0), -1.5: (37 * r, 46.0), -2.5: (31 * r, 44.9)}
    chosen, tried = _search(monkeypatch, table)
    assert tried == [-1, -2, -3, -1.5, -2.5]
    assert chosen == -1.5  # a half decade beats every whole decade


def test_cv_search_ties_go_to_the_lower_log_loss_then_the_stronger_penalty(monkeypatch):
    from alq.model.cv import cv_repeats

    r = cv_repeats(40)
    # 10^-1, 10^-2 and 10^-1.5 tie exactly (accuracy and log-loss): the stronger wins, both as the decade the
    # search refines around (and goes up from) and as the choice
    table = {-1: (30 * r, 50.0), -2: (30 * r, 50.0), -3: (20 * r, 60.0), 0: (20 * r, 61.0), -0.5: (20 * r, 62.0),
             -1.5: (30 * r, 50.0)}
    chosen, tried = _search(monkeypatch, table)
    assert tried == [-1, -2, 0, -0.5, -1.5] and chosen == -1  # 10^-2 improves nothing: stop
    # within one label of the most accurate: a tie, decided by the log-loss
    table = {-1: (30 * r, 50.0), -2: (30 * r + r, 55.0), -3: (20 * r, 60.0), -1.5: (30 * r + r, 49.0),
             -2.5: (30 * r + 2 * r, 70.0)}
    chosen, tried = _search(monkeypatch, table)
    assert tried == [-1, -2, -3, -1.5, -2.5] and chosen == -1.5  # 10^-2.5 is best, 10^-1.5 within one label


def test_cv_search_goes_up_when_the_strongest_decade_wins(monkeypatch):
    from alq.model.cv import cv_repeats

    r = cv_repeats(40)
    table = {-1: (30 * r, 50.0), -2: (25 * r, 55.0), 0: (34 * r, 45.0), 1: (38 * r, 44.0), 2: (31 * r, 46.0),
             0.5: (35 * r, 45.0), 1.5: (36 * r, 44.5)}
    chosen, tried = _search(monkeypatch, table)
    assert tried == [-1, -2, 0, 1, 2, 1.5, 0.5]
    assert chosen == 1


def test_cv_folds_follow_the_seed_and_are_stratified():
    from alq.model.cv import _Path, stratified_folds
    from alq.model.train import TrainOptions

    y = np.repeat(np.arange(4), [13, 7, 22, 8])
    a, b = stratified_folds(y, 5, multilabel=False, seed=0), stratified_folds(y, 5, multilabel=False, seed=1)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, stratified_folds(y, 5, multilabel=False, seed=0))
    assert not np.array_equal(a, stratified_folds(y, 5, multilabel=False, seed=0, repeat=1))
    for folds in (a, b):
        for c in range(4):
            counts = np.bincount(folds[y == c], minlength=5)
            assert counts.max() - counts.min() <= 1  # each class dealt evenly over the folds
    # the search's splits are the seed's folds (not seed 0's)
    x = torch.zeros((len(y), 2))
    path = _Path(x, torch.as_tensor(y), 4, multilabel=False, opts=TrainOptions(seed=7), weights=None, stats=None, k=5)
    want = stratified_folds(y, 5, multilabel=False, seed=7, repeat=0)
    for f in range(5):
        np.testing.assert_array_equal(path.splits[f][1].numpy(), np.flatnonzero(want == f))
