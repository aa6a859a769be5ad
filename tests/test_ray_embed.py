"""``alq embed --engine ray`` builds exactly the pool ``--engine local`` builds.

A TorchScript encoder (a tiny Linear + tanh) is made in the test. Inputs: an
.npy and a stored .npz of raw rows, 1,200 rows in all, 128-row shards and
50-row encoder batches (so tasks start mid-input and mid-batch). The Ray
pool, from ``s3://`` inputs to an ``s3://`` pool (moto) or from local files,
must list the same shards with the same checksums as the local engine's.
A worker killed on each task's first attempt still leaves one copy of every
shard; a bad input row fails the run with the local engine's line. A local
Ray (2 CPUs) is started once for the module.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from alq import fs
from alq.store.manifest import read_manifest

SHARD, BATCH = 128, 50
RNG = np.random.default_rng(5)
A = RNG.normal(size=(700, 8)).astype(np.float32)
B = RNG.normal(size=(500, 8)).astype(np.float32)


def _shards(pool) -> list[tuple]:
    m = read_manifest(pool)
    return [(s.name, s.rows, s.sha256, s.ids_sha256) for s in m.shards], m.fingerprint, m.dim


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import torch

    d = tmp_path_factory.mktemp("rayembed")
    np.save(d / "a.npy", A)
    np.savez(d / "b.npz", x=B)  # stored (uncompressed): read by range from any row
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh())
    torch.jit.save(torch.jit.script(enc), str(d / "enc.pt"))
    return d


@pytest.fixture(scope="module")
def local_pool(files, tmp_path_factory):
    """The reference: the local engine's pool from the local files."""
    from alq.cli import run

    out = tmp_path_factory.mktemp("ref") / "pool"
    assert run(["embed", str(files / "a.npy"), str(files / "b.npz"), "--encoder", str(files / "enc.pt"),
                "--out", str(out), "--shard-rows", str(SHARD), "--batch-size", str(BATCH), "--dtype", "float32",
                "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def ray_engine(s3_server):
    """A local Ray with 2 CPUs, started after the S3 server so its workers inherit the AWS_* settings."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    from alq.engine.ray_engine import RayEngine, shutdown

    eng = RayEngine(num_cpus=2)
    yield eng
    shutdown()


@pytest.fixture
def s3_files(files, s3_bucket):
    for name in ("a.npy", "b.npz", "enc.pt"):
        fs.upload(files / name, f"{s3_bucket}/in/{name}")
    return s3_bucket


def test_plan_covers_rows_in_whole_shards():
    from alq.embed.plan import plan_tasks, shard_origins

    plan = plan_tasks([700, 500], 128, 4, first_shard=3)
    assert [(t.lo, t.hi, t.first_shard) for t in plan] == [(0, 384, 3), (384, 768, 6), (768, 1152, 9),
                                                         (1152, 1200, 12)]
    assert [(p.input, p.start, p.stop) for p in plan[1].pieces] == [(0, 384, 700), (1, 0, 68)]
    assert shard_origins(plan[1], ["a", "b"], 128) == [("a", 384), ("a", 512), ("a", 640)]


def test_distributed_path_equals_local_without_ray(files, local_pool, tmp_path):
    """The task plan itself (run in-process) gives the local engine's shards: no Ray needed."""
    from alq.embed import EmbedRequest, embed
    from alq.engine import LocalEngine

    class InProcess(LocalEngine):
        name = "in-process-tasks"

    req = EmbedRequest(inputs=[files / "a.npy", files / "b.npz"], out=tmp_path / "pool", encoder=files / "enc.pt",
                       shard_rows=SHARD, batch_size=BATCH, dtype="float32")
    s = embed(req, engine=InProcess(), tasks=4)
    assert s["count"] == 1200 and s["shards"] == 10
    assert _shards(tmp_path / "pool") == _shards(local_pool)


@pytest.mark.ray
def test_ray_embed_s3_inputs_to_s3_pool_equals_local(cli, ray_engine, s3_files, local_pool):
    b = s3_files
    code, _, err = cli("embed", f"{b}/in/", "--encoder", f"{b}/in/enc.pt", "--out", f"{b}/pool",
                       "--shard-rows", SHARD, "--batch-size", BATCH, "--dtype", "float32", "--engine", "ray", "-q")
    assert code == 0, err
    assert _shards(f"{b}/pool") == _shards(local_pool)
    from alq.store import open_pool

    assert open_pool(f"{b}/pool").verify() == []


@pytest.mark.ray
def test_ray_embed_local_paths_equals_local(cli, ray_engine, files, local_pool, tmp_path):
    code, _, err = cli("embed", files / "a.npy", files / "b.npz", "--encoder", files / "enc.pt",
                       "--out", tmp_path / "pool", "--shard-rows", SHARD, "--batch-size", BATCH,
                       "--dtype", "float32", "--engine", "ray", "-q")
    assert code == 0, err
    assert _shards(tmp_path / "pool") == _shards(local_pool)


MARKERS = {"dir": ""}  # pickled by value with _dies_once: where first attempts leave their marker


def _dies_once(job):
    """The real task, but its worker dies on each task's first attempt (after writing shards, for task 0)."""
    from alq.embed.distributed import run_part

    marker = os.path.join(MARKERS["dir"], f"attempt-{job.task.index}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        if job.task.index == 0:
            run_part(job)  # its shards are on the store when the worker dies: the retry rewrites them
        os._exit(1)
    return run_part(job)


@pytest.mark.ray
def test_killed_worker_leaves_one_copy_of_each_shard(ray_engine, s3_files, local_pool, tmp_path):
    from alq.embed import EmbedRequest, embed
    from alq.store import open_pool

    b = s3_files
    req = EmbedRequest(inputs=[f"{b}/in/a.npy", f"{b}/in/b.npz"], out=f"{b}/pool", encoder=f"{b}/in/enc.pt",
                       shard_rows=SHARD, batch_size=BATCH, dtype="float32")
    MARKERS["dir"] = str(tmp_path)
    embed(req, engine=ray_engine, tasks=3, _task_fn=_dies_once)
    assert len(list(tmp_path.glob("attempt-*"))) == 3  # every task's first worker died
    listed = {f for s in read_manifest(f"{b}/pool").shards for f in (s.npy, s.parquet)}
    assert set(fs.listdir(f"{b}/pool")) == listed | {"manifest.json"}  # no extra shard objects
    assert _shards(f"{b}/pool") == _shards(local_pool)
    assert open_pool(f"{b}/pool").verify() == []


@pytest.mark.ray
def test_bad_row_fails_with_the_local_line(cli, ray_engine, files, tmp_path):
    bad = A.copy()
    bad[650, 3] = np.nan  # in the second of the tasks over a.npy
    np.save(tmp_path / "bad.npy", bad)
    args = ["embed", tmp_path / "bad.npy", files / "b.npz", "--encoder", files / "enc.pt", "--shard-rows", SHARD,
            "--batch-size", BATCH, "-q"]
    code, _, want = cli(*args, "--out", tmp_path / "p1")
    assert code == 2 and "bad.npy: row 650 has NaN or Inf" in want
    code, _, err = cli(*args, "--out", tmp_path / "p2", "--engine", "ray")
    assert code == 2
    assert err.strip() == want.strip() and len(err.strip().splitlines()) == 1
    # nothing left behind but what the local engine leaves too (the pool's lock file)
    assert not (tmp_path / "p2").exists()
    assert sorted(p.name[4:] for p in tmp_path.glob(".p2.*")) == sorted(p.name[4:] for p in tmp_path.glob(".p1.*"))


def test_without_ray_says_how_to_install(cli, files, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    code, _, err = cli("embed", files / "a.npy", "--encoder", files / "enc.pt", "--out", tmp_path / "p",
                       "--engine", "ray")
    assert code == 2
    assert "pip install 'alq[ray]'" in err and len(err.strip().splitlines()) == 1
