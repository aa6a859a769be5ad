"""`alq export` to Label Studio tasks and `alq labels import` of a Label Studio export: the round trip."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import gaussian_pool

from alq.store.labels import read_labels


@pytest.fixture
def batch(cli, tmp_path):
    x, y = gaussian_pool(120, d=6, c=3)
    ids = np.arange(500, 620)
    pq.write_table(pa.table({"id": ids, "embedding": pa.array(x.tolist(), pa.list_(pa.float32())),
                             "url": [f"https://img.example/{i}.jpg" for i in ids]}), tmp_path / "in.parquet")
    assert cli("embed", tmp_path / "in.parquet", "--out", tmp_path / "pool", "-q")[0] == 0
    code, _, err = cli("select", tmp_path / "pool", "--strategy", "kcenter", "--budget", "6", "--out",
                       tmp_path / "batch.parquet", "-q")
    assert code == 0, err
    truth = dict(zip(ids.tolist(), ["cat", "dog", "bird"] * 40))
    return tmp_path, truth


def _ls_export(tasks: list[dict], truth: dict) -> list[dict]:
    """What Label Studio's JSON export looks like for these tasks once annotated (shape of LS 1.x exports)."""
    out = []
    for n, t in enumerate(tasks):
        task = {"id": 9000 + n, "data": t["data"], "project": 3, "annotations": [], "predictions": [],
                "created_at": "2026-12-01T10:00:00Z"}
        label = truth[t["data"]["alq_id"]]
        if n == 0:
            pass  # not annotated yet: still pending
        elif n == 1:  # first annotation cancelled, second kept
            task["annotations"] = [
                {"id": 1, "was_cancelled": True, "result": []},
                {"id": 2, "was_cancelled": False, "completed_by": 1,
                 "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                             "value": {"choices": [label]}, "origin": "manual"}]}]
        else:
            task["annotations"] = [{"id": 10 + n, "was_cancelled": False, "completed_by": 1, "lead_time": 2.5,
                                    "result": [{"id": "r1", "from_name": "label", "to_name": "image",
                                                "type": "choices", "value": {"choices": [label]}}]}]
        out.append(task)
    return out


def test_label_studio_round_trip(cli, batch):
    tmp, truth = batch
    code, out, err = cli("export", tmp / "batch.parquet", "--pool", tmp / "pool", "--with-columns", "url",
                         "--format", "label-studio", "--out", tmp / "tasks.json", "--json")
    assert code == 0, err
    assert json.loads(out)["rows"] == 6 and json.loads(out)["output"] == str(tmp / "tasks.json")
    tasks = json.loads((tmp / "tasks.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    sel = pq.read_table(tmp / "batch.parquet")
    assert [t["data"]["alq_id"] for t in tasks] == sel.column("id").to_pylist()
    assert all(t["data"]["url"] == f"https://img.example/{t['data']['alq_id']}.jpg" for t in tasks)
    assert tasks[0]["data"]["alq_score"] is None  # kcenter's first pick scores inf
    (tmp / "ls-export.json").write_text(json.dumps(_ls_export(tasks, truth)))
    code, out, err = cli("labels", "import", tmp / "ls-export.json", "--pool", tmp / "pool", "--out",
                         tmp / "labels.parquet", "--json")
    assert code == 0, err
    lab = read_labels(tmp / "labels.parquet")
    got = dict(zip(lab.ids.tolist(), lab.labels))
    assert got == {t["data"]["alq_id"]: truth[t["data"]["alq_id"]] for t in tasks[1:]}
    # the pending task is still out: `labels pending` sees it
    code, out, err = cli("labels", "pending", "--sent", tmp / "batch.parquet", "--labels", tmp / "labels.parquet",
                         "--out", tmp / "pending.parquet", "--json")
    assert code == 0 and json.loads(out)["pending"] == 1


def test_export_csv_to_stdout_and_refusals(cli, batch):
    tmp, _ = batch
    code, out, err = cli("export", tmp / "batch.parquet", "--pool", tmp / "pool", "--with-columns", "url",
                         "--out", "-")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 6 and rows[0]["url"].startswith("https://img.example/")
    code, _, err = cli("export", tmp / "batch.parquet", "--with-columns", "url", "--out", tmp / "x.csv")
    assert code == 2 and "--pool" in err
    code, _, err = cli("export", tmp / "in.parquet", "--out", tmp / "x.csv")
    assert code == 2 and "not an alq selection" in err
    (tmp / "bad.json").write_text(json.dumps({"tasks": []}))
    code, _, err = cli("labels", "import", tmp / "bad.json", "--pool", tmp / "pool", "--out", tmp / "l.parquet")
    assert code == 2 and "JSON list of tasks" in err and not (tmp / "l.parquet").exists()


def _min_records(tasks: list[dict], truth: dict) -> list[dict]:
    """Label Studio's JSON-MIN export of these tasks (one flat record per annotation, as its converter writes it):
    the task's data, `id` = Label Studio's task id (here 600+n: also ids in the pool), the choice under the
    control's name (`choice`); task 0 is not annotated yet."""
    out = []
    for n, t in enumerate(tasks):
        rec = {**t["data"], "id": 600 + n}
        if n:
            rec["choice"] = truth[t["data"]["alq_id"]]
        rec.update(annotator=1, annotation_id=(20 + n) if n else None, created_at="2026-12-01T10:00:00Z",
                   updated_at="2026-12-01T10:00:00Z", lead_time=1.5)
        out.append(rec)
    return out


@pytest.mark.parametrize("shape", ["json-min", "csv"])
def test_label_studio_min_and_csv_exports_round_trip(cli, batch, shape):
    """Issue 20 item 1: JSON-MIN and CSV exports key rows by alq_id, never by Label Studio's task `id`."""
    tmp, truth = batch
    code, _, err = cli("export", tmp / "batch.parquet", "--pool", tmp / "pool", "--with-columns", "url",
                       "--format", "label-studio", "--out", tmp / "tasks.json", "-q")
    assert code == 0, err
    tasks = json.loads((tmp / "tasks.json").read_text())
    records = _min_records(tasks, truth)
    if shape == "json-min":
        src = tmp / "ls-min.json"
        src.write_text(json.dumps(records))
    else:
        src = tmp / "ls.csv"
        with open(src, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=sorted({k for r in records for k in r}))
            w.writeheader()
            w.writerows(records)
    code, out, err = cli("labels", "import", src, "--from-name", "choice", "--pool", tmp / "pool", "--out",
                         tmp / "labels.parquet", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["added"], s["not_annotated"]) == (5, 1)
    lab = read_labels(tmp / "labels.parquet")
    assert dict(zip(lab.ids.tolist(), lab.labels)) == {t["data"]["alq_id"]: truth[t["data"]["alq_id"]]
                                                       for t in tasks[1:]}
