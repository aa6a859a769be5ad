"""Heads: training to the optimum, early stopping, class weights, ensembles, dropout, the file format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import gaussian_pool

from alq.errors import BadInputError
from alq.model.fit import class_weights, holdout_split
from alq.model.head import Head, HeadNet, load_head, net_fingerprint
from alq.model.train import TrainOptions, train_head
from alq.store import MemoryPool
from alq.store.labels import LabelSet, read_labels
from alq.train import train_on_pool


def _head(x, y, classes=None, **kw):
    classes = classes if classes is not None else sorted(set(np.asarray(y).tolist()))
    return train_head(x, y, classes, multilabel=kw.pop("multilabel", False), opts=TrainOptions(**kw))


def _sklearn_objective(x, y, lam):
    def objective(w, b):  # float64 reference objective: mean cross-entropy + lam/2 ||W||^2
        z = x.astype(np.float64) @ w.T + b
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean() + 0.5 * lam * (w * w).sum()
    return objective


@pytest.mark.parametrize("standardize", [False, True])
def test_linear_head_reaches_sklearn_optimum(standardize):
    """At a given strength the default L-BFGS fit (whitened coordinates, default tolerance) lands on the
    regularised optimum that scikit-learn's float64 solver finds: objective, coefficients, accuracy."""
    from sklearn.linear_model import LogisticRegression

    x, y = gaussian_pool(400, d=8, c=3, seed=1, sep=1.0)
    x = x * np.linspace(0.2, 5.0, 8, dtype=np.float32) + 3.0  # unequal scales and an offset: a harder problem
    c_reg = 0.5
    lam = 1.0 / (c_reg * len(x))  # sklearn: C * sum(loss) + ||W||^2 / 2  ==  n C (mean(loss) + lam ||W||^2 / 2)
    if standardize:
        stats = (x.mean(0) + 0.1, x.std(0) * 1.5)  # any given (pool) statistics, not the rows' own
        xin = (x - stats[0]) / stats[1]
        head = train_head(x, y, [0, 1, 2], multilabel=False, standardizer=stats,
                          opts=TrainOptions(weight_decay=lam, normalize="standardize"))
        assert head.meta["metrics"]["standardize_stats"] == "pool"
        np.testing.assert_allclose(head.net.scale.numpy(), stats[1], rtol=1e-6)
    else:
        xin = x
        head = _head(x, y, weight_decay=lam, normalize=None)
    ref = LogisticRegression(C=c_reg, tol=1e-12, max_iter=10_000).fit(xin.astype(np.float64), y)
    objective = _sklearn_objective(xin, y, lam)
    w, b = head.net.out.weight.detach().double().numpy(), head.net.out.bias.detach().double().numpy()
    assert objective(w, b) <= objective(ref.coef_, ref.intercept_) + 1e-5
    # softmax coefficients are defined up to a shift shared by the classes (sklearn centres them)
    np.testing.assert_allclose(w - w.mean(0), ref.coef_ - ref.coef_.mean(0), atol=1e-2)
    pred = head.probs(torch.from_numpy(x)).argmax(1).numpy()
    assert abs((pred == y).mean() - (ref.predict(xin) == y).mean()) <= 1e-3
    assert head.meta["metrics"]["stopped"] == "converged"


def test_cross_validated_strength_matches_a_plain_reference_and_is_optimal():
    """Default training: the strength is chosen by 5-fold CV; each tried strength's held-out accuracy
    agrees with scikit-learn fits on the same folds, the choice is (near) the reference's best, and the
    final head is at the optimum of its objective at that strength (gradient ~ 0)."""
    from sklearn.linear_model import LogisticRegression

    from alq.model.cv import cv_repeats, stratified_folds

    x, y = gaussian_pool(300, d=20, c=4, seed=5, sep=0.9)
    head = _head(x, y, seed=2)
    m = head.meta["metrics"]
    assert m["weight_decay_chosen_by"] == "cross-validation" and m["cv_folds"] == 5
    assert m["n_holdout"] == 0 and m["n_train"] == 300  # no label thrown away
    mean, scale = head.net.mean.numpy(), head.net.scale.numpy()
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-4, atol=1e-5)  # labeled rows' stats: no pool given
    xs = ((x - mean) / scale).astype(np.float64)
    reps = cv_repeats(len(y))
    assert reps == 4 and m["cv_repeats"] == 4  # 300 labels: 4 independent 5-fold splits (~1,000 held-out predictions)
    splits = [stratified_folds(y, 5, multilabel=False, seed=2, repeat=r) for r in range(reps)]
    ref = {}
    for g in m["cv_grid"]:
        lam = g["weight_decay"]
        correct = 0
        for folds in splits:
            for f in range(5):
                tr, va = folds != f, folds == f
                clf = LogisticRegression(C=1.0 / (lam * tr.sum()), tol=1e-10, max_iter=10_000).fit(xs[tr], y[tr])
                correct += int((clf.predict(xs[va]) == y[va]).sum())
        ref[lam] = correct / (len(y) * reps)
        assert abs(g["accuracy"] - ref[lam]) <= 2 / len(y), (lam, g["accuracy"], ref[lam])
    assert ref[m["weight_decay"]] >= max(ref.values()) - 2 / len(y)
    # the documented rule: the most accurate strength, accuracy resolved to one label (ties within 1/n), ties to
    # the lower held-out log-loss, then the stronger penalty
    top = max(g["accuracy"] for g in m["cv_grid"])
    tied = [g for g in m["cv_grid"] if (top - g["accuracy"]) * len(y) <= 1 + 1e-9]
    assert [g["tied_with_best"] for g in m["cv_grid"]] == [g in tied for g in m["cv_grid"]]
    assert m["weight_decay"] == min(tied, key=lambda g: (g["log_loss"], -g["weight_decay"]))["weight_decay"]
    assert m["cv_accuracy"] >= top - 1 / len(y)
    # the final fit is at the optimum of mean CE + lam/2 ||W||^2 on all labels
    net = head.net
    net.zero_grad()
    z = net(torch.from_numpy(x))
    loss = torch.nn.functional.cross_entropy(z, torch.from_numpy(y)) + 0.5 * m["weight_decay"] * (net.out.weight ** 2).sum()
    loss.backward()
    assert float(net.out.weight.grad.abs().max()) < 1e-4 and float(net.out.bias.grad.abs().max()) < 1e-4
    again = _head(x, y, seed=2)
    assert again.fingerprint == head.fingerprint  # deterministic for a seed


def test_too_few_labels_skip_cross_validation():
    x, y = gaussian_pool(8, d=4, c=2, seed=0, sep=3.0)
    head = _head(x, y)
    assert head.meta["metrics"]["cv_folds"] == 0 and "fallback" in head.meta["metrics"]["weight_decay_chosen_by"]


def test_mlp_and_multilabel_fit_separable_data():
    x, y = gaussian_pool(300, d=8, c=4, seed=2, sep=5.0)
    mlp = _head(x, y, hidden=16, holdout=0.0)
    assert mlp.meta["metrics"]["train_accuracy"] == 1.0
    assert mlp.net.hidden == 16 and mlp.net.features(torch.from_numpy(x)).shape == (300, 16)
    multi = np.zeros((300, 4), np.float32)
    multi[np.arange(300), y] = 1
    multi[np.arange(300), (y + 1) % 4] = (np.arange(300) % 3 == 0)
    ml = train_head(x, multi, [0, 1, 2, 3], multilabel=True, opts=TrainOptions(hidden=32, weight_decay=1e-4))
    assert ml.multilabel and ml.meta["metrics"]["train_accuracy"] > 0.95


def test_holdout_split_is_stratified_and_deterministic():
    y = np.repeat(np.arange(5), [40, 30, 20, 10, 1])
    tr, ho = holdout_split(y, 0.2, multilabel=False, seed=3)
    assert len(np.intersect1d(tr, ho)) == 0 and len(tr) + len(ho) == len(y)
    assert np.bincount(y[ho], minlength=5).tolist() == [8, 6, 4, 2, 0]  # the singleton class keeps its row
    tr2, ho2 = holdout_split(y, 0.2, multilabel=False, seed=3)
    assert np.array_equal(ho, ho2)
    assert not np.array_equal(ho, holdout_split(y, 0.2, multilabel=False, seed=4)[1])
    # too few held-out rows: early stopping off, every row trains
    tr, ho = holdout_split(y[:30], 0.1, multilabel=False, seed=0)
    assert len(ho) == 0 and len(tr) == 30


def test_early_stopping_keeps_the_best_holdout_weights():
    """Noise labels, no weight decay: the held-out loss rises as L-BFGS overfits, so it stops and rolls back."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 60)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    head = _head(x, y, weight_decay=0.0, holdout=0.3, eval_every=2, patience=3, max_iter=400)
    m = head.meta["metrics"]
    assert m["stopped"] == "early-stopped"
    assert m["best_iteration"] < m["iterations"]
    assert m["n_holdout"] == 90 and m["n_train"] == 210
    # The same training rows fitted to convergence without early stopping fit the held-out rows worse.
    train_rows, held = holdout_split(y, 0.3, multilabel=False, seed=0)
    full = _head(x[train_rows], y[train_rows], weight_decay=0.0, holdout=0.0, max_iter=400)

    def held_loss(h):
        return float(torch.nn.functional.cross_entropy(h.logits(torch.from_numpy(x[held])), torch.from_numpy(y[held])))

    assert held_loss(head) == pytest.approx(m["holdout_loss"], rel=1e-5)
    assert held_loss(head) < held_loss(full)


def test_class_weights_hand_computed():
    y = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(class_weights(y, 3, False), [4 / 9, 4 / 3, 0.0])
    ym = np.array([[1, 0], [1, 1], [0, 0], [1, 0]], np.float32)
    np.testing.assert_allclose(class_weights(ym, 2, True), [1 / 3, 3.0])


def test_class_weighting_moves_the_boundary_toward_the_majority():
    x, y = gaussian_pool(600, d=4, c=2, seed=5, sep=1.0)
    keep = np.concatenate([np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:30]])
    x, y = x[keep], y[keep]
    plain = _head(x, y, holdout=0.0)
    weighted = _head(x, y, holdout=0.0, class_weighted=True)
    xt = torch.from_numpy(x)
    # minority recall improves under the balanced loss
    rec = lambda h: float((h.logits(xt).argmax(1).numpy()[y == 1] == 1).mean())  # noqa: E731
    assert rec(weighted) > rec(plain)


def test_same_seed_same_head_and_bootstrap_members_differ():
    x, y = gaussian_pool(200, d=6, c=3, seed=7, sep=2.0)
    a = _head(x, y, ensemble=3, bootstrap=True, seed=11)
    b = _head(x, y, ensemble=3, bootstrap=True, seed=11)
    assert a.fingerprint == b.fingerprint
    assert len(a.nets) == 3
    w = [n.out.weight.detach() for n in a.nets]
    assert not torch.allclose(w[0], w[1]) and not torch.allclose(w[1], w[2])
    assert _head(x, y, ensemble=3, bootstrap=True, seed=12).fingerprint != a.fingerprint


def test_dropout_uses_adam_and_mc_samples_are_seeded():
    x, y = gaussian_pool(200, d=6, c=3, seed=8, sep=3.0)
    head = _head(x, y, hidden=8, dropout=0.3, epochs=40)
    assert head.meta["metrics"]["optimizer"] == "adam"
    xt = torch.from_numpy(x[:10])
    s1 = head.net.mc_logits(xt, torch.Generator().manual_seed(1))
    s1b = head.net.mc_logits(xt, torch.Generator().manual_seed(1))
    s2 = head.net.mc_logits(xt, torch.Generator().manual_seed(2))
    assert torch.equal(s1, s1b) and not torch.equal(s1, s2)
    assert not head.net.training  # eval mode restored
    lin = _head(x, y, dropout=0.5, epochs=20)  # a linear head takes dropout on its input
    assert isinstance(lin.net.body, torch.nn.Dropout)
    with pytest.raises(BadInputError, match="lbfgs cannot train with --dropout"):
        _head(x, y, dropout=0.5, optimizer="lbfgs")


def test_single_class_and_bad_options_refused():
    x, y = gaussian_pool(50, d=4, c=2)
    with pytest.raises(BadInputError, match="single class"):
        _head(x, np.zeros(50, np.int64), classes=[0, 1])
    with pytest.raises(BadInputError, match="--holdout"):
        _head(x, y, holdout=0.95)
    with pytest.raises(BadInputError, match="--optimizer"):
        _head(x, y, optimizer="sgd")


@pytest.mark.parametrize("kw", [dict(), dict(hidden=8, normalize="standardize"), dict(normalize="l2", ensemble=2,
                                                                                     bootstrap=True),
                                dict(hidden=8, dropout=0.2, epochs=10)])
def test_head_file_round_trip(tmp_path, kw):
    x, y = gaussian_pool(120, d=6, c=3, seed=9)
    names = ["cat", "dog", "eel"]
    head = train_head(x, y, names, multilabel=False, opts=TrainOptions(holdout=0.0, **kw), meta={"pool_fingerprint": "abc"})
    head.save(tmp_path / "h.pt")
    back = load_head(tmp_path / "h.pt")
    assert back.classes == names and back.fingerprint == head.fingerprint and back.pool_fingerprint == "abc"
    assert len(back.nets) == len(head.nets) and back.net.normalize == head.net.normalize
    xt = torch.from_numpy(x)
    for a, b in zip(head.nets, back.nets):
        assert torch.equal(a.eval()(xt), b(xt))
    assert back.meta["metrics"]["n_train"] == 120
    assert net_fingerprint(back.nets, back.classes, back.multilabel) == back.fingerprint


def test_int_classes_survive_round_trip(tmp_path):
    x, y = gaussian_pool(60, d=4, c=2)
    head = train_head(x, y, [np.int64(3), np.int64(7)], multilabel=False, opts=TrainOptions(holdout=0.0))
    assert head.classes == [3, 7] and all(type(c) is int for c in head.classes)
    head.save(tmp_path / "h.pt")
    assert load_head(tmp_path / "h.pt").classes == [3, 7]


def test_corrupt_tampered_and_foreign_head_files(tmp_path):
    x, y = gaussian_pool(60, d=4, c=2)
    head = _head(x, y, holdout=0.0)
    head.save(tmp_path / "h.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(BadInputError, match="junk.pt: not a readable alq head file"):
        load_head(tmp_path / "junk.pt")
    torch.save({"hello": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(BadInputError, match="other.pt: not an alq head file"):
        load_head(tmp_path / "other.pt")
    payload = torch.load(tmp_path / "h.pt", weights_only=True)
    payload["state_dicts"][0]["out.weight"] += 1.0
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(BadInputError, match="fingerprint"):
        load_head(tmp_path / "tampered.pt")
    payload = torch.load(tmp_path / "h.pt", weights_only=True)
    meta = json.loads(payload["meta"])
    meta["dim"] = 5
    payload["meta"] = json.dumps(meta)
    torch.save(payload, tmp_path / "wrongdim.pt")
    with pytest.raises(BadInputError, match="weights do not match"):
        load_head(tmp_path / "wrongdim.pt")
    with pytest.raises(BadInputError, match="head file not found"):
        load_head(tmp_path / "missing.pt")


def test_dim_and_class_mismatch_refused():
    head = Head(nets=[HeadNet(4, 2)], classes=["a", "b"])
    with pytest.raises(BadInputError, match="head expects dim 4 but the pool has dim 6"):
        head.check_pool(MemoryPool(np.zeros((3, 6), np.float32)))
    with pytest.raises(BadInputError, match="1 classes the head was not trained on"):
        head.check_classes(["a", "c"])


def test_train_on_pool_reads_only_labeled_rows_and_records_pool():
    x, y = gaussian_pool(300, d=5, c=3, seed=4)
    pool = MemoryPool(x, shard_rows=64)
    rows = np.array([250, 3, 77, 140, 5, 9, 201, 66, 12, 299, 180, 31])
    labels = LabelSet(ids=rows.astype(np.int64), labels=[f"k{v}" for v in y[rows]])
    head = train_on_pool(pool, labels, TrainOptions(holdout=0.0))
    assert head.pool_fingerprint == pool.fingerprint
    assert head.classes == sorted({f"k{v}" for v in y[rows]})
    with pytest.raises(BadInputError, match="--multilabel no"):
        train_on_pool(pool, LabelSet(ids=rows, labels=[(f"k{v}",) for v in y[rows]], multilabel=True),
                      TrainOptions(), multilabel="no")
    forced = train_on_pool(pool, labels, TrainOptions(holdout=0.0), multilabel="yes")
    assert forced.multilabel
    with pytest.raises(BadInputError, match="id 100000 is not in the pool"):
        train_on_pool(pool, LabelSet(ids=np.array([1, 100_000]), labels=["a", "b"]), TrainOptions())


def test_cli_train_json_metrics_and_errors(cli, small_pool, tmp_path):
    path, x, y = small_pool
    rows = np.arange(0, 700, 7)
    LabelSet(ids=rows.astype(np.int64), labels=y[rows].tolist()).write(tmp_path / "labels.parquet")
    code, out, err = cli("train", path, tmp_path / "labels.parquet", "--out", tmp_path / "h.pt", "--json",
                         "--metrics", tmp_path / "m.json", "--normalize", "standardize", "--mlp", "--hidden", "12")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["fingerprint"] == load_head(tmp_path / "h.pt").fingerprint
    assert summary["n_labeled"] == 100 and summary["n_holdout"] == 0 and summary["hidden"] == 12
    # the strength chosen by cross-validation, and the pool's standardisation, are reported
    assert summary["weight_decay_chosen_by"] == "cross-validation" and summary["cv_folds"] == 5
    assert 0 < summary["cv_accuracy"] <= 1 and summary["weight_decay"] in [g["weight_decay"] for g in summary["cv_grid"]]
    assert summary["standardize_stats"] == "pool"
    head = load_head(tmp_path / "h.pt")
    np.testing.assert_allclose(head.net.mean.numpy(), x.mean(0), rtol=1e-4, atol=1e-4)  # all 700 pool rows
    code, out, err = cli("train", path, tmp_path / "labels.parquet", "--out", tmp_path / "h2.pt", "--json",
                         "--weight-decay", "1e-3", "--holdout", "0.1")
    fixed = json.loads(out)
    assert code == 0 and fixed["weight_decay"] == 1e-3 and fixed["weight_decay_chosen_by"] == "given"
    assert fixed["n_holdout"] == 10
    code, out, err = cli("train", path, tmp_path / "labels.parquet", "--out", tmp_path / "h3.pt", "--weight-decay", "lots")
    assert code == 2 and "--weight-decay='lots'" in err
    assert json.loads((tmp_path / "m.json").read_text())["fingerprint"] == summary["fingerprint"]
    assert read_labels(tmp_path / "labels.parquet").classes == load_head(tmp_path / "h.pt").classes
    before = (tmp_path / "h.pt").read_bytes()
    code, out, err = cli("train", path, tmp_path / "labels.parquet", "--out", tmp_path / "h.pt", "--normalize", "zscore")
    assert code == 2 and "--normalize='zscore'" in err
    assert (tmp_path / "h.pt").read_bytes() == before  # untouched on error
    code, out, err = cli("train", "--help")
    assert code == 0 and "Example:" in out


def test_pool_standardisation_cannot_blow_up_columns_unseen_in_the_labels():
    """A column constant among the labeled rows but varying in the pool (digits with 100 labels: 11 of 64
    columns) is scaled by the pool's std, so no pool row gets huge inputs; labeled-row statistics would
    divide by ~0 there."""
    from alq.model.standardize import ColumnStats, pool_column_stats

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    labeled = np.arange(0, 2000, 20)
    x[labeled, 3] = 0.0  # constant among the labeled rows only
    pool = MemoryPool(x, shard_rows=300)
    labels = LabelSet(ids=labeled.astype(np.int64), labels=y[labeled].tolist())
    head = train_on_pool(pool, labels, TrainOptions())
    assert head.meta["metrics"]["standardize_stats"] == "pool"
    z = (x - head.net.mean.numpy()) / head.net.scale.numpy()
    assert np.abs(z).max() < 10
    assert np.abs(head.logits(torch.from_numpy(x)).numpy()).max() < 50
    # streamed statistics == numpy over the whole pool (any shard size)
    stats = pool_column_stats(pool)
    np.testing.assert_allclose(stats.mean, x.astype(np.float64).mean(0), atol=1e-12)
    np.testing.assert_allclose(stats.std, x.astype(np.float64).std(0), rtol=1e-10)
    # labeled-row statistics floor a constant column at the typical scale instead of dividing by ~0
    mean, scale = ColumnStats.of(x[labeled]).standardizer()
    assert scale[3] > 0.5


def test_column_stats_merge_is_exact_at_large_offsets():
    from alq.model.standardize import ColumnStats

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 3)) * 1e-3 + 1e6
    parts = [ColumnStats.of(x[a:b]) for a, b in [(0, 1), (1, 400), (400, 401), (401, 1000)]]
    acc = ColumnStats.empty(3)
    for p in parts:
        acc = acc.merge(p)
    np.testing.assert_allclose(acc.std, x.std(0), rtol=1e-6)
    assert acc.count == 1000
