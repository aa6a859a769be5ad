"""Output directories of scores and clusters read as datasets by directory readers with default options."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.dataset as ds
import pytest

from alq.store.labels import LabelSet


@pytest.fixture
def outputs(cli, small_pool, tmp_path):
    path, _, y = small_pool
    lab = np.arange(0, 700, 7)
    LabelSet(ids=lab.astype(np.int64), labels=y[lab].tolist()).write(tmp_path / "labels.parquet")
    assert cli("train", path, tmp_path / "labels.parquet", "--out", tmp_path / "head.pt", "-q")[0] == 0
    assert cli("score", path, "--head", tmp_path / "head.pt", "--out", tmp_path / "scores", "-q")[0] == 0
    assert cli("cluster", path, "--out", tmp_path / "clusters", "-q")[0] == 0
    return path, tmp_path


@pytest.mark.parametrize("name, key", [("scores", "margin"), ("clusters", "cluster")])
def test_directory_reads_as_one_dataset(outputs, name, key):
    _, tmp = outputs
    table = ds.dataset(tmp / name).to_table()  # default options: `_`-prefixed sidecars are skipped
    assert table.num_rows == 700 and key in table.column_names and "id" in table.column_names
    assert sorted(p.name for p in (tmp / name).iterdir() if p.suffix == ".json") == [f"_{name}.json"]


def test_legacy_sidecar_names_still_read(cli, outputs):
    pool, tmp = outputs
    for name in ("scores", "clusters"):
        shutil.move(tmp / name / f"_{name}.json", tmp / name / f"{name}.json")
    code, out, err = cli("select", pool, "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
                         "--clusters", tmp / "clusters", "--scores", tmp / "scores", "--strategy", "cluster-margin",
                         "--budget", "20", "--out", tmp / "b.parquet", "--json")
    assert code == 0, err
    assert json.loads(out)["selected"] == 20
    code, out, err = cli("info", tmp / "scores", "--json")
    assert code == 0 and json.loads(out)["kind"] == "scores"
