"""`alq split`: one labeled pool -> pool + test from the same distribution; simulate warns at chance."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alq.store import open_pool
from alq.store.labels import read_labels


def _labeled(cli, tmp, n=400, c=4, seed=0, name="p"):
    code, _, err = cli("synth", "--out", tmp / name, "-n", n, "-d", 8, "-c", c, "--seed", seed,
                       "--labels-out", tmp / f"{name}_labels.parquet", "--shard-rows", 150, "-q")
    assert code == 0, err
    return tmp / name, tmp / f"{name}_labels.parquet"


def test_split_is_stratified_disjoint_and_reproducible(cli, tmp_path):
    pool, labels = _labeled(cli, tmp_path)
    code, out, err = cli("split", pool, "--labels", labels, "--test-fraction", "0.25", "--out", tmp_path / "s",
                         "--seed", "3", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["output"] == str(tmp_path / "s") and s["pool_rows"] + s["test_rows"] == 400
    all_lab = read_labels(labels)
    by_id = dict(zip(all_lab.ids.tolist(), all_lab.labels))
    total = Counter(all_lab.labels)
    test_ids = open_pool(tmp_path / "s" / "test").ids().tolist()
    pool_ids = open_pool(tmp_path / "s" / "pool").ids().tolist()
    assert not set(test_ids) & set(pool_ids) and set(test_ids) | set(pool_ids) == set(by_id)
    got = Counter(by_id[i] for i in test_ids)
    for c, n in total.items():
        assert abs(got[c] - 0.25 * n) <= 1  # every class gives its share
    tl = read_labels(tmp_path / "s" / "test_labels.parquet")
    assert sorted(tl.ids.tolist()) == sorted(test_ids) and all(by_id[i] == y for i, y in zip(tl.ids.tolist(), tl.labels))
    # vectors travel with their ids
    src, dst = open_pool(pool), open_pool(tmp_path / "s" / "test")
    lookup = src.lookup(np.asarray(test_ids[:20], dtype=np.int64))
    np.testing.assert_array_equal(src.take(lookup), dst.take(np.arange(20)))
    # same seed, same split; --overwrite needed
    code, _, err = cli("split", pool, "--labels", labels, "--test-fraction", "0.25", "--out", tmp_path / "s")
    assert code == 2 and "--overwrite" in err
    assert cli("split", pool, "--labels", labels, "--test-fraction", "0.25", "--out", tmp_path / "s2", "--seed",
               "3")[0] == 0
    assert open_pool(tmp_path / "s2" / "test").ids().tolist() == test_ids
    code, _, err = cli("split", pool, "--labels", labels, "--test-fraction", "1.5", "--out", tmp_path / "s3")
    assert code == 2 and "--test-fraction" in err and not (tmp_path / "s3").exists()


def test_split_keeps_metadata_columns(cli, tmp_path):
    x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    ids = np.arange(100, 160)
    pq.write_table(pa.table({"id": ids, "embedding": pa.array(x.tolist(), pa.list_(pa.float32())),
                             "url": [f"u{i}" for i in ids]}), tmp_path / "in.parquet")
    assert cli("embed", tmp_path / "in.parquet", "--out", tmp_path / "p", "-q")[0] == 0
    (tmp_path / "l.csv").write_text("id,label\n" + "".join(f"{i},{i % 3}\n" for i in ids))
    assert cli("labels", "import", tmp_path / "l.csv", "--pool", tmp_path / "p", "--out", tmp_path / "l.parquet",
               "-q")[0] == 0
    assert cli("split", tmp_path / "p", "--labels", tmp_path / "l.parquet", "--out", tmp_path / "s", "-q")[0] == 0
    t = pq.read_table(tmp_path / "s" / "test" / "shard-000000.parquet")
    assert t.column_names == ["id", "url"] and t.column("url").to_pylist() == [f"u{i}" for i in t.column("id").to_pylist()]


def _simulate(cli, tmp, pool, labels, test, test_labels, out):
    return cli("simulate", "--pool", pool, "--labels", labels, "--test-pool", test, "--test-labels", test_labels,
               "--strategies", "random", "--seed-size", "40", "--budget", "40", "--rounds", "1", "--repeats", "1",
               "--max-iter", "50", "--out", tmp / out)


def test_simulate_warns_when_the_test_set_is_from_elsewhere(cli, tmp_path):
    pool, labels = _labeled(cli, tmp_path, n=600, c=10, seed=0)
    other, other_labels = _labeled(cli, tmp_path, n=300, c=10, seed=1, name="other")
    code, out, err = _simulate(cli, tmp_path, pool, labels, other, other_labels, "bad")
    assert code == 0, err
    assert "near chance" in err and "alq split" in err
    assert cli("split", pool, "--labels", labels, "--out", tmp_path / "s", "-q")[0] == 0
    s = tmp_path / "s"
    code, out, err = _simulate(cli, tmp_path, s / "pool", s / "pool_labels.parquet", s / "test",
                               s / "test_labels.parquet", "good")
    assert code == 0, err
    assert "near chance" not in err
