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
    calls = []
    s = embed(req, engine=InProcess(), tasks=4, progress=lambda *a: calls.append(a))
    assert s["count"] == 1200 and s["shards"] == 10 and s["engine"]["tasks"] == 4
    assert calls == [("embed (ray tasks)", k, 4) for k in (1, 2, 3, 4)]  # the bar advances per finished task
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
def test_killed_worker_leaves_one_copy_of_each_shard(cli, ray_engine, s3_files, local_pool, tmp_path):
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
    code, _, err = cli("info", f"{b}/pool", "--verify")
    assert code == 0, err


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


# -- URI inputs and row ranges (no Ray) ----------------------------------------------------------
def _parquet(path, x, ids, *, row_group):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.table({"id": pa.array(ids), "embedding": pa.array(list(x), type=pa.list_(pa.float32())),
                  "url": pa.array([f"http://x/{i}" for i in ids])})
    pq.write_table(t, path, row_group_size=row_group)
    return path


@pytest.mark.parametrize("kind", ["npy", "npz-stored", "npz-deflated", "parquet"])
def test_row_ranges_equal_whole_reads(tmp_path, kind):
    """Every reader started mid-file gives the rows a whole read gives, in any block size."""
    from alq.embed.sources import open_source

    if kind == "npy":
        np.save(tmp_path / "f.npy", A)
        path = tmp_path / "f.npy"
    elif kind == "parquet":
        path = _parquet(tmp_path / "f.parquet", A, [f"r{i}" for i in range(len(A))], row_group=64)
    else:
        (np.savez if kind == "npz-stored" else np.savez_compressed)(tmp_path / "f.npz", x=A, id=np.arange(700) * 3)
        path = tmp_path / "f.npz"
    src = open_source(path)
    for start, stop, block in [(0, 700, 1000), (1, 699, 7), (63, 65, 1), (130, 700, 64), (650, 700, 33)]:
        got = [(b.row0, np.array(b.vectors), b.ids) for b in src.batches(block, start, stop)]
        assert got[0][0] == start and sum(len(v) for _, v, _ in got) == stop - start
        assert all(len(v) <= block for _, v, _ in got)
        np.testing.assert_array_equal(np.concatenate([v for _, v, _ in got]), A[start:stop])
        if kind.startswith("npz"):
            np.testing.assert_array_equal(np.concatenate([i for *_, i in got]), np.arange(start, stop) * 3)


def test_local_engine_reads_s3_inputs_ids_and_prefixes(cli, s3_bucket, tmp_path):
    """.npy by range reads, .npz (stored and deflated), Parquet, a prefix listing and --ids, all from s3://."""
    b = s3_bucket
    np.save(tmp_path / "a.npy", A)
    np.savez_compressed(tmp_path / "b.npz", x=B)
    for name in ("a.npy", "b.npz"):
        fs.upload(tmp_path / name, f"{b}/in/{name}")
    ids = [f"img-{i}" for i in range(1200)]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    fs.upload(tmp_path / "ids.txt", f"{b}/ids.txt")
    code, _, err = cli("embed", f"{b}/in/", "--ids", f"{b}/ids.txt", "--out", tmp_path / "from-s3", "-q",
                       "--shard-rows", "256")
    assert code == 0, err
    code, _, err = cli("embed", tmp_path / "a.npy", tmp_path / "b.npz", "--ids", tmp_path / "ids.txt", "--out",
                       tmp_path / "from-disk", "-q", "--shard-rows", "256")
    assert code == 0, err
    assert _shards(tmp_path / "from-s3") == _shards(tmp_path / "from-disk")
    _parquet(tmp_path / "c.parquet", A, list(range(700)), row_group=100)
    fs.upload(tmp_path / "c.parquet", f"{b}/c.parquet")
    code, _, err = cli("embed", f"{b}/c.parquet", "--out", tmp_path / "pq-s3", "-q")
    assert code == 0, err
    code, _, err = cli("embed", tmp_path / "c.parquet", "--out", tmp_path / "pq-disk", "-q")
    assert code == 0, err
    assert _shards(tmp_path / "pq-s3") == _shards(tmp_path / "pq-disk")


def test_s3_errors_name_the_uri_as_typed(cli, s3_bucket, tmp_path):
    b = s3_bucket
    code, _, err = cli("embed", f"{b}/nothing.npy", "--out", tmp_path / "p")
    assert code == 2 and f"{b}/nothing.npy: input not found" in err
    np.save(tmp_path / "a.npy", A)
    fs.upload(tmp_path / "a.npy", f"{b}/a.npy")
    (tmp_path / "ids.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    fs.upload(tmp_path / "ids.txt", f"{b}/ids.txt")
    code, _, err = cli("embed", f"{b}/a.npy", "--ids", f"{b}/ids.txt", "--out", tmp_path / "p")
    assert code == 2 and f"{b}/ids.txt: 10 ids for 700 input rows" in err


@pytest.mark.parametrize("ids_mode", ["inputs", "one-file", "each-file", "generated-append"])
def test_vectors_only_tasks_equal_local(tmp_path, ids_mode):
    """Without an encoder the task path copies vectors, ids and kept columns exactly as the local engine."""
    from alq.embed import EmbedRequest, embed
    from alq.engine import LocalEngine

    class InProcess(LocalEngine):
        name = "in-process-tasks"

    names = [f"r{i}" for i in range(1200)]
    p1 = _parquet(tmp_path / "p1.parquet", A, names[:700], row_group=90)
    p2 = _parquet(tmp_path / "p2.parquet", B, names[700:], row_group=70)
    kw: dict = {}
    inputs = [p1, p2]
    if ids_mode == "one-file":
        (tmp_path / "ids.txt").write_text("\n".join(f"x{i}" for i in range(1200)) + "\n")
        kw["ids"] = [tmp_path / "ids.txt"]
    elif ids_mode == "each-file":
        np.save(tmp_path / "i1.npy", np.arange(700) + 10_000)
        np.save(tmp_path / "i2.npy", np.arange(500) + 20_000)
        kw["ids"] = [tmp_path / "i1.npy", tmp_path / "i2.npy"]
    elif ids_mode == "generated-append":
        np.save(tmp_path / "a.npy", A)
        np.save(tmp_path / "b.npy", B)
        inputs = [tmp_path / "a.npy", tmp_path / "b.npy"]
    for name, engine in (("local", None), ("tasks", InProcess())):
        out = tmp_path / name
        if ids_mode == "generated-append":
            embed(EmbedRequest(inputs=[tmp_path / "b.npy"], out=out, shard_rows=100, normalize="l2"))
            kw["append"] = True
        embed(EmbedRequest(inputs=inputs, out=out, shard_rows=100, normalize="l2", **kw), engine=engine, tasks=3)
    assert _shards(tmp_path / "tasks") == _shards(tmp_path / "local")


def test_mixed_ids_are_refused_for_tasks(tmp_path):
    from alq.embed import EmbedRequest, embed
    from alq.engine import LocalEngine
    from alq.errors import BadInputError

    class InProcess(LocalEngine):
        name = "in-process-tasks"

    np.save(tmp_path / "a.npy", A)
    p = _parquet(tmp_path / "p.parquet", B, list(range(500)), row_group=100)
    with pytest.raises(BadInputError, match="a.npy: --engine ray needs every input to carry ids"):
        embed(EmbedRequest(inputs=[p, tmp_path / "a.npy"], out=tmp_path / "o"), engine=InProcess())
    assert not (tmp_path / "o").exists()


# -- other commands on an s3:// pool ---------------------------------------------------------------
@pytest.mark.ray
def test_ray_score_on_s3_pool_equals_local(ray_engine, s3_bucket, tmp_path):
    """Tasks get the RemotePool as its URI + manifest and read their own shards from the store."""
    import pyarrow.parquet as pq
    from conftest import gaussian_pool

    from alq.engine import LocalEngine
    from alq.model.train import TrainOptions, train_head
    from alq.scoring.store import write_scores
    from alq.store import PoolWriter, open_pool

    x, y = gaussian_pool(400, d=8, c=3, seed=2)
    w = PoolWriter(f"{s3_bucket}/pool", shard_rows=100, dtype="float32")
    w.add(x)
    w.close()
    pool = open_pool(f"{s3_bucket}/pool")
    head = train_head(x[:60], y[:60], [0, 1, 2], multilabel=False, opts=TrainOptions(hidden=0, ensemble=1))
    write_scores(pool, head, tmp_path / "local", engine=LocalEngine())
    write_scores(pool, head, tmp_path / "ray", engine=ray_engine)
    files = sorted(p.name for p in (tmp_path / "local").glob("*.parquet"))
    assert files and files == sorted(p.name for p in (tmp_path / "ray").glob("*.parquet"))
    for name in files:
        assert pq.read_table(tmp_path / "local" / name).equals(pq.read_table(tmp_path / "ray" / name))


@pytest.mark.ray
@pytest.mark.parametrize("name", ["margin", "cluster-margin", "coreset"])
def test_ray_select_on_s3_pool_equals_local(ray_engine, s3_bucket, name):
    import torch
    from conftest import gaussian_pool

    from alq.engine import LocalEngine
    from alq.model.train import TrainOptions, train_head
    from alq.store import PoolWriter, open_pool
    from alq.strategies import REGISTRY, Context, get_strategy, load_all

    load_all()
    x, y = gaussian_pool(400, d=8, c=3, seed=4)
    w = PoolWriter(f"{s3_bucket}/pool", shard_rows=100, dtype="float32")
    w.add(x)
    w.close()
    pool = open_pool(f"{s3_bucket}/pool")
    labeled = np.arange(0, 400, 10)
    head = train_head(x[labeled], y[labeled], [0, 1, 2], multilabel=False, opts=TrainOptions(hidden=0, ensemble=1))
    excluded = np.zeros(400, bool)
    excluded[labeled] = True

    def select(engine):
        ctx = Context(pool=pool, budget=15, seed=1, excluded=excluded.copy(), labeled=labeled,
                      head=head if REGISTRY[name].needs_head else None, clusters=y.astype(np.int64),
                      options={}, engine=engine,
                      device=torch.device("cpu") if isinstance(engine, LocalEngine) else None)
        return get_strategy(name).select(ctx)

    local, remote = select(LocalEngine()), select(ray_engine)
    np.testing.assert_array_equal(remote.indices, local.indices)
    np.testing.assert_allclose(remote.scores, local.scores, rtol=1e-6, atol=1e-9)


def test_task_names_paths_its_worker_cannot_see(files, tmp_path):
    from alq.embed.distributed import IdsPlan, PartJob, run_part
    from alq.embed.plan import plan_tasks
    from alq.errors import BadInputError
    from alq.store.parts import PartSpec

    spec = PartSpec(location=str(tmp_path), dtype="float32", dim=None, normalize=None, id_type="int64",
                    shard_rows=SHARD)
    job = PartJob(spec=spec, task=plan_tasks([700], SHARD, 1)[0], inputs=("/nowhere/a.npy",), names=("a.npy",),
                  rows=(700,), reader={}, ids=IdsPlan(mode="generated", generated_start=0))
    with pytest.raises(BadInputError, match=r"a.npy: not visible on Ray worker .*/nowhere/a.npy"):
        run_part(job)


def test_local_engine_appends_to_an_s3_pool_skipping_existing(cli, s3_bucket, tmp_path):
    np.savez(tmp_path / "a.npz", x=A, id=np.arange(700) * 2)
    fs.upload(tmp_path / "a.npz", f"{s3_bucket}/a.npz")
    pool = f"{s3_bucket}/pool"
    assert cli("embed", f"{s3_bucket}/a.npz", "--out", pool, "-q")[0] == 0
    code, out, err = cli("embed", f"{s3_bucket}/a.npz", "--out", pool, "--append", "--skip-existing", "--json")
    assert code == 0, err
    import json

    s = json.loads(out)
    assert (s["rows_added"], s["rows_skipped"], s["count"]) == (0, 700, 700)


def test_duplicate_id_across_tasks_is_refused_with_the_local_line(tmp_path):
    from alq.embed import EmbedRequest, embed
    from alq.engine import LocalEngine
    from alq.errors import BadInputError

    class InProcess(LocalEngine):
        name = "in-process-tasks"

    names = [f"r{i}" for i in range(1200)]
    names[700 + 150] = "r5"  # p2 row 150 repeats p1 row 5, two tasks apart
    p1 = _parquet(tmp_path / "p1.parquet", A, names[:700], row_group=90)
    p2 = _parquet(tmp_path / "p2.parquet", B, names[700:], row_group=70)
    lines = []
    for name, engine in (("local", None), ("tasks", InProcess())):
        with pytest.raises(BadInputError) as info:
            embed(EmbedRequest(inputs=[p1, p2], out=tmp_path / name, shard_rows=100), engine=engine, tasks=4)
        lines.append(info.value.line())
        assert not (tmp_path / name).exists()
    assert lines[0] == lines[1] and "p2.parquet: row 150: duplicate id 'r5'" in lines[0]


@pytest.mark.ray
def test_gpus_per_task_without_gpus_is_refused(cli, ray_engine, files, tmp_path):
    import ray

    if ray.cluster_resources().get("GPU", 0):
        pytest.skip("this Ray has GPUs")
    code, _, err = cli("embed", files / "a.npy", "--encoder", files / "enc.pt", "--out", tmp_path / "p",
                       "--engine", "ray", "--ray-gpus-per-task", "1")
    assert code == 2 and "--ray-gpus-per-task=1 but the Ray cluster has 0 GPUs" in err
    assert not (tmp_path / "p").exists()


def test_distributed_path_refuses_ids_a_labels_file_cannot_name(tmp_path):
    """Issue 20 item 33, on the task path: an id with a trailing space is refused, as the local engine does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alq.embed import EmbedRequest, embed
    from alq.engine import LocalEngine
    from alq.errors import BadInputError

    class InProcess(LocalEngine):
        name = "in-process-tasks"

    ids = [f"k{i}" for i in range(40)]
    ids[29] = "k29 "
    vec = pa.array(np.ones((40, 4), np.float32).tolist(), pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": ids, "embedding": vec}), tmp_path / "in.parquet")
    req = EmbedRequest(inputs=[tmp_path / "in.parquet"], out=tmp_path / "pool", shard_rows=8, dtype="float32")
    with pytest.raises(BadInputError, match=r"in\.parquet: row 29: id 'k29 ' has leading or trailing whitespace"):
        embed(req, engine=InProcess(), tasks=3)
    assert not (tmp_path / "pool").exists()
