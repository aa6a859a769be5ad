"""Every command's --json is strict JSON (no NaN/Infinity) and names what it wrote under `output`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alq.store.labels import LabelSet


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
def test_every_json_output_is_strict_and_names_its_output(cli, small_pool, tmp_path):
    pool, _, y = small_pool
    t = tmp_path
    LabelSet(ids=np.arange(700, dtype=np.int64), labels=y.tolist()).write(t / "all.parquet")
    (t / "seed.csv").write_text("id,label\n" + "".join(f"{i},{y[i]}\n" for i in range(0, 700, 10)))
    runs = [
        (("synth", "--out", t / "syn", "-n", 200, "-d", 4, "-c", 3, "--labels-out", t / "syn.parquet"), t / "syn"),
        (("embed", t / "syn", "--out", t / "copy"), t / "copy"),
        (("labels", "import", t / "seed.csv", "--pool", pool, "--out", t / "labels.parquet"), t / "labels.parquet"),
        (("train", pool, t / "labels.parquet", "--out", t / "head.pt"), t / "head.pt"),
        (("score", pool, "--head", t / "head.pt", "--out", t / "scores"), t / "scores"),
        (("cluster", pool, "--out", t / "clusters"), t / "clusters"),
        (("select", pool, "--strategy", "kcenter", "--budget", 10, "--labels", t / "labels.parquet",
          "--out", t / "k.parquet"), t / "k.parquet"),  # kcenter's first score is inf
        (("labels", "pending", "--sent", t / "k.parquet", "--labels", t / "labels.parquet",
          "--out", t / "pending.parquet"), t / "pending.parquet"),
        (("export", t / "k.parquet", "--out", t / "k.jsonl"), t / "k.jsonl"),
        (("split", pool, "--labels", t / "all.parquet", "--out", t / "exp"), t / "exp"),
        (("transform", t / "exp" / "pool", "--labels", t / "exp" / "pool_labels.parquet", "--per-class-cap", 100,
          "--out", t / "capped", "--labels-out", t / "capped.parquet"), t / "capped"),
        (("simulate", "--pool", t / "exp" / "pool", "--labels", t / "exp" / "pool_labels.parquet",
          "--test-pool", t / "exp" / "test", "--test-labels", t / "exp" / "test_labels.parquet",
          "--strategies", "random,kcenter", "--seed-size", 20, "--budget", 20, "--rounds", 2, "--repeats", 2,
          "--max-iter", 30, "--out", t / "run"), t / "run"),
        (("report", t / "run" / "results.parquet", "--out", t / "rep"), t / "rep"),
        (("info", t / "k.parquet"), None),
        (("labels", "show", t / "labels.parquet"), None),
    ]
    for args, output in runs:
        code, out, err = cli(*args, "--json")
        assert code == 0, (args[0], err)
        s = _strict(out)
        if output is not None:
            assert s.get("output") == str(output), (args[0], sorted(s))
    _strict((t / "rep" / "report.json").read_text())
    for line in (t / "k.jsonl").read_text().splitlines():
        _strict(line)
