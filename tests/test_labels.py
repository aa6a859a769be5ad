"""``alq labels import/show/pending``: merge rules, conflicts, types, and bad input (nothing written)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alq.io import parquet_metadata
from alq.store import PoolWriter
from alq.store.labels import read_labels


@pytest.fixture
def pool(tmp_path):
    w = PoolWriter(tmp_path / "pool", shard_rows=16)
    w.add(np.ones((50, 3), np.float32))  # ids 0..49
    w.close()
    return tmp_path / "pool"


@pytest.fixture
def spool(tmp_path):
    w = PoolWriter(tmp_path / "spool", shard_rows=16)
    w.add(np.ones((20, 3), np.float32), [f"img{i:02d}" for i in range(20)])
    w.close()
    return tmp_path / "spool"


def write(path, text):
    path.write_text(text)
    return path


def as_dict(path):
    ls = read_labels(path)
    return dict(zip(ls.ids.tolist(), ls.labels))


def test_import_csv_int_labels_then_merge(tmp_path, cli, pool):
    a = write(tmp_path / "a.csv", "id,label\n3,1\n5,0\n\n7,1\n")
    code, out, err = cli("labels", "import", a, "--pool", pool, "--out", tmp_path / "l.parquet", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["added"], s["total"], s["classes"]) == (3, 3, 2)
    assert as_dict(tmp_path / "l.parquet") == {3: 1, 5: 0, 7: 1}
    b = write(tmp_path / "b.csv", "id,label\n7,1\n9,2\n")  # 7 repeats with the same label: fine
    code, out, _ = cli("labels", "import", b, "--pool", pool, "--out", tmp_path / "l.parquet", "--json")
    s = json.loads(out)
    assert code == 0 and (s["added"], s["unchanged"], s["before"], s["total"]) == (1, 1, 3, 4)
    assert as_dict(tmp_path / "l.parquet") == {3: 1, 5: 0, 7: 1, 9: 2}
    meta = parquet_metadata(tmp_path / "l.parquet")
    assert meta["kind"] == "labels" and [i["file"] for i in meta["imports"]] == ["a.csv", "b.csv"]
    assert pq.read_table(tmp_path / "l.parquet").schema.field("label").type == pa.int64()


def test_string_labels_and_string_ids_parquet(tmp_path, cli, spool):
    pq.write_table(pa.table({"image": ["img03", "img11"], "cls": ["cat", "dog"]}), tmp_path / "a.parquet")
    code, _, err = cli("labels", "import", tmp_path / "a.parquet", "--pool", spool, "--out", tmp_path / "l.parquet",
                       "--id-column", "image", "--label-column", "cls", "-q")
    assert code == 0, err
    assert as_dict(tmp_path / "l.parquet") == {"img03": "cat", "img11": "dog"}


def test_csv_labels_stay_strings_when_not_all_integers(tmp_path, cli, pool):
    a = write(tmp_path / "a.csv", "id,label\n1,007\n2,3\n")  # "007" must not become 7
    assert cli("labels", "import", a, "--pool", pool, "--out", tmp_path / "l.parquet", "-q")[0] == 0
    assert as_dict(tmp_path / "l.parquet") == {1: "007", 2: "3"}
    b = write(tmp_path / "b.csv", "id,label\n4,5\n")  # int-looking CSV joins a string label set as strings
    assert cli("labels", "import", b, "--pool", pool, "--out", tmp_path / "l.parquet", "-q")[0] == 0
    assert as_dict(tmp_path / "l.parquet")[4] == "5"


def test_multilabel_delimited_and_list_column(tmp_path, cli, pool):
    a = write(tmp_path / "a.csv", 'id,label\n1,"cat|dog"\n2,dog\n3,\n')
    code, _, err = cli("labels", "import", a, "--delimiter", "|", "--pool", pool, "--out", tmp_path / "l.parquet", "-q")
    assert code == 0, err
    pq.write_table(pa.table({"id": [4, 5], "label": pa.array([["bird"], ["cat", "bird"]])}), tmp_path / "b.parquet")
    assert cli("labels", "import", tmp_path / "b.parquet", "--pool", pool, "--out", tmp_path / "l.parquet", "-q")[0] == 0
    got = as_dict(tmp_path / "l.parquet")
    assert got == {1: ("cat", "dog"), 2: ("dog",), 3: (), 4: ("bird",), 5: ("cat", "bird")}
    code, out, _ = cli("labels", "show", tmp_path / "l.parquet", "--json")
    s = json.loads(out)
    assert s["multilabel"] and s["class_counts"] == {"bird": 2, "cat": 2, "dog": 2} and s["no_positive"] == 1
    # same set in another order is not a conflict
    c = write(tmp_path / "c.csv", 'id,label\n1,"dog|cat"\n')
    assert cli("labels", "import", c, "--delimiter", "|", "--pool", pool, "--out", tmp_path / "l.parquet", "-q")[0] == 0


@pytest.mark.parametrize("policy,expect", [("keep-old", {1: "a", 2: "b", 3: "c"}), ("take-new", {1: "a", 2: "z", 3: "c"})])
def test_conflict_policies(tmp_path, cli, pool, policy, expect):
    write(tmp_path / "a.csv", "id,label\n1,a\n2,b\n")
    cli("labels", "import", tmp_path / "a.csv", "--pool", pool, "--out", tmp_path / "l.parquet", "-q")
    write(tmp_path / "b.csv", "id,label\n2,z\n3,c\n")
    code, out, _ = cli("labels", "import", tmp_path / "b.csv", "--pool", pool, "--out", tmp_path / "l.parquet",
                       "--on-conflict", policy, "--json")
    assert code == 0 and as_dict(tmp_path / "l.parquet") == expect
    s = json.loads(out)
    assert (s["changed"], s["kept_old"]) == ((0, 1) if policy == "keep-old" else (1, 0))


def test_dry_run_writes_nothing(tmp_path, cli, pool):
    write(tmp_path / "a.csv", "id,label\n1,a\n")
    code, out, _ = cli("labels", "import", tmp_path / "a.csv", "--pool", pool, "--out", tmp_path / "l.parquet",
                       "--dry-run", "--json")
    assert code == 0 and json.loads(out)["written"] is False and not (tmp_path / "l.parquet").exists()


# -- bad input -----------------------------------------------------------------
BAD = {
    "unknown id": ("id,label\n1,a\n99,b\n77,c\n", [], r"a.csv: line 3: id 99 is not in the pool .*\(2 unknown ids"),
    "conflict with file": ("id,label\n2,zzz\n", [], r"a.csv: line 2: id 2 labeled 'zzz', but .*l.parquet says 'b'"),
    "conflict within file": ("id,label\n10,a\n11,b\n10,c\n", [], r"a.csv: line 4: id 10 labeled 'c', but .*a.csv: line 2 says 'a'"),
    "empty file": ("", [], r"a.csv: empty file"),
    "header only": ("id,label\n", [], r"a.csv: no rows after the header"),
    "no label column": ("id,cls\n1,a\n", [], r"a.csv: no 'label' column \(header has id, cls\)"),
    "no id column": ("key,label\n1,a\n", [], r"a.csv: no 'id' column"),
    "empty label": ("id,label\n1,a\n4,\n", [], r"a.csv: line 3: empty label"),
    "empty id": ("id,label\n,a\n", [], r"a.csv: line 2: empty id"),
    "non-integer id": ("id,label\nx7,a\n", [], r"a.csv: line 2: id 'x7' is not an integer"),
    "ragged row": ("id,label\n1,a,extra\n", [], r"a.csv: line 2: 3 fields, the header has 2"),
    "multi into single": ('id,label\n5,"a|b"\n', ["--delimiter", "|"], r"a.csv: multi-label rows, but the labels so far are single labels"),
    "bad policy": ("id,label\n5,a\n", ["--on-conflict", "newest"], r"--on-conflict='newest' must be one of"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_and_writes_nothing(tmp_path, cli, pool, case):
    write(tmp_path / "seed.csv", "id,label\n1,a\n2,b\n")
    assert cli("labels", "import", tmp_path / "seed.csv", "--pool", pool, "--out", tmp_path / "l.parquet", "-q")[0] == 0
    before = (tmp_path / "l.parquet").read_bytes()
    text, extra, pattern = BAD[case]
    write(tmp_path / "a.csv", text)
    code, out, err = cli("labels", "import", tmp_path / "a.csv", *extra, "--pool", pool, "--out", tmp_path / "l.parquet")
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), lines
    assert (tmp_path / "l.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "l.parquet", "pool", "seed.csv"]  # no lock files


def test_bad_parquet_inputs(tmp_path, cli, pool, spool):
    out = tmp_path / "l.parquet"
    pq.write_table(pa.table({"id": [1, 2], "label": pa.array([0.5, 1.0])}), tmp_path / "f.parquet")
    code, _, err = cli("labels", "import", tmp_path / "f.parquet", "--pool", pool, "--out", out)
    assert code == 2 and "f.parquet: row 0: label 0.5 is not a whole number" in err  # 1.0 alone would be class 1
    pq.write_table(pa.table({"id": [1, 2], "label": [1, 2]}), tmp_path / "i.parquet")
    code, _, err = cli("labels", "import", tmp_path / "i.parquet", "--pool", spool, "--out", out)
    assert code == 2 and "ids are integers but the pool uses string ids" in err
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "label": pa.array([], pa.int64())}), tmp_path / "e.parquet")
    code, _, err = cli("labels", "import", tmp_path / "e.parquet", "--pool", pool, "--out", out)
    assert code == 2 and "e.parquet: no rows" in err
    pq.write_table(pa.table({"id": [1, 2], "label": pa.array(["a", None])}), tmp_path / "n.parquet")
    code, _, err = cli("labels", "import", tmp_path / "n.parquet", "--pool", pool, "--out", out)
    assert code == 2 and "n.parquet: row 1: empty label" in err
    (tmp_path / "t.parquet").write_bytes(b"PAR1 truncated")
    code, _, err = cli("labels", "import", tmp_path / "t.parquet", "--pool", pool, "--out", out)
    assert code == 2 and "t.parquet: not a readable Parquet file" in err
    assert not out.exists()


def test_int_labels_then_string_labels_is_refused(tmp_path, cli, pool):
    write(tmp_path / "a.csv", "id,label\n1,3\n")
    cli("labels", "import", tmp_path / "a.csv", "--pool", pool, "--out", tmp_path / "l.parquet", "-q")
    write(tmp_path / "b.csv", "id,label\n2,cat\n")
    code, _, err = cli("labels", "import", tmp_path / "b.csv", "--pool", pool, "--out", tmp_path / "l.parquet")
    assert code == 2 and "b.csv: line 2: label 'cat' is not an integer" in err


# -- show / pending -------------------------------------------------------------
def test_show_table_and_pool_fraction(tmp_path, cli, pool):
    write(tmp_path / "a.csv", "id,label\n1,cat\n2,cat\n3,dog\n4,cat\n5,emu\n")
    cli("labels", "import", tmp_path / "a.csv", "--pool", pool, "--out", tmp_path / "l.parquet", "-q")
    code, out, _ = cli("labels", "show", tmp_path / "l.parquet", "--pool", pool)
    assert code == 0
    assert "5 labeled ids, 3 classes, 10.00% of the pool's 50 rows" in out
    assert re.search(r"cat\s+│\s+3\s+│\s+60.0%", out)
    code, out, _ = cli("labels", "show", tmp_path / "l.parquet", "--json")
    assert json.loads(out)["class_counts"] == {"cat": 3, "dog": 1, "emu": 1}


def test_pending_sent_minus_labeled(tmp_path, cli, pool):
    pq.write_table(pa.table({"id": [4, 8, 15, 16], "rank": [0, 1, 2, 3]}), tmp_path / "batch1.parquet")
    write(tmp_path / "batch2.csv", "id\n23\n42\n8\n")
    write(tmp_path / "a.csv", "id,label\n4,x\n15,y\n42,x\n")
    cli("labels", "import", tmp_path / "a.csv", "--pool", pool, "--out", tmp_path / "l.parquet", "-q")
    code, out, err = cli("labels", "pending", "--sent", tmp_path / "batch1.parquet", "--sent", tmp_path / "batch2.csv",
                         "--labels", tmp_path / "l.parquet", "--pool", pool, "--out", tmp_path / "pending.parquet",
                         "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["sent"], s["sent_unique"], s["labeled"], s["pending"]) == (7, 6, 3, 3)
    t = pq.read_table(tmp_path / "pending.parquet").to_pydict()
    assert t == {"id": [8, 16, 23], "sent_in": ["batch1.parquet", "batch1.parquet", "batch2.csv"]}
    assert parquet_metadata(tmp_path / "pending.parquet")["kind"] == "pending"
    # the pending file is what `alq select --pending` reads
    from alq.store.labels import read_id_list

    assert read_id_list(tmp_path / "pending.parquet").tolist() == [8, 16, 23]


def test_pending_unknown_id_with_pool(tmp_path, cli, pool):
    write(tmp_path / "b.csv", "id\n3\n999\n")
    code, _, err = cli("labels", "pending", "--sent", tmp_path / "b.csv", "--pool", pool, "--out", tmp_path / "p.parquet")
    assert code == 2 and "b.csv: row 1: id 999 is not in the pool" in err and not (tmp_path / "p.parquet").exists()


def test_sample_seed_labels_import(tmp_path, cli):
    """The demo's step: sample_data/labels_round0.csv into a pool built from sample_data/pool.parquet."""
    sd = Path(__file__).resolve().parents[1] / "sample_data"
    assert cli("embed", sd / "pool.parquet", "--out", tmp_path / "pool", "-q")[0] == 0
    code, out, err = cli("labels", "import", sd / "labels_round0.csv", "--pool", tmp_path / "pool",
                         "--out", tmp_path / "l.parquet", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["total"] == 100 and s["classes"] == 10
    truth = as_dict(sd / "pool_labels.parquet")
    assert all(truth[k] == v for k, v in as_dict(tmp_path / "l.parquet").items())


def test_concurrent_import_is_refused(tmp_path, cli, pool):
    import fcntl
    import os

    write(tmp_path / "a.csv", "id,label\n1,a\n")
    fd = os.open(tmp_path / ".l.parquet.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another `alq labels import` into the same file is running
    try:
        code, _, err = cli("labels", "import", tmp_path / "a.csv", "--pool", pool, "--out", tmp_path / "l.parquet")
        assert code == 2 and "is writing it right now" in err and not (tmp_path / "l.parquet").exists()
    finally:
        os.close(fd)
    assert cli("labels", "import", tmp_path / "a.csv", "--pool", pool, "--out", tmp_path / "l.parquet", "-q")[0] == 0


def test_pool_remembers_its_id_column(tmp_path, cli):
    """Issue 20 item 11: a pool embedded from an `image_id` column takes labels keyed by `image_id`."""
    vec = pa.array(np.ones((6, 3), np.float32).tolist(), pa.list_(pa.float32()))
    pq.write_table(pa.table({"image_id": [10, 11, 12, 13, 14, 15], "embedding": vec}), tmp_path / "hf.parquet")
    assert cli("embed", tmp_path / "hf.parquet", "--out", tmp_path / "pool", "-q")[0] == 0
    assert json.loads((tmp_path / "pool" / "manifest.json").read_text())["extra"]["id_columns"] == ["image_id"]
    a = write(tmp_path / "a.csv", "image_id,label\n11,cat\n14,dog\n")
    code, _, err = cli("labels", "import", a, "--pool", tmp_path / "pool", "--out", tmp_path / "l.parquet", "-q")
    assert code == 0, err
    assert as_dict(tmp_path / "l.parquet") == {11: "cat", 14: "dog"}
    pq.write_table(pa.table({"image_id": [12], "label": ["emu"]}), tmp_path / "b.parquet")
    assert cli("labels", "import", tmp_path / "b.parquet", "--pool", tmp_path / "pool", "--out",
               tmp_path / "l.parquet", "-q")[0] == 0
    assert as_dict(tmp_path / "l.parquet")[12] == "emu"
    # an append from a file with another id column name keeps both names
    pq.write_table(pa.table({"key_id": [20], "embedding": pa.array([[1.0, 1.0, 1.0]], pa.list_(pa.float32()))}),
                   tmp_path / "more.parquet")
    assert cli("embed", tmp_path / "more.parquet", "--out", tmp_path / "pool", "--append", "-q")[0] == 0
    assert json.loads((tmp_path / "pool" / "manifest.json").read_text())["extra"]["id_columns"] == ["image_id",
                                                                                                   "key_id"]
    # both `id` and the pool's id column: which one is meant is not guessed
    c = write(tmp_path / "c.csv", "id,image_id,label\n0,13,cat\n")
    code, _, err = cli("labels", "import", c, "--pool", tmp_path / "pool", "--out", tmp_path / "l.parquet")
    assert code == 2 and "both an 'id' column and 'image_id'" in err and "--id-column" in err
    code, _, err = cli("labels", "import", c, "--id-column", "image_id", "--pool", tmp_path / "pool", "--out",
                       tmp_path / "l.parquet", "-q")
    assert code == 0 and as_dict(tmp_path / "l.parquet")[13] == "cat"


def test_no_id_column_hint_names_the_id_like_column(tmp_path, cli, pool):
    a = write(tmp_path / "a.csv", "photo_id,label\n1,cat\n")
    code, _, err = cli("labels", "import", a, "--pool", pool, "--out", tmp_path / "l.parquet")
    assert code == 2 and "no 'id' column" in err and "pass --id-column photo_id" in err


def test_classes_allowlist_int_labels_and_from_a_head(tmp_path, cli):
    """Issue 20 item 3: --classes 0,1 for integer labels; --classes-from takes a trained head's classes."""
    from conftest import gaussian_pool

    x, y = gaussian_pool(60, d=4, c=2)
    w = PoolWriter(tmp_path / "pool", shard_rows=32)
    w.add(x)
    w.close()
    pool, out = tmp_path / "pool", tmp_path / "l.parquet"
    write(tmp_path / "a.csv", "id,label\n" + "".join(f"{i},{y[i]}\n" for i in range(20)))
    assert cli("labels", "import", tmp_path / "a.csv", "--classes", "0,1", "--pool", pool, "--out", out, "-q")[0] == 0
    assert cli("train", pool, out, "--out", tmp_path / "head.pt", "-q")[0] == 0
    write(tmp_path / "b.csv", "id,label\n30,1\n31,2\n")
    code, _, err = cli("labels", "import", tmp_path / "b.csv", "--classes-from", tmp_path / "head.pt", "--pool", pool,
                       "--out", out)
    assert code == 2 and "b.csv: line 3: label 2 is not one of --classes (0, 1)" in err
    code, _, err = cli("labels", "import", tmp_path / "b.csv", "--classes", "0,1", "--pool", pool, "--out", out)
    assert code == 2 and "b.csv: line 3: label 2 is not one of --classes (0, 1)" in err
    code, _, err = cli("labels", "import", tmp_path / "b.csv", "--classes", "0,one", "--pool", pool, "--out", out)
    assert code == 2 and "--classes: 'one' is not an integer, but the labels are integers" in err
    code, out_json, err = cli("labels", "import", tmp_path / "b.csv", "--pool", pool, "--out", out, "--json")
    assert code == 0 and json.loads(out_json)["new_classes"] == [2] and "new class 2 (1 row)" in err
