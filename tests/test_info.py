"""``alq info``: every kind of alq file, and --verify naming the first bad shard."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from alq.io import write_json, write_parquet


@pytest.fixture
def pool(tmp_path):
    from alq.store import PoolWriter

    w = PoolWriter(tmp_path / "pool", shard_rows=10, dtype="float32")
    w.add(np.arange(90, dtype=np.float32).reshape(30, 3), [f"r{i}" for i in range(30)])
    w.close()
    return tmp_path / "pool"


def info(cli, *args):
    code, out, err = cli("info", *args, "--json")
    return code, (json.loads(out) if out.strip() else None), err


def test_pool(cli, pool):
    code, s, _ = info(cli, pool)
    assert code == 0
    assert (s["kind"], s["count"], s["dim"], s["dtype"], s["id_type"], s["shards"]) == ("pool", 30, 3, "float32", "string", 3)
    assert (s["first_id"], s["last_id"]) == ("r0", "r29") and "problems" not in s
    code, s, _ = info(cli, pool, "--verify")
    assert code == 0 and s["verified"] is True and s["problems"] == []
    code, out, _ = cli("info", pool)
    assert code == 0 and "alq-pool v1" in out and "verified" not in out


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "ids"])
def test_verify_names_the_first_bad_shard(cli, pool, damage):
    target = pool / ("shard-000002.parquet" if damage == "ids" else "shard-000001.npy")
    later = pool / "shard-000002.npy"
    later.write_bytes(later.read_bytes()[:-4])  # a later shard is bad too: the first one must be named
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[-1] ^= 1
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-12])
    elif damage == "delete":
        target.unlink()
    else:
        target.write_bytes(b"garbage")
    code, out, err = cli("info", pool, "--verify", "--json")
    assert code == 2
    s = json.loads(out)
    assert s["verified"] is False
    first = "shard-000002.npy" if damage == "ids" else "shard-000001.npy"
    assert first in s["problems"][0]
    assert err.startswith("Error: ") and first in err.splitlines()[0]


def test_unlisted_files_and_stale_temp_dirs_are_reported(cli, pool):
    (pool / "shard-000009.npy").write_bytes(b"left by a killed append")
    (pool.parent / ".pool.x1y2.building").mkdir()
    code, s, _ = info(cli, pool, "--verify")
    assert code == 0 and s["unlisted_files"] == ["shard-000009.npy"] and s["stale_temp"] == [".pool.x1y2.building"]


def test_labels_file(tmp_path, cli, pool):
    (tmp_path / "a.csv").write_text("id,label\nr1,cat\nr2,dog\nr3,cat\n")
    cli("labels", "import", tmp_path / "a.csv", "--pool", pool, "--out", tmp_path / "l.parquet", "-q")
    code, s, _ = info(cli, tmp_path / "l.parquet", "--verify")
    assert code == 0 and s["kind"] == "labels" and s["rows"] == 3 and s["class_counts"] == {"cat": 2, "dog": 1}
    assert s["imports"] == 1 and s["last_import"] == "a.csv" and s["verified"]


def test_selection_file_and_duplicate_check(tmp_path, cli):
    meta = {"kind": "selection", "strategy": "margin", "budget": 3, "seed": 1, "round": 2, "pool_fingerprint": "ab"}
    write_parquet(tmp_path / "s.parquet", pa.table({"id": [5, 9, 2], "rank": [0, 1, 2]}), meta)
    code, s, _ = info(cli, tmp_path / "s.parquet", "--verify")
    assert code == 0 and s["kind"] == "selection" and s["strategy"] == "margin" and s["selected"] == 3 and s["round"] == 2
    write_parquet(tmp_path / "d.parquet", pa.table({"id": [5, 9, 5], "rank": [0, 1, 2]}), meta)
    code, s, err = info(cli, tmp_path / "d.parquet", "--verify")
    assert code == 2 and "id 5 appears at rows 0 and 2" in err


def test_generic_and_plain_parquet(tmp_path, cli):
    write_parquet(tmp_path / "r.parquet", pa.table({"round": [0, 1], "accuracy": [0.5, 0.7]}),
                  {"kind": "results", "strategy": "margin"})
    code, s, _ = info(cli, tmp_path / "r.parquet")
    assert code == 0 and s["kind"] == "results" and s["rows"] == 2 and s["metadata"]["strategy"] == "margin"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1.0]}), tmp_path / "plain.parquet")
    code, s, _ = info(cli, tmp_path / "plain.parquet", "--verify")
    assert code == 0 and s["kind"] == "parquet" and s["columns"] == {"x": "double"} and s["verified"]


def test_head_file(tmp_path, cli):
    from alq.model.head import Head, HeadNet

    head = Head(nets=[HeadNet(4, 3)], classes=["a", "b", "c"], meta={"metrics": {"accuracy": 0.9},
                                                                   "fingerprint": "f00"})
    head.save(tmp_path / "head.pt")
    code, s, _ = info(cli, tmp_path / "head.pt")
    assert code == 0
    assert (s["kind"], s["dim"], s["classes"], s["ensemble"], s["metrics"]) == ("head", 4, ["a", "b", "c"], 1,
                                                                              {"accuracy": 0.9})
    (tmp_path / "bad.pt").write_bytes(b"nope")
    code, _, err = info(cli, tmp_path / "bad.pt")
    assert code == 2 and "bad.pt: not a readable alq head file" in err


@pytest.mark.parametrize("name,fmt", [("_clusters.parquet", "alq-clusters"), ("_scores.parquet", "alq-scores"),
                                      ("_clusters.json", "alq-clusters"), ("_scores.json", "alq-scores"),
                                      ("clusters.json", "alq-clusters"), ("scores.json", "alq-scores")])  # + legacy
def test_clusters_and_scores_dirs(tmp_path, cli, name, fmt):
    d = tmp_path / "out"
    d.mkdir()
    (d / "part-0.parquet").write_bytes(b"x")
    import hashlib

    sha = hashlib.sha256(b"x").hexdigest()
    def write_record(record):
        if name.endswith(".parquet"):  # the layout of today (alq.store.sidecar); .json: the earlier ones
            import pyarrow as pa

            from alq.store import sidecar

            sidecar.write(d / name, record, pa.schema([("id", pa.int64())]))
        else:
            write_json(d / name, record)

    write_record({"format": fmt, "k": 7, "shards": [{"file": "part-0.parquet", "rows": 1, "sha256": sha}]})
    code, s, _ = info(cli, d, "--verify")
    assert code == 0 and s["kind"] == fmt.removeprefix("alq-") and s["summary"]["k"] == 7 and s["verified"]
    (d / "part-0.parquet").write_bytes(b"y")
    code, s, err = info(cli, d, "--verify")
    assert code == 2 and "part-0.parquet: checksum mismatch" in err
    write_record({"format": "something-else"})
    code, _, err = info(cli, d)
    assert code == 2 and f"expected '{fmt}'" in err


def test_npy_and_unknown(tmp_path, cli):
    np.save(tmp_path / "a.npy", np.zeros((4, 2), np.float16))
    code, s, _ = info(cli, tmp_path / "a.npy")
    assert code == 0 and s["shape"] == [4, 2] and s["dtype"] == "float16"
    (tmp_path / "x.txt").write_text("hi")
    code, _, err = info(cli, tmp_path / "x.txt")
    assert code == 2 and "not a file alq knows" in err
    code, _, err = info(cli, tmp_path / "missing")
    assert code == 2 and "missing: not found" in err
    (tmp_path / "empty").mkdir()
    code, _, err = info(cli, tmp_path / "empty")
    assert code == 2 and "not an alq directory" in err
