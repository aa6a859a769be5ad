"""Scores on object storage: tasks write their shards under a new generation, the pointer switches last."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from alq import fs
from alq.errors import BadInputError
from alq.model.head import load_head
from alq.scoring.store import META, ScoresStore, write_scores
from alq.store import PoolWriter, open_pool
from alq.store.labels import LabelSet


@pytest.fixture
def setup(cli, small_pool, tmp_path, s3_bucket):
    path, x, y = small_pool
    rows = np.arange(0, 700, 9)
    LabelSet(ids=rows.astype(np.int64), labels=[f"k{v}" for v in y[rows]]).write(tmp_path / "labels.parquet")
    code, _, err = cli("train", path, tmp_path / "labels.parquet", "--out", tmp_path / "head.pt")
    assert code == 0, err
    uri = fs.join(s3_bucket, "pool")
    w = PoolWriter(uri, shard_rows=100, dtype="float32")
    w.add(x)
    w.close()
    return open_pool(path), open_pool(uri), load_head(tmp_path / "head.pt"), tmp_path, s3_bucket


def test_remote_scores_equal_local_and_are_read_in_place(setup):
    local_pool, remote_pool, head, tmp, bucket = setup
    write_scores(local_pool, head, tmp / "scores")
    out = fs.join(bucket, "scores")
    write_scores(remote_pool, head, out)
    a, b = ScoresStore(tmp / "scores"), ScoresStore(out)
    b.check_fresh(remote_pool, head)  # checksums verified against the objects
    assert [s["sha256"] for s in a.meta["shards"]] == [s["sha256"] for s in b.meta["shards"]]
    for s in range(local_pool.n_shards):
        assert a.read_shard(s).equals(b.read_shard(s))


def test_rescoring_switches_the_pointer_and_keeps_the_previous_generation(setup):
    _, remote_pool, head, tmp, bucket = setup
    out = fs.join(bucket, "scores")
    write_scores(remote_pool, head, out)
    first = fs.current_generation(out)
    reader = ScoresStore(out)  # a reader that started before the next run
    write_scores(remote_pool, head, out)
    second = fs.current_generation(out)
    assert first != second and ScoresStore(out).path == second
    assert reader.read_column(0, "margin").shape == (100,)  # the previous generation is still there
    write_scores(remote_pool, head, out)
    assert not fs.exists(fs.join(first, META))  # two switches later it is gone
    pointer = json.loads(fs.read_bytes(fs.join(out, fs.POINTER)))
    assert pointer["previous"] == fs.name_of(second)


def test_a_failed_run_publishes_nothing(setup, monkeypatch):
    _, remote_pool, head, tmp, bucket = setup
    out = fs.join(bucket, "scores")
    write_scores(remote_pool, head, out)
    before = fs.read_bytes(fs.join(out, fs.POINTER))
    import alq.scoring.store as store

    def boom(*a, **k):
        raise RuntimeError("worker died for good")

    monkeypatch.setattr(store.fs, "switch_generation", boom)
    with pytest.raises(RuntimeError):
        write_scores(remote_pool, head, out)
    assert fs.read_bytes(fs.join(out, fs.POINTER)) == before
    gens = {n.split("/", 1)[0] for n in fs.listdir(out, recursive=True) if "/" in n}
    assert gens == {fs.name_of(fs.current_generation(out))}  # the failed run's objects were removed


def test_refuses_to_replace_something_else(setup):
    _, remote_pool, head, tmp, bucket = setup
    fs.write_bytes(fs.join(bucket, "other", "notes.txt"), b"mine")
    with pytest.raises(BadInputError, match="not an alq scores directory"):
        write_scores(remote_pool, head, fs.join(bucket, "other"))
    assert fs.read_bytes(fs.join(bucket, "other", "notes.txt")) == b"mine"
    shutil.rmtree(tmp / "scores", ignore_errors=True)
