"""Output directories of scores and clusters read as datasets by directory readers with default options."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
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
    # polars.scan_parquet(DIR) refuses a directory of mixed extensions and reads every file it holds; DuckDB's
    # 'DIR/*' likewise: every file is Parquet with the same columns (the sidecar: no rows of them)
    files = sorted((tmp / name).iterdir())
    assert all(p.suffix == ".parquet" for p in files), [p.name for p in files]
    schemas = {str(pq.read_schema(p).remove_metadata()) for p in files}
    assert len(schemas) == 1
    assert sum(pq.read_metadata(p).num_rows for p in files) == 700
    assert (tmp / name / f"_{name}.parquet").is_file()


def test_duckdb_reads_the_directory(outputs):
    duckdb = pytest.importorskip("duckdb")
    _, tmp = outputs
    for name in ("scores", "clusters"):
        n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp / name}/*')").fetchall()[0][0]
        assert n == 700, name


def _to_json_sidecar(directory, name: str, filename: str) -> None:
    """The layout of earlier versions: the record as `_NAME.json` (and before that `NAME.json`)."""
    from alq.store import sidecar

    record = sidecar.read(directory / f"_{name}.parquet", what="record")
    (directory / f"_{name}.parquet").unlink()
    (directory / filename).write_text(json.dumps(record))


@pytest.mark.parametrize("legacy", ["_{}.json", "{}.json"])
def test_legacy_sidecar_names_still_read(cli, outputs, legacy):
    pool, tmp = outputs
    for name in ("scores", "clusters"):
        _to_json_sidecar(tmp / name, name, legacy.format(name))
    code, out, err = cli("select", pool, "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
                         "--clusters", tmp / "clusters", "--scores", tmp / "scores", "--strategy", "cluster-margin",
                         "--budget", "20", "--out", tmp / "b.parquet", "--json")
    assert code == 0, err
    assert json.loads(out)["selected"] == 20 and json.loads(out)["scores"]["fresh"] is True
    code, out, err = cli("info", tmp / "scores", "--json")
    assert code == 0 and json.loads(out)["kind"] == "scores"
