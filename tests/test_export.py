"""The user's metadata carried through (embed -> select) and selections written as CSV / JSON lines / stdout."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import gaussian_pool

from alq.store import open_pool
from alq.store.labels import LabelSet


def _no_constants(name):
    raise ValueError(f"non-strict JSON constant {name}")


def _input(path, x, ids, *, id_name="id", extra=True):
    cols = {id_name: pa.array(ids), "embedding": pa.array(x.tolist(), pa.list_(pa.float32()))}
    if extra:
        cols["file_path"] = pa.array([f"img/{i}.jpg" for i in ids])
        cols["width"] = pa.array([int(i) % 7 + 1 for i in ids], pa.int32())
        cols["thumb"] = pa.array([b"\x00"] * len(ids), pa.binary())  # bytes: not kept by default
    pq.write_table(pa.table(cols), path)


@pytest.fixture
def meta_pool(cli, tmp_path):
    x, y = gaussian_pool(300, d=8, c=3)
    ids = np.arange(1000, 1300)
    _input(tmp_path / "in.parquet", x, ids)
    code, out, err = cli("embed", tmp_path / "in.parquet", "--out", tmp_path / "pool", "--shard-rows", "70",
                         "--dtype", "float32", "--json")
    assert code == 0, err
    return tmp_path, x, y, ids, json.loads(out)


def test_embed_keeps_plain_columns_in_every_shard(meta_pool):
    tmp, _, _, ids, summary = meta_pool
    assert summary["columns"] == ["file_path", "width"]
    assert summary["output"] == summary["pool"] == str(tmp / "pool")
    pool = open_pool(tmp / "pool")
    assert pool.n_shards == 5
    t = pa.concat_tables([pq.read_table(tmp / "pool" / s.parquet) for s in pool.manifest.shards])
    assert t.column_names == ["id", "file_path", "width"]
    assert t.column("id").to_pylist() == ids.tolist()
    assert t.column("file_path").to_pylist() == [f"img/{i}.jpg" for i in ids]
    assert t.schema.field("width").type == pa.int32()


def test_keep_columns_named_or_none(cli, tmp_path):
    x, _ = gaussian_pool(50, d=4)
    _input(tmp_path / "in.parquet", x, np.arange(50))
    assert cli("embed", tmp_path / "in.parquet", "--out", tmp_path / "a", "--keep-columns", "thumb")[0] == 0
    assert pq.read_table(tmp_path / "a" / "shard-000000.parquet").column_names == ["id", "thumb"]
    assert cli("embed", tmp_path / "in.parquet", "--out", tmp_path / "b", "--keep-columns", "none")[0] == 0
    assert pq.read_table(tmp_path / "b" / "shard-000000.parquet").column_names == ["id"]
    code, _, err = cli("embed", tmp_path / "in.parquet", "--out", tmp_path / "c", "--keep-columns", "url")
    assert code == 2 and "--keep-columns names url" in err and not (tmp_path / "c").exists()


def test_append_keeps_the_pools_columns(cli, meta_pool):
    tmp, x, _, _, _ = meta_pool
    _input(tmp / "day2.parquet", x[:10], np.arange(5000, 5010), extra=False)  # no metadata: nulls
    assert cli("embed", tmp / "day2.parquet", "--out", tmp / "pool", "--append")[0] == 0
    last = open_pool(tmp / "pool").manifest.shards[-1]
    t = pq.read_table(tmp / "pool" / last.parquet)
    assert t.column_names == ["id", "file_path", "width"] and t.column("file_path").null_count == 10
    pq.write_table(pa.table({"id": pa.array([6000]), "embedding": pa.array([x[0].tolist()]),
                             "url": pa.array(["http://x"])}), tmp / "day3.parquet")
    code, _, err = cli("embed", tmp / "day3.parquet", "--out", tmp / "pool", "--append")
    assert code == 2 and "url" in err and "not in the pool" in err


def test_image_id_column_is_detected(cli, tmp_path):
    x, _ = gaussian_pool(20, d=4)
    _input(tmp_path / "hf.parquet", x, np.arange(500, 520), id_name="image_id", extra=False)
    code, out, err = cli("embed", tmp_path / "hf.parquet", "--out", tmp_path / "pool", "--json")
    assert code == 0, err
    assert open_pool(tmp_path / "pool").ids().tolist() == list(range(500, 520))
    t = pa.table({"image_id": pa.array([1, 2]), "caption_id": pa.array([3, 4]),
                  "embedding": pa.array(x[:2].tolist())})
    pq.write_table(t, tmp_path / "two.parquet")
    code, _, err = cli("embed", tmp_path / "two.parquet", "--out", tmp_path / "p2")
    assert code == 2 and "image_id, caption_id" in err and "--id-column" in err


def test_skip_existing_skips_identical_rows_and_refuses_changed_ones(cli, meta_pool):
    tmp, x, _, ids, _ = meta_pool
    before = open_pool(tmp / "pool").fingerprint
    code, _, err = cli("embed", tmp / "in.parquet", "--out", tmp / "pool", "--append")
    assert code == 2 and "already in the pool" in err
    code, out, err = cli("embed", tmp / "in.parquet", "--out", tmp / "pool", "--append", "--skip-existing", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["rows_added"], s["rows_skipped"], s["count"]) == (0, 300, 300)
    assert open_pool(tmp / "pool").fingerprint == before  # nothing rewritten
    # half old, half new rows
    both = np.concatenate([ids[250:], np.arange(9000, 9050)])
    _input(tmp / "mix.parquet", np.concatenate([x[250:], x[:50] + 1]), both)
    code, out, err = cli("embed", tmp / "mix.parquet", "--out", tmp / "pool", "--append", "--skip-existing", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["rows_added"], s["rows_skipped"], s["count"]) == (50, 50, 350)
    assert open_pool(tmp / "pool").ids().tolist()[-50:] == list(range(9000, 9050))
    changed = x[:3].copy()
    changed[1] += 0.5
    _input(tmp / "bad.parquet", changed, ids[:3])
    code, _, err = cli("embed", tmp / "bad.parquet", "--out", tmp / "pool", "--append", "--skip-existing")
    assert code == 2 and "row 1" in err and "different vector" in err
    assert open_pool(tmp / "pool").count == 350


def test_select_with_columns_and_csv_jsonl_stdout(cli, meta_pool):
    tmp, _, _, ids, _ = meta_pool
    pool_args = ("select", tmp / "pool", "--strategy", "kcenter", "--budget", "12", "--seed", "1")
    code, out, err = cli(*pool_args, "--with-columns", "file_path,width", "--out", tmp / "b.parquet", "--json")
    assert code == 0, err
    assert json.loads(out)["format"] == "parquet"
    t = pq.read_table(tmp / "b.parquet")
    assert t.column("file_path").to_pylist() == [f"img/{i}.jpg" for i in t.column("id").to_pylist()]
    assert t.schema.field("predicted_class").type == pa.string()

    assert cli(*pool_args, "--with-columns", "file_path", "--out", tmp / "b.csv")[0] == 0
    rows = list(csv.DictReader(open(tmp / "b.csv")))
    assert [int(r["id"]) for r in rows] == t.column("id").to_pylist()
    assert rows[0]["file_path"] == t.column("file_path")[0].as_py()
    assert not (tmp / "b.csv").read_bytes().startswith(b"PAR1")

    assert cli(*pool_args, "--with-columns", "file_path", "--out", tmp / "b.jsonl")[0] == 0
    recs = [json.loads(line, parse_constant=_no_constants) for line in open(tmp / "b.jsonl")]
    assert [r["id"] for r in recs] == t.column("id").to_pylist()
    assert recs[0]["score"] is None  # kcenter's first pick scores inf: null in strict JSON

    code, out, err = cli(*pool_args, "--out", "-")
    assert code == 0, err
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(out))] == t.column("id").to_pylist()
    assert not (tmp / "-").exists()
    code, _, err = cli(*pool_args, "--out", "-", "--json")
    assert code == 2 and "--out -" in err

    code, _, err = cli(*pool_args, "--with-columns", "url", "--out", tmp / "c.parquet")
    assert code == 2 and "url" in err and "file_path" in err and not (tmp / "c.parquet").exists()


def test_predicted_class_is_a_string_with_a_head(cli, meta_pool):
    tmp, _, y, ids, _ = meta_pool
    lab = np.arange(0, 300, 5)
    LabelSet(ids=ids[lab].astype(np.int64), labels=y[lab].tolist()).write(tmp / "labels.parquet")
    assert cli("train", tmp / "pool", tmp / "labels.parquet", "--out", tmp / "head.pt")[0] == 0
    assert cli("select", tmp / "pool", "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
               "--strategy", "margin", "--budget", "5", "--out", tmp / "m.parquet")[0] == 0
    col = pq.read_table(tmp / "m.parquet").column("predicted_class")
    assert col.type == pa.string() and set(col.to_pylist()) <= {"0", "1", "2"}


def test_readme_duckdb_join_back(meta_pool, cli):
    duckdb = pytest.importorskip("duckdb")
    tmp, _, _, _, _ = meta_pool
    assert cli("select", tmp / "pool", "--strategy", "kcenter", "--budget", "8", "--out", tmp / "batch.parquet")[0] == 0
    got = duckdb.sql(f"""
        SELECT b.id, b.rank, u.file_path FROM '{tmp}/batch.parquet' b
        JOIN '{tmp}/in.parquet' u ON u.id = b.id ORDER BY b.rank""").fetchall()
    assert len(got) == 8 and all(fp == f"img/{i}.jpg" for i, _, fp in got)


def test_info_lists_the_pools_metadata_columns(cli, meta_pool):
    tmp, *_ = meta_pool
    code, out, err = cli("info", tmp / "pool", "--json")
    assert code == 0, err
    assert json.loads(out)["metadata_columns"] == {"file_path": "string", "width": "int32"}
    code, out, _ = cli("info", tmp / "pool")
    assert "file_path" in out


@pytest.fixture
def hostile_pool(cli, tmp_path):
    """A pool whose kept columns hold a timestamp and cells a spreadsheet would run as formulas."""
    import datetime as dt

    x, _ = gaussian_pool(40, d=4, c=2)
    ids = np.arange(40)
    notes = ["-2+3+cmd|' /C calc'!A0", "=HYPERLINK(\"http://x\")", "@SUM(A1)", "+1", "-7", "plain"] * 7
    cols = {"id": pa.array(ids), "embedding": pa.array(x.tolist(), pa.list_(pa.float32())),
            "note": pa.array(notes[:40]),
            "seen": pa.array([dt.datetime(2025, 1, 1, 4, 9, 49, tzinfo=dt.timezone.utc)] * 40,
                             pa.timestamp("us", tz="UTC"))}
    pq.write_table(pa.table(cols), tmp_path / "in.parquet")
    assert cli("embed", tmp_path / "in.parquet", "--out", tmp_path / "pool", "--dtype", "float32", "-q")[0] == 0
    return tmp_path


def _csv_rows(path):
    return list(csv.DictReader(open(path, newline="")))


def test_csv_has_no_inf_and_one_timestamp_form(cli, hostile_pool):
    """Issue 20 item 14: a non-finite score is an empty CSV cell (null in JSON); timestamps are
    2025-01-01T04:09:49Z in CSV, JSON lines and Label Studio tasks alike."""
    tmp = hostile_pool
    sel = ("select", tmp / "pool", "--strategy", "kcenter", "--budget", "40", "--with-columns", "seen")
    assert cli(*sel, "--out", tmp / "b.parquet")[0] == 0
    assert cli(*sel, "--out", tmp / "b.csv")[0] == 0
    rows = _csv_rows(tmp / "b.csv")
    assert rows[0]["score"] == ""  # kcenter's first pick: inf
    assert {r["seen"] for r in rows} == {"2025-01-01T04:09:49Z"}
    for fmt, name in (("csv", "e.csv"), ("jsonl", "e.jsonl"), ("label-studio", "e.json")):
        code, _, err = cli("export", tmp / "b.parquet", "--pool", tmp / "pool", "--with-columns", "seen",
                           "--format", fmt, "--out", tmp / name)
        assert code == 0, err
    assert {r["seen"] for r in _csv_rows(tmp / "e.csv")} == {"2025-01-01T04:09:49Z"}
    assert _csv_rows(tmp / "e.csv")[0]["score"] == ""
    lines = [json.loads(ln) for ln in open(tmp / "e.jsonl")]
    assert {r["seen"] for r in lines} == {"2025-01-01T04:09:49Z"} and lines[0]["score"] is None
    tasks = json.loads((tmp / "e.json").read_text())
    assert {t["data"]["seen"] for t in tasks} == {"2025-01-01T04:09:49Z"}


def test_csv_cells_that_would_run_as_formulas_are_escaped(cli, hostile_pool):
    """Issue 20 item 28 (OWASP CSV injection): = + - @ cells get a leading ' in CSV from `alq select` and
    `alq export`; plain numbers stay; --no-escape-formulas writes them verbatim; Parquet/JSON are untouched."""
    tmp = hostile_pool
    sel = ("select", tmp / "pool", "--strategy", "random", "--budget", "40", "--with-columns", "note")
    assert cli(*sel, "--out", tmp / "b.csv")[0] == 0
    assert cli(*sel, "--out", tmp / "b.parquet")[0] == 0
    assert cli("export", tmp / "b.parquet", "--out", tmp / "e.csv")[0] == 0
    assert cli(*sel, "--out", tmp / "raw.csv", "--no-escape-formulas")[0] == 0
    assert cli("export", tmp / "b.parquet", "--out", tmp / "raw_e.csv", "--no-escape-formulas")[0] == 0
    escaped = {"-2+3+cmd|' /C calc'!A0": "'-2+3+cmd|' /C calc'!A0", '=HYPERLINK("http://x")':
               '\'=HYPERLINK("http://x")', "@SUM(A1)": "'@SUM(A1)", "+1": "+1", "-7": "-7", "plain": "plain"}
    original = pq.read_table(tmp / "b.parquet").column("note").to_pylist()
    for name in ("b.csv", "e.csv"):
        assert [r["note"] for r in _csv_rows(tmp / name)] == [escaped[v] for v in original], name
    for name in ("raw.csv", "raw_e.csv"):
        assert [r["note"] for r in _csv_rows(tmp / name)] == original, name
    assert set(original) == set(escaped)  # the Parquet keeps the values as they are
