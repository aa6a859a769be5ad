"""``alq train`` -> ``alq score`` -> ``alq select`` end to end, through the CLI, with real files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_alq_subprocess

from alq.io import parquet_metadata, write_parquet
from alq.model.head import load_head
from alq.store import PoolWriter, open_pool
from alq.store.labels import LabelSet

MINE = ["random", "least-confidence", "margin", "entropy", "mase", "base"]


@pytest.fixture
def job(cli, small_pool, tmp_path):
    """A pool of 700 rows in 7 shards, 70 labels, a trained head and its scores."""
    path, x, y = small_pool
    labeled = np.arange(0, 700, 10)
    LabelSet(ids=labeled.astype(np.int64), labels=y[labeled].tolist()).write(tmp_path / "labels.parquet")
    assert cli("train", path, tmp_path / "labels.parquet", "--out", tmp_path / "head.pt")[0] == 0
    assert cli("score", path, "--head", tmp_path / "head.pt", "--out", tmp_path / "scores")[0] == 0
    pending = np.arange(3, 700, 50)
    write_parquet(tmp_path / "sent.parquet", pa.table({"id": pa.array(pending.astype(np.int64))}))
    return path, x, y, tmp_path, labeled, pending


@pytest.mark.parametrize("strategy", MINE)
def test_select_writes_a_ranked_selection_with_provenance(cli, job, strategy):
    path, _, _, tmp, labeled, pending = job
    args = ("select", path, "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet", "--pending",
            tmp / "sent.parquet", "--scores", tmp / "scores", "--strategy", strategy, "--budget", "30", "--seed", "3",
            "--round", "2", "--json")
    code, out, err = cli(*args, "--out", tmp / "batch.parquet")
    assert code == 0, err
    s = json.loads(out)
    assert s["selected"] == 30 and s["labeled"] == 70 and s["pending"] == len(pending)
    assert s["unlabeled"] == 700 - 70 - len(pending) and s["budget"] == 30
    assert sum(s["predicted_class_histogram"].values()) == 30 and s["seconds"] >= 0
    t = pq.read_table(tmp / "batch.parquet")
    for col in ("id", "rank", "score", "strategy", "budget", "seed", "round", "predicted_class"):
        assert col in t.column_names
    d = t.to_pydict()
    assert d["rank"] == list(range(30)) and set(d["strategy"]) == {strategy}
    assert set(d["budget"]) == {30} and set(d["seed"]) == {3} and set(d["round"]) == {2}
    ids = np.array(d["id"])
    assert len(set(ids.tolist())) == 30 and not np.isin(ids, labeled).any() and not np.isin(ids, pending).any()
    meta = parquet_metadata(tmp / "batch.parquet")
    assert meta["kind"] == "selection" and meta["strategy"] == strategy and meta["seed"] == 3
    assert meta["pool_fingerprint"] == open_pool(path).fingerprint
    assert meta["head_fingerprint"] == load_head(tmp / "head.pt").fingerprint and meta["score_meaning"]
    if strategy == "base":
        assert np.bincount(d["base_class"]).tolist() == [8, 8, 7, 7]
    # same inputs and seed: the same rows, ranks and scores
    cli(*args, "--out", tmp / "again.parquet")
    again = pq.read_table(tmp / "again.parquet")
    for col in ("id", "rank", "score", "predicted_class"):
        assert again.column(col).equals(t.column(col))


def test_random_differs_by_seed_and_needs_no_head(cli, job):
    path, _, _, tmp, _, _ = job
    outs = []
    for seed in ("1", "2"):
        code, out, err = cli("select", path, "--strategy", "random", "--budget", "20", "--seed", seed, "--json",
                             "--out", tmp / f"r{seed}.parquet")
        assert code == 0, err
        outs.append(pq.read_table(tmp / f"r{seed}.parquet").column("id").to_pylist())
    assert outs[0] != outs[1]
    assert pq.read_table(tmp / "r1.parquet").column("predicted_class").null_count == 20


def test_cron_rounds_never_resend_pending_rows(cli, job):
    """Round 1's batch is still out for labeling: pass it as --pending (Parquet, CSV or a plain id list)."""
    path, _, _, tmp, _, _ = job
    base = ("select", path, "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet", "--strategy", "margin",
            "--budget", "40")
    assert cli(*base, "--out", tmp / "round1.parquet")[0] == 0
    first = pq.read_table(tmp / "round1.parquet").column("id").to_pylist()
    (tmp / "sent.csv").write_text("id,sent_at\n" + "".join(f"{i},2024-01-01\n" for i in first[:20]))
    (tmp / "sent.txt").write_text("\n".join(map(str, first[20:])) + "\n")
    for pending in (["--pending", tmp / "round1.parquet"], ["--pending", tmp / "sent.csv", "--pending", tmp / "sent.txt"]):
        code, out, err = cli(*base, *pending, "--out", tmp / "round2.parquet", "--json")
        assert code == 0, err
        assert json.loads(out)["pending"] == 40
        second = pq.read_table(tmp / "round2.parquet").column("id").to_pylist()
        assert not set(first) & set(second)


def test_budget_errors_and_allow_smaller(cli, job):
    path, _, _, tmp, labeled, pending = job
    n_unl = 700 - 70 - len(pending)
    base = ("select", path, "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet", "--pending",
            tmp / "sent.parquet", "--strategy", "margin")
    (tmp / "out.parquet").write_bytes(b"previous batch")
    code, _, err = cli(*base, "--budget", str(n_unl + 1), "--out", tmp / "out.parquet", "--overwrite")
    assert code == 2 and f"--budget={n_unl + 1} exceeds the {n_unl} unlabeled rows" in err and "--allow-smaller" in err
    assert (tmp / "out.parquet").read_bytes() == b"previous batch"  # untouched
    code, _, err = cli(*base, "--budget", "0", "--out", tmp / "zero.parquet")
    assert code == 2 and "--budget=0 must be >= 1" in err
    code, out, err = cli(*base, "--budget", "100000", "--allow-smaller", "--json", "--out", tmp / "all.parquet")
    assert code == 0, err
    s = json.loads(out)
    assert s["budget_requested"] == 100000 and s["budget"] == s["selected"] == n_unl
    assert pq.read_table(tmp / "all.parquet").num_rows == n_unl


def test_fully_labeled_pool_is_an_error(cli, job):
    path, _, y, tmp, _, _ = job
    LabelSet(ids=np.arange(700, dtype=np.int64), labels=y.tolist()).write(tmp / "all.parquet")
    code, _, err = cli("select", path, "--head", tmp / "head.pt", "--labels", tmp / "all.parquet", "--strategy",
                       "base", "--budget", "1", "--out", tmp / "s.parquet")
    assert code == 2 and "no unlabeled rows left" in err


def test_head_problems_are_named(cli, job):
    path, x, y, tmp, labeled, _ = job
    code, _, err = cli("select", path, "--strategy", "margin", "--budget", "5", "--out", tmp / "s.parquet")
    assert code == 2 and "needs a head" in err and "random" in err
    # a head trained on another embedding dimension
    w = PoolWriter(tmp / "small", shard_rows=100, dtype="float32")
    w.add(x[:, :8])
    w.close()
    assert cli("train", tmp / "small", tmp / "labels.parquet", "--out", tmp / "h8.pt")[0] == 0
    code, _, err = cli("select", path, "--head", tmp / "h8.pt", "--strategy", "mase", "--budget", "5", "--out",
                       tmp / "s.parquet")
    assert code == 2 and "h8.pt: head expects dim 8 but the pool has dim 16" in err
    # labels with a class the head never saw
    labels = y[labeled].tolist()
    labels[3] = 99
    LabelSet(ids=labeled.astype(np.int64), labels=labels).write(tmp / "new.parquet")
    code, _, err = cli("select", path, "--head", tmp / "head.pt", "--labels", tmp / "new.parquet", "--strategy",
                       "entropy", "--budget", "5", "--out", tmp / "s.parquet")
    assert code == 2 and "classes the head was not trained on" in err and "99" in err
    code, _, err = cli("select", path, "--head", tmp / "head.pt", "--strategy", "nope", "--budget", "5", "--out",
                       tmp / "s.parquet")
    assert code == 2 and "not known; choose from" in err and "margin" in err


def test_help_lists_every_strategy_with_examples(cli):
    from alq.strategies import load_all

    code, out, _ = cli("select", "--help")
    assert code == 0 and "Example:" in out
    flat = " ".join(out.split())
    for name in load_all():
        assert name in flat


def test_subprocess_exit_codes_and_one_error_line(job):
    path, _, _, tmp, _, _ = job
    proc = run_alq_subprocess("select", path, "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
                              "--strategy", "margin", "--budget", "10000", "--out", tmp / "s.parquet")
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "exceeds" in errors[0] and proc.stdout == ""
    proc = run_alq_subprocess("select", path, "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
                              "--strategy", "base", "--budget", "12", "--out", tmp / "s12.parquet", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["selected"] == 12
