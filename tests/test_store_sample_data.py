"""sample_data/ is small, real, reproducible by its script, and readable by alq embed / alq labels."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

SD = Path(__file__).resolve().parents[1] / "sample_data"


def test_small_and_documented():
    total = sum(f.stat().st_size for f in SD.iterdir())
    assert total < 1_000_000
    readme = (SD / "README.md").read_text()
    assert "load_digits" in readme and "BSD-3-Clause" in readme and "make sample-data" in readme


def test_regenerates_identically(tmp_path):
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("make_sample_data", SD.parent / "tests" / "make_sample_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.build(tmp_path)
    for name in ("pool.parquet", "test.parquet", "pool_labels.parquet", "test_labels.parquet"):
        assert pq.read_table(tmp_path / name).equals(pq.read_table(SD / name)), name
    assert (tmp_path / "labels_round0.csv").read_text() == (SD / "labels_round0.csv").read_text()


def test_contents_are_consistent():
    pool, test = pq.read_table(SD / "pool.parquet"), pq.read_table(SD / "test.parquet")
    assert (pool.num_rows, test.num_rows) == (1497, 300)
    pool_ids, test_ids = pool.column("id").to_numpy(), test.column("id").to_numpy()
    assert not set(pool_ids) & set(test_ids) and len(set(pool_ids) | set(test_ids)) == 1797
    x = np.stack(pool.column("embedding").to_numpy(zero_copy_only=False))
    assert x.shape == (1497, 64) and 0 <= x.min() and x.max() <= 1
    labels = pq.read_table(SD / "pool_labels.parquet")
    assert labels.column("id").to_pylist() == pool_ids.tolist()
    assert sorted(set(labels.column("label").to_pylist())) == list(range(10))
    seed = np.loadtxt(SD / "labels_round0.csv", delimiter=",", skiprows=1, dtype=np.int64)
    assert seed.shape == (100, 2) and set(seed[:, 0]) <= set(pool_ids)
