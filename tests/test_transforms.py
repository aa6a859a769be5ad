"""Pool transforms: exact class sizes and duplicates, new stores, inputs untouched."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from conftest import gaussian_pool

from alq.io import read_parquet, sha256_file
from alq.simulate.oracle import RowLabels
from alq.simulate.transforms import TransformSpec, imbalance_sizes, plan_copies
from alq.store import PoolWriter, open_pool
from alq.store.labels import LabelSet, read_labels

SIZES = [120, 90, 150, 60, 100]  # rows per class in the input


@pytest.fixture
def labeled_pool(tmp_path):
    rng = np.random.default_rng(0)
    y = np.concatenate([np.full(n, c) for c, n in enumerate(SIZES)])
    rng.shuffle(y)
    x, _ = gaussian_pool(len(y), d=8, c=5)
    ids = np.arange(1000, 1000 + len(y), dtype=np.int64)
    w = PoolWriter(tmp_path / "pool", shard_rows=97, dtype="float32")
    w.add(x, ids=ids)
    w.close()
    names = np.array(["ant", "bee", "cat", "dog", "eel"], dtype=object)
    LabelSet(ids=ids, labels=names[y].tolist()).write(tmp_path / "labels.parquet")
    return tmp_path, x, y, ids, names


def _read(tmp_path, pool="out", labels="out_labels.parquet"):
    p = open_pool(tmp_path / pool)
    t = read_parquet(tmp_path / labels)
    vec = np.concatenate([b.vectors for b in p.iter_blocks()])
    return p, vec, t.column("id").to_pylist(), t.column("label").to_pylist(), t.column("source_id").to_pylist()


def _digests(tmp_path):
    files = sorted((tmp_path / "pool").iterdir()) + [tmp_path / "labels.parquet"]
    return {f.name: sha256_file(f) for f in files}


def test_imbalance_sizes_formula():
    # C = 5, R = 10, M = 500: round(500 * 10^(-j/4)) = 500, 281, 158, 89, 50
    sizes = imbalance_sizes(np.array([600] * 5), 10.0, np.arange(5), 500)
    assert sizes.tolist() == [500, 281, 158, 89, 50]
    # default M: the largest every class supplies, rounded down to a multiple of R
    sizes = imbalance_sizes(np.array([1000, 1000, 30]), 10.0, np.arange(3))
    assert sizes[2] == round(sizes[0] / 10) and sizes[0] % 10 == 0 and sizes[0] / sizes[2] == 10


@pytest.mark.parametrize("order", ["sorted", "size"])
def test_imbalance_transform_gives_exact_sizes(labeled_pool, cli, order):
    tmp, x, y, ids, names = labeled_pool
    before = _digests(tmp)
    code, out, err = cli("transform", tmp / "pool", "--labels", tmp / "labels.parquet", "--imbalance-ratio", "4",
                         "--max-class-size", "60", "--class-order", order, "--out", tmp / "out",
                         "--labels-out", tmp / "out_labels.parquet", "--seed", "3")
    assert code == 0, err
    p, vec, out_ids, labels, src = _read(tmp)
    rank_of = {c: j for j, c in enumerate(range(5))} if order == "sorted" else \
        {c: j for j, c in enumerate(sorted(range(5), key=lambda c: (-SIZES[c], c)))}
    want = {names[c]: round(60 * 4 ** (-rank_of[c] / 4)) for c in range(5)}  # 60, 42, 30, 21, 15
    assert Counter(labels) == want
    assert max(want.values()) / min(want.values()) == 4
    # kept rows are real input rows with their own ids, vectors and labels
    assert out_ids == src and len(set(out_ids)) == len(out_ids)
    row = {int(i): k for k, i in enumerate(ids)}
    np.testing.assert_array_equal(vec, x[[row[i] for i in out_ids]])
    assert [names[y[row[i]]] for i in out_ids] == labels
    assert _digests(tmp) == before  # input untouched


def test_per_class_cap_exact(labeled_pool):
    from alq.simulate.transforms import transform_pool

    tmp, x, y, ids, names = labeled_pool
    summary = transform_pool(tmp / "pool", tmp / "labels.parquet", tmp / "out", tmp / "out_labels.parquet",
                             TransformSpec(per_class_cap=95, seed=1))
    _, _, _, labels, _ = _read(tmp)
    assert Counter(labels) == {names[c]: min(n, 95) for c, n in enumerate(SIZES)}
    assert summary["rows_out"] == sum(min(n, 95) for n in SIZES)


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_redundancy_duplicates_exactly_k_times(labeled_pool, noise):
    from alq.simulate.transforms import transform_pool

    tmp, x, y, ids, names = labeled_pool
    k, n_unique = 10, 52
    summary = transform_pool(tmp / "pool", tmp / "labels.parquet", tmp / "out", tmp / "out_labels.parquet",
                             TransformSpec(redundancy=k, unique_rows=n_unique, noise=noise, seed=2))
    p, vec, out_ids, labels, src = _read(tmp)
    per_source = Counter(src)
    assert set(per_source.values()) <= {1, k}
    assert sum(1 for v in per_source.values() if v == 1) == n_unique
    # stratified: u_c by largest remainders of 52 * n_c / 520, then floor((n_c - u_c) / k) duplicated rows
    exact = [n_unique * n / sum(SIZES) for n in SIZES]
    u = [math.floor(e) for e in exact]
    for c in sorted(range(5), key=lambda c: (-(exact[c] - u[c]), c))[:n_unique - sum(u)]:
        u[c] += 1
    row = {int(i): r for r, i in enumerate(ids)}
    by_class = Counter(names[y[row[s]]] for s in per_source)
    for c in range(5):
        m = (SIZES[c] - u[c]) // k
        assert by_class[names[c]] == u[c] + m
        assert Counter(labels)[names[c]] == u[c] + k * m
    assert summary["duplicated_rows"] == sum((SIZES[c] - u[c]) // k for c in range(5))
    assert len(set(out_ids)) == len(out_ids) == p.count  # copies get fresh ids
    assert summary["rows_out"] == p.count
    # originals are exact; copies are exact (noise 0) or within a few sigma of their source
    src_vec = x[[row[s] for s in src]]
    is_copy = np.array([i != s for i, s in zip(out_ids, src)])
    np.testing.assert_array_equal(vec[~is_copy], src_vec[~is_copy])
    if noise == 0:
        np.testing.assert_array_equal(vec[is_copy], src_vec[is_copy])
    else:
        diff = vec[is_copy] - src_vec[is_copy]
        assert np.all(np.abs(diff).max(axis=1) > 0)
        assert diff.std() == pytest.approx(summary["noise_std"], rel=0.1)
    assert [names[y[row[s]]] for s in src] == labels
    # the new labels file reads back as a labels file
    assert len(read_labels(tmp / "out_labels.parquet")) == p.count


def test_combined_transforms_and_determinism(labeled_pool):
    from alq.simulate.transforms import transform_pool

    tmp, *_ = labeled_pool
    spec = TransformSpec(per_class_cap=100, imbalance_ratio=2, redundancy=3, unique_rows=10, seed=9)
    a = transform_pool(tmp / "pool", tmp / "labels.parquet", tmp / "a", tmp / "a.parquet", spec)
    b = transform_pool(tmp / "pool", tmp / "labels.parquet", tmp / "b", tmp / "b.parquet", spec)
    assert a["class_sizes_out"] == b["class_sizes_out"]
    assert read_parquet(tmp / "a.parquet").equals(read_parquet(tmp / "b.parquet"))
    assert open_pool(tmp / "a").fingerprint == open_pool(tmp / "b").fingerprint


def test_plan_copies_multilabel_redundancy_only():
    truth = RowLabels(classes=["a", "b"], multilabel=True, indptr=np.array([0, 1, 3, 3, 4]),
                      indices=np.array([0, 0, 1, 1]))
    copies, info = plan_copies(truth, TransformSpec(redundancy=2, unique_rows=2))
    assert sorted(copies.tolist()) == [0, 1, 1, 2]
    from alq.errors import MissingFeatureError

    with pytest.raises(MissingFeatureError):
        plan_copies(truth, TransformSpec(per_class_cap=1))


@pytest.mark.parametrize("args, message", [
    ([], "nothing to do"),
    (["--redundancy", "1"], "--redundancy=1"),
    (["--imbalance-ratio", "0.5"], "--imbalance-ratio=0.5"),
    (["--noise", "0.1"], "need --redundancy"),
    (["--imbalance-ratio", "4", "--max-class-size", "1000"], "needs"),
    (["--imbalance-ratio", "1000"], "no row"),
])
def test_bad_transform_arguments_exit_2(labeled_pool, cli, args, message):
    tmp, *_ = labeled_pool
    code, out, err = cli("transform", tmp / "pool", "--labels", tmp / "labels.parquet", "--out", tmp / "out",
                         "--labels-out", tmp / "o.parquet", *args)
    assert code == 2
    assert message in err
    assert not (tmp / "out").exists() and not (tmp / "o.parquet").exists()


def test_refuses_to_overwrite_input_or_existing_output(labeled_pool, cli):
    tmp, *_ = labeled_pool
    before = _digests(tmp)
    code, _, err = cli("transform", tmp / "pool", "--labels", tmp / "labels.parquet", "--out", tmp / "pool",
                       "--labels-out", tmp / "o.parquet", "--per-class-cap", "10")
    assert code == 2 and "is also this command's input POOL" in err  # the output guard (alq.guard)
    (tmp / "o.parquet").write_text("keep me")
    code, _, err = cli("transform", tmp / "pool", "--labels", tmp / "labels.parquet", "--out", tmp / "new",
                       "--labels-out", tmp / "o.parquet", "--per-class-cap", "10")
    assert code == 2 and "already holds a file alq did not write" in err
    assert (tmp / "o.parquet").read_text() == "keep me"
    assert _digests(tmp) == before
