"""Every command on s3:// (a real S3 API on loopback: the moto server) gives what it gives on local paths.

The same pipeline runs twice, once under a local folder and once under a bucket
prefix (pool included), and every output is compared: bytes where the command is
deterministic and records no path, tables and metadata up to paths otherwise.
Then: URIs in error lines, no local ``s3:`` folder, pointer-switched directory
outputs, and the output guard on the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alq import fs
from alq.store import PoolWriter, open_pool, sidecar
from alq.store.labels import LabelSet
from tests.conftest import gaussian_pool

PATH_KEYS = {"pool", "head", "labels", "pending", "clusters", "scores", "results", "source_pool", "source_labels",
             "output", "out", "path", "report_dir", "plots", "files", "sent_files", "selection", "test",
             "pool_labels", "test_labels", "test_pool", "inputs", "run_dir"}
TIME_KEYS = {"created", "seconds", "select_seconds", "train_seconds"}


def _strip(obj):
    """``obj`` without path-valued and timing keys (what legitimately differs between two locations)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in PATH_KEYS | TIME_KEYS and "seconds" not in k}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def read(path) -> bytes:
    return fs.read_bytes(path)


def table(path):
    return fs.read_table(path)


def meta_of(path) -> dict:
    from alq.io import parquet_metadata

    return parquet_metadata(fs.read_schema(path))


def data(t):
    """A table's columns without its key-value metadata."""
    return t.replace_schema_metadata(None)


@pytest.fixture
def inputs(tmp_path, s3_bucket, monkeypatch):
    """The same inputs under a local folder and under a bucket prefix: pool, all labels, an annotation CSV."""
    monkeypatch.chdir(tmp_path)  # a URI mangled into a local path would land here, as ./s3:/...
    x, y = gaussian_pool(700, d=16, c=4)
    local = tmp_path / "local"
    local.mkdir()
    remote = fs.join(s3_bucket, "exp")
    for base in (local, remote):
        w = PoolWriter(fs.join(base, "pool"), shard_rows=100, dtype="float32")
        w.add(x)
        w.close()
    LabelSet(ids=np.arange(700, dtype=np.int64), labels=[f"k{v}" for v in y]).write(local / "all.parquet")
    rows = np.arange(0, 700, 7)
    (local / "ann.csv").write_text("id,label\n" + "".join(f"{r},k{y[r]}\n" for r in rows))
    (local / "sent.csv").write_text("".join(f"{r}\n" for r in range(1, 700, 50)))
    for name in ("all.parquet", "ann.csv", "sent.csv"):
        fs.upload(local / name, fs.join(remote, name))
    return local, remote, tmp_path


def ok(cli, *args):
    code, out, err = cli(*args)
    assert code == 0, (args, err)
    return json.loads(out) if "--json" in args else out


def pipeline(cli, base, pool=None) -> dict:
    """Every command once, all paths under ``base`` (the pool at ``pool`` when given); their --json summaries."""
    j = lambda *parts: str(fs.join(base, *parts))  # noqa: E731
    pool = pool or j("pool")
    s = {}
    s["import"] = ok(cli, "labels", "import", j("ann.csv"), "--pool", pool, "--out", j("labels.parquet"), "--json")
    s["show"] = ok(cli, "labels", "show", j("labels.parquet"), "--pool", pool, "--json")
    s["train"] = ok(cli, "train", pool, j("labels.parquet"), "--out", j("head.pt"), "--metrics", j("train.json"),
                    "--weight-decay", "1e-3", "--json")
    s["score"] = ok(cli, "score", pool, "--head", j("head.pt"), "--out", j("scores"), "--json")
    s["cluster"] = ok(cli, "cluster", pool, "--out", j("clusters"), "--n-clusters", "12", "--json")
    s["select"] = ok(cli, "select", pool, "--strategy", "margin", "--budget", "20", "--head", j("head.pt"),
                     "--labels", j("labels.parquet"), "--pending", j("sent.csv"), "--scores", j("scores"),
                     "--out", j("sel.parquet"), "--json")
    s["select_cm"] = ok(cli, "select", pool, "--strategy", "cluster-margin", "--budget", "20", "--head", j("head.pt"),
                        "--labels", j("labels.parquet"), "--clusters", j("clusters"), "--out", j("sel_cm.parquet"),
                        "--json")
    s["export"] = ok(cli, "export", j("sel.parquet"), "--out", j("sel.csv"), "--json")
    s["pending"] = ok(cli, "labels", "pending", "--sent", j("sel.parquet"), "--sent", j("sent.csv"), "--labels",
                      j("labels.parquet"), "--pool", pool, "--out", j("pending.parquet"), "--json")
    s["info"] = ok(cli, "info", j("sel.parquet"), "--json")
    s["split"] = ok(cli, "split", pool, "--labels", j("all.parquet"), "--test-fraction", "0.3", "--out", j("split"),
                    "--json")
    s["simulate"] = ok(cli, "simulate", "--pool", j("split", "pool"), "--labels", j("split", "pool_labels.parquet"),
                       "--test-pool", j("split", "test"), "--test-labels", j("split", "test_labels.parquet"),
                       "--strategies", "random,margin", "--seed-size", "20", "--budget", "20", "--rounds", "2",
                       "--repeats", "1", "--weight-decay", "1e-3", "--out", j("run"), "--json")
    s["report"] = ok(cli, "report", j("run", "results.parquet"), "--out", j("report"), "--json")
    s["transform"] = ok(cli, "transform", pool, "--labels", j("all.parquet"), "--per-class-cap", "50", "--out",
                        j("tpool"), "--labels-out", j("tlabels.parquet"), "--json")
    s["synth"] = ok(cli, "synth", "--out", j("synth"), "-n", "300", "-d", "8", "-c", "3", "--shard-rows", "100",
                    "--labels-out", j("synth_labels.parquet"), "--json")
    return s


def _clusters(path, pool):
    from alq.cluster.store import load_clusters

    with fs.staged_input(path) as local:
        return load_clusters(local, pool)


def _report_json(path) -> dict:
    with fs.staged_input(path) as local:
        return json.loads((local / "report.json").read_text())


def test_every_command_round_trips_on_s3(cli, inputs):
    local, remote, cwd = inputs
    a = pipeline(cli, local)
    b = pipeline(cli, remote)
    L = lambda *p: fs.join(local, *p)  # noqa: E731
    R = lambda *p: fs.join(remote, *p)  # noqa: E731

    # the same summaries, up to paths and timings (and those name the URIs, never a staged copy)
    for step in a:
        assert _strip(a[step]) == _strip(b[step]), step
    blob = json.dumps(b)
    assert "/alq-in-" not in blob and "/alq-out-" not in blob
    assert b["train"]["output"] == R("head.pt") and b["import"]["output"] == R("labels.parquet")

    # labels, pending ids and the CSV export record no path: the same bytes
    for name in ("labels.parquet", "pending.parquet", "sel.csv", "tlabels.parquet"):
        if name == "tlabels.parquet":  # its provenance names the source pool and labels
            assert data(table(L(name))).equals(data(table(R(name))))
            assert meta_of(R(name))["source_labels"] == R("all.parquet")
            continue
        assert read(L(name)) == read(R(name)), name
    assert read(L("synth_labels.parquet")) == read(R("synth_labels.parquet"))

    # heads: the same weights and fingerprint; metrics JSON the same up to its output path
    from alq.model.head import load_head

    with fs.staged_input(R("head.pt")) as rh:
        ha, hb = load_head(L("head.pt")), load_head(rh)
    assert ha.fingerprint == hb.fingerprint
    for sa, sb in zip(ha.nets, hb.nets):
        for (ka, va), (kb, vb) in zip(sa.state_dict().items(), sb.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
    assert hb.meta["labels"] == R("labels.parquet") and hb.meta["pool"] == R("pool")
    assert _strip(json.loads(read(L("train.json")))) == _strip(json.loads(read(R("train.json"))))

    # selections: the same rows in the same order; provenance names the URIs
    for name in ("sel.parquet", "sel_cm.parquet"):
        assert data(table(L(name))).equals(data(table(R(name)))), name
        assert _strip(meta_of(L(name))) == _strip(meta_of(R(name)))
    m = meta_of(R("sel.parquet"))
    assert m["labels"] == R("labels.parquet") and m["pending"] == [R("sent.csv")] and m["scores"] == R("scores")
    assert m["head"] == R("head.pt") and m["scores_fresh"] is True

    # scores and clusters: the same tables
    from alq.scoring.store import ScoresStore

    sa, sb = ScoresStore(L("scores")), ScoresStore(R("scores"))
    for shard in range(7):
        assert sa.read_shard(shard).equals(sb.read_shard(shard))
    pa_, pb = open_pool(L("pool")), open_pool(R("pool"))
    assert np.array_equal(_clusters(L("clusters"), pa_), _clusters(R("clusters"), pb))

    # split / transform / synth pools: the same rows
    for name in (("split", "pool"), ("split", "test"), ("tpool",), ("synth",)):
        pa_, pb = open_pool(L(*name)), open_pool(R(*name))
        assert pa_.fingerprint == pb.fingerprint, name
        assert np.array_equal(pa_.ids(np.arange(pa_.count)), pb.ids(np.arange(pb.count)))
    for name in ("pool_labels.parquet", "test_labels.parquet"):
        assert data(table(L("split", name))).equals(data(table(R("split", name))))

    # simulation results (timings aside) and the report's numbers
    from alq.staging import resolve

    ra, rb = table(L("run", "results.parquet")), table(resolve(R("run", "results.parquet")))  # behind the pointer
    keep = [c for c in ra.column_names if "seconds" not in c]
    assert ra.select(keep).replace_schema_metadata(None).equals(rb.select(keep).replace_schema_metadata(None))
    cfg = json.loads(fs.read_bytes(fs.join(fs.current_generation(R("run")), "config.json")))
    assert cfg["inputs"]["labels"] == R("split", "pool_labels.parquet")
    ja, jb = _report_json(L("report")), _report_json(R("report"))
    assert _strip(ja) == _strip(jb) and jb["results"] == R("run", "results.parquet")

    code, out, err = cli("info", R("run", "results.parquet"), "--json")  # a file inside a published directory
    assert code == 0, err
    assert json.loads(out)["path"] == R("run", "results.parquet") and json.loads(out)["kind"] != "pool"

    assert not Path("s3:").exists() and not (cwd / "s3:").exists()  # nothing mangled into a local folder


def test_remote_files_with_a_local_pool(cli, inputs):
    """Pool on disk, everything else on the store: the same head and selection as all-local."""
    local, remote, _ = inputs
    pool = str(local / "pool")
    for base in (local, remote):
        j = lambda *p, base=base: str(fs.join(base, *p))  # noqa: E731
        ok(cli, "labels", "import", j("ann.csv"), "--pool", pool, "--out", j("labels.parquet"))
        ok(cli, "train", pool, j("labels.parquet"), "--out", j("head.pt"), "--weight-decay", "1e-3")
        ok(cli, "select", pool, "--strategy", "margin", "--budget", "15", "--head", j("head.pt"), "--labels",
           j("labels.parquet"), "--out", j("sel.parquet"))
    assert read(local / "labels.parquet") == read(fs.join(remote, "labels.parquet"))
    a, b = table(local / "sel.parquet"), table(fs.join(remote, "sel.parquet"))
    assert data(a).equals(data(b)) and meta_of(fs.join(remote, "sel.parquet"))["pool"] == pool


def test_missing_remote_input_is_one_line_naming_the_uri(cli, inputs):
    local, remote, cwd = inputs
    uri = fs.join(remote, "nope", "x.parquet")
    code, out, err = cli("train", str(local / "pool"), uri, "--out", fs.join(remote, "head.pt"))
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and f"{uri}: labels file not found" in lines[0], err
    assert "s3:/" + uri[len("s3://"):] not in err.replace(uri, "")  # never the mangled s3:/ spelling
    assert not fs.exists(fs.join(remote, "head.pt")) and not (cwd / "s3:").exists()


def test_an_error_inside_a_staged_file_names_its_uri(cli, inputs):
    local, remote, _ = inputs
    bad = fs.join(remote, "bad.csv")
    fs.write_bytes(bad, b"id,label\n1,a\n99999,b\n")
    code, _, err = cli("labels", "import", bad, "--pool", str(local / "pool"), "--out", fs.join(remote, "l.parquet"))
    assert code == 2 and bad in err and "alq-in-" not in err, err
    assert "99999" in err and not fs.exists(fs.join(remote, "l.parquet"))


def test_replacing_a_remote_directory_switches_its_pointer(cli, inputs):
    local, remote, _ = inputs
    pool, out = str(local / "pool"), fs.join(remote, "clusters")
    ok(cli, "cluster", pool, "--out", out, "--n-clusters", "5")
    first = fs.current_generation(out)
    old_summary = fs.read_bytes(fs.join(first, "_clusters.parquet"))
    ok(cli, "cluster", pool, "--out", out, "--n-clusters", "9")
    second = fs.current_generation(out)
    assert second != first
    # a reader still on the old generation can finish: it is kept, whole, until the next switch
    assert fs.read_bytes(fs.join(first, "_clusters.parquet")) == old_summary
    assert sidecar.decode(fs.read_bytes(fs.join(second, "_clusters.parquet")), "_clusters.parquet",
                          what="summary")["n_clusters"] == 9
    assert set(fs.listdir(first)) == set(fs.listdir(second))
    ok(cli, "cluster", pool, "--out", out, "--n-clusters", "7")
    assert not fs.exists(fs.join(first, "_clusters.parquet"))  # two switches later it is gone
    assert json.loads(fs.read_bytes(fs.join(out, fs.POINTER)))["previous"] == fs.name_of(second)


def test_a_failed_command_publishes_nothing_remote(cli, inputs):
    local, remote, _ = inputs
    pool, out = str(local / "pool"), fs.join(remote, "sel.parquet")
    ok(cli, "labels", "import", fs.join(remote, "ann.csv"), "--pool", pool, "--out", fs.join(remote, "l.parquet"))
    code, _, err = cli("select", pool, "--strategy", "random", "--budget", "100000", "--labels",
                       fs.join(remote, "l.parquet"), "--out", out)
    assert code == 2 and "budget" in err
    assert not fs.exists(out)


def test_guard_refuses_remote_outputs_of_another_kind(cli, inputs):
    local, remote, cwd = inputs
    pool = str(local / "pool")
    R = lambda *p: fs.join(remote, *p)  # noqa: E731
    ok(cli, "labels", "import", R("ann.csv"), "--pool", pool, "--out", R("labels.parquet"))
    ok(cli, "select", pool, "--strategy", "random", "--budget", "10", "--labels", R("labels.parquet"),
       "--out", R("sel.parquet"))
    ok(cli, "cluster", pool, "--out", R("clusters"), "--n-clusters", "4")
    sel = read(R("sel.parquet"))

    def refused(*args, match):
        code, _, err = cli(*args)
        assert code == 2 and match in err, (args, err)
        assert len([ln for ln in err.splitlines() if ln.strip()]) <= 2  # the Error line (and its hint)

    refused("train", pool, R("labels.parquet"), "--out", R("sel.parquet"), "--weight-decay", "1e-3",
            match=f"--out {R('sel.parquet')}: already holds an alq selection, not an alq head")
    assert read(R("sel.parquet")) == sel
    refused("cluster", pool, "--out", R("sel.parquet"), match="is a file; clusters output is a directory")
    refused("select", pool, "--strategy", "random", "--budget", "5", "--out", R("clusters"),
            match=f"--out {R('clusters')}: is a directory")
    refused("report", R("sel.parquet"), "--out", R("clusters"), match="already holds an alq clusters directory")
    refused("train", pool, R("labels.parquet"), "--out", R("labels.parquet"),
            match="is also this command's input LABELS")
    refused("select", pool, "--strategy", "random", "--budget", "5", "--out", R("clusters", "x.parquet"),
            match=f"is inside the clusters directory {R('clusters')}")
    # a selection over a selection is fine; --overwrite lets another kind replace it
    ok(cli, "select", pool, "--strategy", "random", "--budget", "5", "--seed", "1", "--out", R("sel.parquet"))
    ok(cli, "train", pool, R("labels.parquet"), "--out", R("sel.parquet"), "--weight-decay", "1e-3",
       "--overwrite")
    from alq.guard import kind_of
    from alq.model.head import load_head

    with fs.staged_input(R("sel.parquet")) as copy:
        assert load_head(copy).n_classes == 4  # replaced by the head
    ok(cli, "train", pool, R("labels.parquet"), "--out", R("head.pt"), "--weight-decay", "1e-3")
    assert kind_of(R("head.pt")) == "head" and kind_of(R("clusters")) == "clusters"
    assert kind_of(R("labels.parquet")) == "labels" and kind_of(R("nothing-here")) is None
    assert not (cwd / "s3:").exists()


def test_file_uri_is_a_local_path(cli, inputs):
    local, _, _ = inputs
    ok(cli, "labels", "import", f"file://{local}/ann.csv", "--pool", f"file://{local}/pool",
       "--out", f"file://{local}/via_uri.parquet")
    ok(cli, "labels", "import", str(local / "ann.csv"), "--pool", str(local / "pool"),
       "--out", str(local / "plain.parquet"))
    assert (local / "via_uri.parquet").read_bytes() == (local / "plain.parquet").read_bytes()
