"""The stopping signal: Cohen's kappa on a fixed stop set (train --previous, simulate) and the report's stop rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import gaussian_pool
from sklearn.metrics import cohen_kappa_score

from alq.model.head import load_head
from alq.stopping import cohen_kappa, draw_stop_set, predictions, stop_round, stopping_summary
from alq.store import PoolWriter, open_pool
from alq.store.labels import LabelSet


@pytest.mark.parametrize("seed", range(6))
def test_kappa_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(5, 400)), int(rng.integers(2, 8))
    a = rng.integers(0, c, n)
    b = np.where(rng.random(n) < rng.random(), a, rng.integers(0, c, n))
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    names = np.array([f"class-{k}" for k in range(c)], dtype=object)
    assert cohen_kappa(names[a], names[b]) == pytest.approx(cohen_kappa_score(names[a], names[b]), abs=1e-12)


def test_kappa_edge_cases():
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0  # both constant and equal
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError):
        cohen_kappa([1, 2], [1])


def test_stop_set_is_seeded_uniform_and_avoids_excluded_rows():
    excluded = np.zeros(5000, bool)
    excluded[::3] = True
    a = draw_stop_set(5000, excluded, 500, seed=4)
    assert len(a) == 500 == len(np.unique(a)) and not excluded[a].any() and (np.diff(a) > 0).all()
    assert (draw_stop_set(5000, excluded, 500, seed=4) == a).all()
    assert not (draw_stop_set(5000, excluded, 500, seed=5) == a).all()


def test_stop_round_needs_consecutive_rounds():
    assert stop_round([None, 0.95, 0.99, 0.98, 0.995, 0.999, 1.0]) == 5
    assert stop_round([None, 0.999, 0.99]) == 2
    assert stop_round([None, 0.999, 0.5, 0.999]) is None
    assert stop_round([None, 0.999, float("nan"), 0.999, 0.999], rounds=2) == 4
    assert stop_round([None, 0.999, 0.999, 0.999], rounds=3) == 3


@pytest.fixture
def pool_labels(tmp_path):
    x, y = gaussian_pool(800, d=10, c=4, seed=2, sep=1.0)
    w = PoolWriter(tmp_path / "pool", shard_rows=200, dtype="float32")
    w.add(x)
    w.close()
    for name, step in (("l1", 20), ("l2", 8), ("l3", 7)):
        rows = np.arange(0, 800, step)
        LabelSet(ids=rows.astype(np.int64), labels=y[rows].tolist()).write(tmp_path / f"{name}.parquet")
    return tmp_path, x, y


def test_train_previous_reports_kappa_on_the_fixed_stop_set(cli, pool_labels):
    tmp, x, _ = pool_labels
    base = ("--stop-set-size", "300")  # --weight-decay auto: cv_accuracy and its trend
    code, out, err = cli("train", tmp / "pool", tmp / "l1.parquet", "--out", tmp / "h1.pt", *base, "--json")
    assert code == 0, err
    s1 = json.loads(out)["stopping"]
    assert s1["kappa"] is None and s1["stop"] is False and s1["stop_set"] == "drawn" and s1["stop_set_rows"] == 300
    h1 = load_head(tmp / "h1.pt")
    stop_ids = np.asarray(h1.meta["stop_set"]["ids"])
    assert len(stop_ids) == 300 and not np.isin(stop_ids, np.arange(0, 800, 20)).any()  # unlabeled when drawn
    code, out, err = cli("train", tmp / "pool", tmp / "l2.parquet", "--out", tmp / "h2.pt", *base,
                         "--previous", tmp / "h1.pt", "--json")
    assert code == 0, err
    s2 = json.loads(out)
    st = s2["stopping"]
    h2 = load_head(tmp / "h2.pt")
    assert h2.meta["stop_set"]["ids"] == stop_ids.tolist() and st["stop_set"] == "previous head"
    rows = open_pool(tmp / "pool").lookup(stop_ids)
    p1, m1 = predictions(h1, x[rows])
    p2, m2 = predictions(h2, x[rows])
    assert st["kappa"] == pytest.approx(cohen_kappa_score(p1, p2), abs=1e-12)
    assert st["agreement"] == pytest.approx(np.mean(p1 == p2))
    assert st["mean_margin"] == pytest.approx(m2.mean()) and st["previous_mean_margin"] == pytest.approx(m1.mean())
    assert st["cv_accuracy"] == s2["cv_accuracy"]
    assert st["cv_accuracy_trend"] == pytest.approx(s2["cv_accuracy"] - h1.meta["metrics"]["cv_accuracy"])
    assert st["kappa_history"] == [st["kappa"]] and st["stop"] is False
    # the same labels again: kappa 1, but a round without new labels does not count towards stopping
    code, out, err = cli("train", tmp / "pool", tmp / "l2.parquet", "--out", tmp / "h3.pt", *base,
                         "--previous", tmp / "h2.pt")
    assert code == 0, err
    line = [ln for ln in out.splitlines() if ln.startswith("stopping:")]
    assert len(line) == 1 and "kappa 1.0000" in line[0] and "does not count" in line[0] and "cv accuracy" in line[0]
    h3 = load_head(tmp / "h3.pt")
    assert h3.meta["stopping"]["kappa_history"] == [st["kappa"]] and h3.meta["stopping"]["stop"] is False
    # new labels: the history grows, and the rule fires on the second kappa >= threshold in a row
    code, out, err = cli("train", tmp / "pool", tmp / "l3.parquet", "--out", tmp / "h4.pt", *base,
                         "--previous", tmp / "h3.pt", "--json", "--stop-kappa", "0.5")
    assert code == 0, err
    s4 = json.loads(out)["stopping"]
    rows4 = open_pool(tmp / "pool").lookup(np.asarray(load_head(tmp / "h4.pt").meta["stop_set"]["ids"]))
    assert (rows4 == rows).all() and s4["new_labels"] is True
    assert s4["kappa_history"] == [st["kappa"], s4["kappa"]]
    assert s4["stop"] is (st["kappa"] >= 0.5 and s4["kappa"] >= 0.5) and s4["stop"] is True


def test_train_previous_from_another_pool_is_exit_2(cli, pool_labels, tmp_path):
    tmp = pool_labels[0]
    x, y = gaussian_pool(100, d=6, c=2, seed=9)
    w = PoolWriter(tmp / "other", shard_rows=50, dtype="float32")
    w.add(x)
    w.close()
    LabelSet(ids=np.arange(100, dtype=np.int64), labels=y.tolist()).write(tmp / "ol.parquet")
    assert cli("train", tmp / "other", tmp / "ol.parquet", "--out", tmp / "o.pt", "--weight-decay", "1e-2")[0] == 0
    code, _, err = cli("train", tmp / "pool", tmp / "l1.parquet", "--out", tmp / "h.pt", "--weight-decay", "1e-2",
                       "--previous", tmp / "o.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp / "h.pt").exists(), err


def test_simulation_kappa_is_between_consecutive_heads_on_one_fixed_stop_set(cli, pool_labels, monkeypatch):
    from alq.simulate.loop import Simulation

    tmp, x, y = pool_labels
    LabelSet(ids=np.arange(800, dtype=np.int64), labels=y.tolist()).write(tmp / "all.parquet")
    seen: list = []
    real = Simulation._stop_predictions

    def spy(self, rows, head):
        out = real(self, rows, head)
        seen.append((rows.copy(), out[0].copy()))
        return out

    monkeypatch.setattr(Simulation, "_stop_predictions", spy)
    code, _, err = cli("simulate", "--pool", tmp / "pool", "--labels", tmp / "all.parquet", "--test-pool",
                       tmp / "pool", "--test-labels", tmp / "all.parquet", "--strategies", "margin",
                       "--seed-size", "10", "--budget", "10", "--rounds", "3", "--repeats", "1", "--weight-decay",
                       "1e-2", "--stop-set-size", "200", "--out", tmp / "run", "-q")
    assert code == 0, err
    res = pq.read_table(tmp / "run" / "results.parquet").to_pylist()
    rows0 = seen[0][0]
    assert len(rows0) == 200 and all((r == rows0).all() for r, _ in seen)  # the same rows every round
    seed = pq.read_table(tmp / "run" / "selections" / "_seed-set" / "r0.parquet").column("row").to_numpy()
    assert not np.isin(rows0, seed).any()
    # calls: seed round, then per round (previous head, new head) - previous head's only at round 1
    preds = [p for _, p in seen]
    heads = [preds[0]] + preds[2:]
    assert res[0]["stop_kappa"] is None
    for k in (1, 2, 3):
        assert res[k]["stop_kappa"] == pytest.approx(cohen_kappa_score(heads[k - 1], heads[k]), abs=1e-12)
        assert res[k]["cv_accuracy"] is None and 0 < res[k]["stop_mean_margin"] <= 1  # fixed --weight-decay: no CV


def test_report_marks_the_stop_round_and_what_it_left():
    from alq.report.analysis import Results

    cols = {"strategy": [], "repeat": [], "round": [], "n_labeled": [], "top1": [], "stop_kappa": []}
    curves = {  # per repeat: kappas of rounds 0..4 and accuracy
        ("margin", 0): ([math.nan, 0.9, 0.992, 0.995, 0.999], [0.5, 0.7, 0.8, 0.85, 0.86]),
        ("margin", 1): ([math.nan, 0.995, 0.98, 0.991, 0.993], [0.5, 0.72, 0.78, 0.84, 0.87]),
        ("random", 0): ([math.nan, 0.8, 0.9, 0.95, 0.97], [0.5, 0.6, 0.7, 0.75, 0.78]),
    }
    for (name, r), (kap, acc) in curves.items():
        for k in range(5):
            for col, v in (("strategy", name), ("repeat", r), ("round", k), ("n_labeled", 10 + 10 * k),
                           ("top1", acc[k]), ("stop_kappa", kap[k])):
                cols[col].append(v)
    s = stopping_summary(Results(columns=cols, meta={"strategies": ["margin", "random"]}), "top1")
    m = s["strategies"]["margin"]
    assert [e["stop_round"] for e in m["repeats"]] == [3, 4] and m["stopped"] == 2
    assert m["mean_left"] == pytest.approx(((0.86 - 0.85) + (0.87 - 0.87)) / 2)
    assert m["mean_n_labeled"] == pytest.approx(45)
    assert s["strategies"]["random"]["stopped"] == 0 and s["strategies"]["random"]["mean_left"] is None


def test_report_cli_shows_the_stopping_table(cli, pool_labels):
    tmp, _, y = pool_labels
    LabelSet(ids=np.arange(800, dtype=np.int64), labels=y.tolist()).write(tmp / "all.parquet")
    code, _, err = cli("simulate", "--pool", tmp / "pool", "--labels", tmp / "all.parquet", "--test-pool",
                       tmp / "pool", "--test-labels", tmp / "all.parquet", "--strategies", "random,margin",
                       "--seed-size", "10", "--budget", "10", "--rounds", "3", "--repeats", "1", "--weight-decay",
                       "1e-2", "--out", tmp / "run", "-q")
    assert code == 0, err
    code, out, err = cli("report", tmp / "run" / "results.parquet", "--out", tmp / "rep", "--json")
    assert code == 0, err
    s = json.loads(out)["stopping"]
    assert set(s["strategies"]) == {"random", "margin"} and s["rule"].startswith("kappa >= 0.99")
    md = (tmp / "rep" / "report.md").read_text()
    assert "## Stopping rule" in md and "left on the table" in md
    code, out, _ = cli("report", tmp / "run" / "results.parquet")
    assert code == 0 and "Stopping rule" in out


def _readme_stop_snippet() -> str:
    import re

    from conftest import REPO

    text = (REPO / "docs/training.md").read_text()
    sec = text[text.index("## When to stop buying labels"):]
    m = re.search(r"```bash\n(  mkdir -p heads.*?)```", sec, flags=re.S)
    assert m, "docs/training.md lost its stopping snippet"
    return m.group(1)


@pytest.mark.slow
def test_readme_cron_stopping_snippet_stops_sending_batches(tmp_path):
    """docs/training.md's stopping snippet, run for four nights: it fires after two nights of kappa >= 0.99."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    x, y = gaussian_pool(600, d=8, c=3, seed=0, sep=6.0)  # well separated: every head predicts the same
    w = PoolWriter(tmp_path / "pool", shard_rows=300, dtype="float32")
    w.add(x)
    w.close()
    script = tmp_path / "night.sh"
    script.write_text("set -euo pipefail\ncd \"$AL_DIR\"\ntoday=$TODAY\n" + _readme_stop_snippet()
                      + "\necho SENT-A-BATCH\n")
    shim = tmp_path / "bin" / "alq"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m alq "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, AL_DIR=str(tmp_path), PYTHONPATH=str(REPO),
               PATH=str(shim.parent) + os.pathsep + os.environ.get("PATH", ""))
    outputs = []
    for night, step in (("2026-11-01", 30), ("2026-11-02", 20), ("2026-11-02", 20), ("2026-11-03", 15),
                        ("2026-11-04", 12)):
        rows = np.arange(0, 600, step)
        LabelSet(ids=rows.astype(np.int64), labels=y[rows].tolist()).write(tmp_path / "labels.parquet")
        proc = subprocess.run(["bash", str(script)], env=dict(env, TODAY=night), capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(("SENT-A-BATCH" in proc.stdout, "stopping signal fired" in proc.stderr))
    # night 1: no previous head; night 2: kappa 1 once; its rerun compares to night 1 again; night 3: twice
    assert outputs == [(True, False), (True, False), (True, False), (False, True), (False, True)]
    assert sorted(p.name for p in (tmp_path / "heads").iterdir()) == [
        "2026-11-01.pt", "2026-11-02.pt", "2026-11-03.pt", "2026-11-04.pt"]
