"""``alq score``: per-shard scores aligned with the pool, reused by ``select`` only while fresh."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_uncertainty import ref_logits, ref_measure

from alq.errors import StaleError
from alq.io import read_parquet
from alq.model.head import load_head
from alq.scoring.store import ScoresStore
from alq.store import PoolWriter, open_pool, sidecar
from alq.store.labels import LabelSet


@pytest.fixture
def trained(cli, small_pool, tmp_path):
    path, x, y = small_pool
    rows = np.arange(0, 700, 9)
    LabelSet(ids=rows.astype(np.int64), labels=[f"k{v}" for v in y[rows]]).write(tmp_path / "labels.parquet")
    code, _, err = cli("train", path, tmp_path / "labels.parquet", "--out", tmp_path / "head.pt", "--holdout", "0")
    assert code == 0, err
    return path, x, y, tmp_path


def test_score_files_align_with_pool_and_hold_the_measures(cli, trained):
    path, x, _, tmp = trained
    code, out, err = cli("score", path, "--head", tmp / "head.pt", "--out", tmp / "scores", "--top-k", "3", "--json")
    assert code == 0, err
    summary = json.loads(out)
    head = load_head(tmp / "head.pt")
    pool = open_pool(path)
    meta = sidecar.read(tmp / "scores" / "_scores.parquet", what="scores metadata")
    assert meta["format"] == "alq-scores" and meta["pool_fingerprint"] == pool.fingerprint
    assert meta["head_fingerprint"] == head.fingerprint == summary["head_fingerprint"]
    assert [s["rows"] for s in meta["shards"]] == list(pool.shard_rows)
    assert sum(summary["predicted_class_histogram"].values()) == 700
    tables = [read_parquet(tmp / "scores" / s["file"]) for s in meta["shards"]]
    table = {k: np.concatenate([t.column(k).to_numpy(zero_copy_only=False) for t in tables])
             for k in ("id", "predicted_class", "margin", "entropy", "least_confidence")}
    np.testing.assert_array_equal(table["id"], pool.ids())
    z = ref_logits(head, x)
    np.testing.assert_array_equal(table["predicted_class"], np.asarray(head.classes)[z.argmax(1)])
    for name in ("margin", "entropy", "least_confidence"):
        np.testing.assert_allclose(table[name], ref_measure(z, name, False), rtol=1e-5, atol=1e-6)
    top = tables[0].slice(0, 5).to_pydict()
    for classes, probs, pred in zip(top["top_classes"], top["top_probs"], top["predicted_class"]):
        assert len(classes) == 3 and classes[0] == pred and probs == sorted(probs, reverse=True)


def test_select_reuses_fresh_scores_with_identical_output(cli, trained):
    path, _, _, tmp = trained
    assert cli("score", path, "--head", tmp / "head.pt", "--out", tmp / "scores")[0] == 0
    for strategy in ("margin", "entropy", "least-confidence"):
        args = ("select", path, "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet", "--strategy",
                strategy, "--budget", "40", "--json")
        code, out, err = cli(*args, "--scores", tmp / "scores", "--out", tmp / "a.parquet")
        assert code == 0, err
        s = json.loads(out)
        assert s["scores"]["fresh"] is True and s["scores_source"] == "file"
        code, out, _ = cli(*args, "--out", tmp / "b.parquet")
        assert json.loads(out)["scores_source"] == "head"
        a, b = pq.read_table(tmp / "a.parquet"), pq.read_table(tmp / "b.parquet")
        for col in ("id", "rank", "score", "predicted_class"):
            assert a.column(col).equals(b.column(col)), (strategy, col)


def test_stale_scores_are_recomputed(cli, trained):
    path, x, y, tmp = trained
    assert cli("score", path, "--head", tmp / "head.pt", "--out", tmp / "scores")[0] == 0
    # another head: different labels
    rows = np.arange(1, 700, 5)
    LabelSet(ids=rows.astype(np.int64), labels=[f"k{v}" for v in y[rows]]).write(tmp / "labels2.parquet")
    assert cli("train", path, tmp / "labels2.parquet", "--out", tmp / "head2.pt")[0] == 0
    args = ("select", path, "--head", tmp / "head2.pt", "--strategy", "margin", "--budget", "25", "--json")
    code, out, err = cli(*args, "--scores", tmp / "scores", "--out", tmp / "a.parquet")
    assert code == 0, err
    s = json.loads(out)
    assert s["scores"]["fresh"] is False and "another head" in s["scores"]["reason"] and s["scores_source"] == "head"
    cli(*args, "--out", tmp / "b.parquet")
    assert pq.read_table(tmp / "a.parquet").column("id").equals(pq.read_table(tmp / "b.parquet").column("id"))
    # the pool grows: every derived file is stale
    w = PoolWriter(path, append=True)
    w.add(x[:10] + 0.5)
    w.close()
    store = ScoresStore(tmp / "scores")
    assert "pool changed" in store.stale_reason(open_pool(path), load_head(tmp / "head.pt"))
    with pytest.raises(StaleError, match="rerun `alq score`|pool changed"):
        store.check_fresh(open_pool(path), load_head(tmp / "head.pt"))


def test_multilabel_aggregate_is_part_of_freshness(tmp_path):
    from test_uncertainty import _world

    from alq.scoring.store import write_scores
    from alq.store import MemoryPool

    x, _, head, _, _ = _world(True, seed=1, n=300)
    pool = MemoryPool(x, shard_rows=64)
    write_scores(pool, head, tmp_path / "s", aggregate="mean")
    store = ScoresStore(tmp_path / "s")
    assert store.stale_reason(pool, head, "mean") is None
    assert "--aggregate mean" in store.stale_reason(pool, head, "min")
    assert store.usable_for("margin", "mean", head) and not store.usable_for("margin", None, head)


def test_score_refuses_foreign_dirs_and_keeps_old_output_on_error(cli, trained, tmp_path):
    path, _, _, tmp = trained
    (tmp / "notscores").mkdir()
    (tmp / "notscores" / "keep.txt").write_text("mine")
    code, _, err = cli("score", path, "--head", tmp / "head.pt", "--out", tmp / "notscores")
    assert code == 2 and "not an alq scores directory" in err
    assert (tmp / "notscores" / "keep.txt").read_text() == "mine"
    assert cli("score", path, "--head", tmp / "head.pt", "--out", tmp / "scores")[0] == 0
    before = (tmp / "scores" / "_scores.parquet").read_bytes()
    # a head of another dimension: refused, the existing scores stay
    from alq.model.head import Head, HeadNet

    Head(nets=[HeadNet(3, 2)], classes=[0, 1]).save(tmp / "bad.pt")
    code, _, err = cli("score", path, "--head", tmp / "bad.pt", "--out", tmp / "scores")
    assert code == 2 and "head expects dim 3 but the pool has dim 16" in err
    assert (tmp / "scores" / "_scores.parquet").read_bytes() == before
    assert not [p for p in tmp.iterdir() if p.name.startswith(".scores") and p.name != ".scores.lock"]  # no temp dirs
    # rerunning replaces the store in place
    assert cli("score", path, "--head", tmp / "head.pt", "--out", tmp / "scores", "--top-k", "2")[0] == 0
    assert sidecar.read(tmp / "scores" / "_scores.parquet", what="scores metadata")["top_k"] == 2
    code, out, _ = cli("score", "--help")
    assert code == 0 and "Example:" in out


def test_scores_match_head_probabilities_for_string_ids(cli, tmp_path):
    ids = np.array([f"img-{i:03d}" for i in range(150)], dtype=object)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 6)).astype(np.float32)
    x[:75] += 3
    w = PoolWriter(tmp_path / "pool", shard_rows=40, dtype="float16")
    w.add(x, ids)
    w.close()
    LabelSet(ids=ids[::5], labels=["a" if i < 75 else "b" for i in range(0, 150, 5)]).write(tmp_path / "l.parquet")
    assert cli("train", tmp_path / "pool", tmp_path / "l.parquet", "--out", tmp_path / "h.pt")[0] == 0
    assert cli("score", tmp_path / "pool", "--head", tmp_path / "h.pt", "--out", tmp_path / "s")[0] == 0
    t = read_parquet(tmp_path / "s" / "shard-000001.parquet")
    assert t.column("id").to_pylist()[0] == "img-040"
    head = load_head(tmp_path / "h.pt")
    p = head.probs(torch.from_numpy(open_pool(tmp_path / "pool").take(np.arange(40, 80), dtype=np.float32)))
    np.testing.assert_allclose([r[0] for r in t.column("top_probs").to_pylist()], p.max(1).values.numpy(), rtol=1e-5)
