"""Nothing lost, nothing run, nothing unexplained: a table of hostile cases (issue 11).

Each case is (setup, command, expected exit code, a regex for the single
stderr line). Every case also checks that every file that existed before the
command is byte-for-byte unchanged (sha256), and failing cases that no new
visible file (a partial output) was left behind. Faults are real: a file-size
limit (RLIMIT_FSIZE, SIGXFSZ ignored) in a child process for "disk full", a
read-only bind mount for EROFS (skipped where mounting is not allowed).
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]


# -- the base directory every case starts from ------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """pool/ (200 x 8, 2 shards), labels.parquet (20 labels), head.pt, sel.parquet, clusters/, scores/,
    results.parquet, vectors x.npy: built once, copied per case."""
    from alq.cli import run
    from alq.store import PoolWriter

    d = tmp_path_factory.mktemp("base")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 8)) * 4
    y = rng.integers(0, 2, size=200)
    x = (centres[y] + rng.normal(size=(200, 8))).astype(np.float32)
    np.save(d / "x.npy", x[:50])
    w = PoolWriter(d / "pool", shard_rows=100, dtype="float32")
    w.add(x)
    w.close()
    (d / "done.csv").write_text("id,label\n" + "".join(f"{i},{y[i]}\n" for i in range(20)))
    (d / "every.csv").write_text("id,label\n" + "".join(f"{i},{y[i]}\n" for i in range(200)))
    steps = [["labels", "import", d / "every.csv", "--pool", d / "pool", "--out", d / "all.parquet", "-q"],
             ["labels", "import", d / "done.csv", "--pool", d / "pool", "--out", d / "labels.parquet", "-q"],
             ["train", d / "pool", d / "labels.parquet", "--out", d / "head.pt", "-q"],
             ["select", d / "pool", "--strategy", "random", "--budget", "10", "--out", d / "sel.parquet", "-q"],
             ["cluster", d / "pool", "--out", d / "clusters", "-q"],
             ["score", d / "pool", "--head", d / "head.pt", "--out", d / "scores", "-q"]]
    for argv in steps:
        assert run([str(a) for a in argv]) == 0, argv
    sys.path.insert(0, str(REPO / "tests"))
    from test_report import make_results

    make_results(d / "results.parquet")
    return d


def _hashes(d: Path) -> dict[str, str]:
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _visible(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")
            if not any(part.startswith(".") for part in p.relative_to(d).parts)}


# -- setups ---------------------------------------------------------------------------------------------
def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def _mkdir(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).mkdir(parents=True)


def _npy(name: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda d: np.save(d / name, array)


def _ids_parquet(name: str, ids: list) -> Callable[[Path], None]:
    return lambda d: pq.write_table(pa.table({"id": pa.array(ids, type=pa.int64())}), d / name)


def _dup_shard(d: Path) -> None:
    import json

    m = json.loads((d / "pool" / "manifest.json").read_text())
    m["shards"].append(dict(m["shards"][0]))
    m["count"] = sum(s["rows"] for s in m["shards"])
    (d / "pool" / "manifest.json").write_text(json.dumps(m))


def _dup_id_across_shards(d: Path) -> None:
    """Shard 1's first id set to shard 0's first id, with the manifest's checksum updated to match."""
    import json

    f = d / "pool" / "shard-000001.parquet"
    t = pq.read_table(f)
    ids = t.column("id").to_pylist()
    ids[0] = 0
    pq.write_table(t.set_column(t.schema.get_field_index("id"), "id", pa.array(ids, type=t.schema.field("id").type)), f)
    m = json.loads((d / "pool" / "manifest.json").read_text())
    m["shards"][1]["ids_sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    (d / "pool" / "manifest.json").write_text(json.dumps(m))


def _nan_encoder(d: Path) -> None:
    import torch

    class Enc(torch.nn.Module):
        def forward(self, x):
            return torch.log(x - 10.0)  # NaN for these inputs

    torch.jit.save(torch.jit.script(Enc()), str(d / "nan_enc.pt"))
    np.save(d / "raw.npy", np.ones((4, 8), dtype=np.float32))


def _printing_encoder(d: Path) -> None:
    import torch

    class Enc(torch.nn.Module):
        def forward(self, x):
            print("HELLO FROM THE ENCODER")
            return x * 2

    torch.jit.save(torch.jit.script(Enc()), str(d / "talk.pt"))
    np.save(d / "raw.npy", np.ones((4, 8), dtype=np.float32))


def _npy_short_header(d: Path) -> None:
    """A .npy whose header says 3 rows while the file holds 5."""
    np.save(d / "v.npy", np.ones((5, 4), dtype=np.float32))
    raw = (d / "v.npy").read_bytes()
    (d / "v.npy").write_bytes(raw.replace(b"(5, 4)", b"(3, 4)"))


def _symlink(name: str, to: str) -> Callable[[Path], None]:
    return lambda d: os.symlink(d / to, d / name)


def _labels_for_other_pool(d: Path) -> None:
    """A labels file that names another pool (ids overlap: both generated 0..N)."""
    from alq.store.labels import read_labels

    lab = read_labels(d / "labels.parquet")
    lab.write(d / "other.parquet", pool_fingerprint="0123456789abcdef")


def _scores_swapped(d: Path) -> None:
    s = d / "scores"
    a, b = sorted(p for p in s.iterdir() if p.suffix == ".parquet")[:2]
    shutil.copyfile(a, b)


def _clusters_swapped(d: Path) -> None:
    c = d / "clusters"
    a, b = sorted(c.glob("shard-*.clusters.parquet"))[:2]
    shutil.copyfile(a, b)


def _pt2_payload(d: Path) -> None:
    """A torch.export program whose archive also carries a pickle that would create MARKER when loaded."""
    import torch

    class Enc(torch.nn.Module):
        def forward(self, x):
            return x * 2

    prog = torch.export.export(Enc(), (torch.ones(4, 8),))
    torch.export.save(prog, str(d / "enc.pt2"))
    marker = d / "MARKER"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    payload = pickle.dumps(Boom())
    src = zipfile.ZipFile(d / "enc.pt2")
    with zipfile.ZipFile(d / "evil.pt2", "w") as dst:
        for item in src.infolist():
            evil = item.filename.endswith("sample_inputs/model.pt")
            dst.writestr(item, payload if evil else src.read(item.filename))
    src.close()
    (d / "enc.pt2").unlink()
    np.save(d / "raw.npy", np.ones((4, 8), dtype=np.float32))


def _all(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        for s in setups:
            s(d)
    return setup


# -- the table ------------------------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    args: list[str]  # "{d}" is the case's directory
    code: int
    stderr: str = ""  # regex the single stderr line must match (searched); "" = stderr may be anything
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, str], None] | None = None  # extra assertion on (dir, stdout)
    env: dict = field(default_factory=dict)
    fault: str | None = None  # "fsize": RLIMIT_FSIZE in a child process; "erofs": read-only bind mount of {d}/ro


SEL = ["select", "{d}/pool", "--strategy", "random", "--budget", "5"]
SELH = ["select", "{d}/pool", "--head", "{d}/head.pt", "--strategy", "margin", "--budget", "5"]


def _still_labels(d: Path, out: str) -> None:
    from alq.io import parquet_metadata

    assert parquet_metadata(d / "labels.parquet")["kind"] == "labels"


def _link_kept(d: Path, out: str) -> None:
    assert (d / "lab_link.parquet").is_symlink()
    from alq.store.labels import read_labels

    assert len(read_labels(d / "labels.parquet")) == 21  # the import went to the file the link names


def _one_class(d: Path, out: str) -> None:
    from alq.store.labels import read_labels

    assert read_labels(d / "new.parquet").classes == [3]


def _not_run(d: Path, out: str) -> None:
    assert not (d / "MARKER").exists(), "a pickle inside the .pt2 ran"


def _pending_excluded(d: Path, out: str) -> None:
    ids = pq.read_table(d / "s.parquet").column("id").to_pylist()
    assert not set(ids) & set(range(20, 60)), "pending ids were selected"


def _json_fresh_false(d: Path, out: str) -> None:
    import json

    assert json.loads(out)["scores"]["fresh"] is False


CASES = [
    # -- tracebacks instead of one line --------------------------------------------------------------
    Case("select-out-is-dir", [*SEL, "--out", "{d}/outdir"], 2, r"--out .*outdir: is a directory", _mkdir("outdir")),
    Case("train-out-is-dir", ["train", "{d}/pool", "{d}/labels.parquet", "--out", "{d}/outdir"], 2,
         r"is a directory", _mkdir("outdir")),
    Case("select-out-parent-is-file", [*SEL, "--out", "{d}/sel.parquet/new.parquet"], 2, r"parent .* is a file"),
    Case("report-out-is-file", ["report", "{d}/results.parquet", "--out", "{d}/done.csv"], 2, r"is a file"),
    Case("simulate-out-is-file", ["simulate", "--pool", "{d}/pool", "--labels", "{d}/all.parquet", "--test-pool",
                                  "{d}/pool", "--test-labels", "{d}/all.parquet", "-s", "random", "--seed-size", "5",
                                  "--budget", "5", "--rounds", "1", "--out", "{d}/done.csv"], 2, r"is a file"),
    Case("embed-zero-width", ["embed", "{d}/z.npy", "--out", "{d}/p2"], 2, r"z\.npy.*(0 columns|dimension 0|dim)",
         _npy("z.npy", np.zeros((5, 0), dtype=np.float32))),
    Case("embed-uint64-ids", ["embed", "{d}/x.npy", "--ids", "{d}/ids.npy", "--out", "{d}/p2"], 2,
         r"id does not fit int64",
         _npy("ids.npy", np.arange(2**63, 2**63 + 50, dtype=np.uint64))),
    Case("embed-latin1-ids", ["embed", "{d}/x.npy", "--ids", "{d}/ids.txt", "--out", "{d}/p2"], 2,
         r"ids\.txt.*(UTF-8|encoding)", _write("ids.txt", "".join(f"caf\xe9{i}\n" for i in range(50)).encode("latin-1"))),
    Case("labels-huge-int-id", ["labels", "import", "{d}/big.csv", "--pool", "{d}/pool", "--out", "{d}/labels.parquet"],
         2, r"big\.csv: line 2: id .*99999999999999999999", _write("big.csv", "id,label\n99999999999999999999,1\n")),
    Case("empty-head-file", [*SELH[:3], "{d}/empty.pt", *SELH[4:], "--out", "{d}/s.parquet"], 2,
         r"empty\.pt.*(empty|not a readable)", _write("empty.pt", b"")),
    Case("seed-negative", [*SEL, "--seed", "-1", "--out", "{d}/s.parquet"], 2, r"seed"),
    Case("seed-too-big", [*SEL, "--seed", str(2**64), "--out", "{d}/s.parquet"], 2, r"seed"),
    Case("pending-pq-suffix", [*SEL, "--budget", "100", "--pending", "{d}/x.pq", "--out", "{d}/s.parquet"], 0, "",
         _ids_parquet("x.pq", list(range(20, 60))), _pending_excluded),
    Case("pending-PARQUET-suffix", [*SEL, "--budget", "100", "--pending", "{d}/x.PARQUET", "--out", "{d}/s.parquet"],
         0, "", _ids_parquet("x.PARQUET", list(range(20, 60))), _pending_excluded),
    Case("pending-latin1", [*SEL, "--pending", "{d}/p.txt", "--out", "{d}/s.parquet"], 2, r"p\.txt.*(UTF-8|encoding)",
         _write("p.txt", "id\ncaf\xe9\n".encode("latin-1"))),
    Case("pending-unknown-id-message", [*SEL, "--pending", "{d}/p.txt", "--out", "{d}/s.parquet"], 2,
         r"p\.txt: row 0: pending id 999999 is not in the pool$", _write("p.txt", "999999\n")),
    Case("working-memory-nan", [*SELH, "--out", "{d}/s.parquet"], 2, r"ALQ_WORKING_MEMORY", env={"ALQ_WORKING_MEMORY": "nan"}),
    Case("working-memory-inf", [*SELH, "--out", "{d}/s.parquet"], 2, r"ALQ_WORKING_MEMORY", env={"ALQ_WORKING_MEMORY": "inf"}),
    # -- disk full (file-size limit) and read-only file systems: exit 1, one line naming the output ------
    *[Case(f"fsize-{name}", [*args, "-q"], 1, r"^Error: writing .*(file too large|no space)", fault="fsize")
      for name, args in [
          ("embed", ["embed", "{d}/x.npy", "--out", "{d}/p2"]),
          ("labels-import", ["labels", "import", "{d}/done.csv", "--pool", "{d}/pool", "--out", "{d}/l2.parquet"]),
          ("select", [*SEL, "--out", "{d}/s.parquet"]),
          ("score", ["score", "{d}/pool", "--head", "{d}/head.pt", "--out", "{d}/sc2"]),
          ("cluster", ["cluster", "{d}/pool", "--out", "{d}/cl2"]),
          ("train", ["train", "{d}/pool", "{d}/labels.parquet", "--out", "{d}/h2.pt"]),
          ("report", ["report", "{d}/results.parquet", "--out", "{d}/rep"]),
          ("synth", ["synth", "--out", "{d}/syn", "-n", "200", "-d", "8"]),
          ("labels-pending", ["labels", "pending", "--sent", "{d}/sel.parquet", "--out", "{d}/pend.parquet"]),
          ("transform", ["transform", "{d}/pool", "--labels", "{d}/all.parquet", "--per-class-cap", "50",
                         "--out", "{d}/tp", "--labels-out", "{d}/tl.parquet"]),
      ]],
    *[Case(f"erofs-{name}", [*args, "-q"], 1, r"^Error: .*ro.*read-only file system", _mkdir("ro"), fault="erofs")
      for name, args in [
          ("select", [*SEL, "--out", "{d}/ro/s.parquet"]),
          ("train", ["train", "{d}/pool", "{d}/labels.parquet", "--out", "{d}/ro/h.pt"]),
          ("embed", ["embed", "{d}/x.npy", "--out", "{d}/ro/p"]),
          ("labels-import", ["labels", "import", "{d}/done.csv", "--pool", "{d}/pool", "--out", "{d}/ro/l.parquet"]),
          ("score", ["score", "{d}/pool", "--head", "{d}/head.pt", "--out", "{d}/ro/sc"]),
          ("cluster", ["cluster", "{d}/pool", "--out", "{d}/ro/cl"]),
          ("report", ["report", "{d}/results.parquet", "--out", "{d}/ro/rep"]),
      ]],
    # -- outputs that would destroy inputs ------------------------------------------------------------
    Case("select-out-is-labels", [*SEL, "--labels", "{d}/labels.parquet", "--out", "{d}/labels.parquet"], 2,
         r"--out .*labels\.parquet: is also this command's input --labels", check=_still_labels),
    Case("select-out-is-head", [*SELH, "--out", "{d}/head.pt"], 2, r"is also this command's input --head"),
    Case("select-out-in-pool", [*SEL, "--out", "{d}/pool/manifest.json"], 2, r"inside the (input|pool) directory"),
    Case("train-out-in-pool", ["train", "{d}/pool", "{d}/labels.parquet", "--out", "{d}/pool/manifest.json"], 2,
         r"inside the (input|pool) directory"),
    Case("train-out-is-labels", ["train", "{d}/pool", "{d}/labels.parquet", "--out", "{d}/labels.parquet"], 2,
         r"is also this command's input LABELS"),
    Case("train-metrics-into-clusters", ["train", "{d}/pool", "{d}/labels.parquet", "--out", "{d}/h2.pt", "--metrics",
                                         "{d}/clusters/clusters.json"], 2, r"inside the clusters directory"),
    Case("out-beside-a-web-manifest", [*SEL, "--out", "{d}/web/s.parquet"], 0, "",
         _write("web/manifest.json", '{"name": "my app", "start_url": "/"}')),
    Case("select-out-over-labels-not-input", [*SEL, "--out", "{d}/labels.parquet"], 2,
         r"already holds an alq labels file, not an alq selection.*--overwrite"),
    Case("select-out-over-labels-overwrite", [*SEL, "--out", "{d}/labels.parquet", "--overwrite"], 0),
    Case("select-out-over-selection", [*SEL, "--out", "{d}/sel.parquet"], 0),
    Case("select-out-through-link-to-labels", [*SEL, "--labels", "{d}/labels.parquet", "--out", "{d}/ln.parquet"], 2,
         r"is also this command's input --labels", _symlink("ln.parquet", "labels.parquet")),
    Case("cluster-out-over-other-dir", ["cluster", "{d}/pool", "--out", "{d}/mine"], 2,
         r"already holds a directory with other files|not empty", _write("mine/notes.txt", "keep me")),
    Case("score-out-is-pool", ["score", "{d}/pool", "--head", "{d}/head.pt", "--out", "{d}/pool"], 2,
         r"is also this command's input POOL|not an alq scores directory"),
    Case("pending-out-is-sent", ["labels", "pending", "--sent", "{d}/sel.parquet", "--out", "{d}/sel.parquet"], 2,
         r"is also this command's input --sent"),
    Case("labels-import-through-symlink", ["labels", "import", "{d}/one.csv", "--pool", "{d}/pool", "--out",
                                           "{d}/lab_link.parquet"], 0, "",
         _all(_write("one.csv", "id,label\n150,1\n"), _symlink("lab_link.parquet", "labels.parquet")), _link_kept),
    # -- ids are identities; readers that do not guess ---------------------------------------------------
    Case("manifest-dup-shard-info", ["info", "{d}/pool", "--verify"], 2, r"shard-000000.*(twice|more than once)",
         _dup_shard),
    Case("manifest-dup-shard-select", [*SEL, "--out", "{d}/s.parquet"], 2, r"shard-000000.*(twice|more than once)",
         _dup_shard),
    Case("csv-unterminated-quote", ["labels", "import", "{d}/q.csv", "--pool", "{d}/pool", "--out", "{d}/new.parquet"],
         2, r"q\.csv: line 2: .*(unterminated|quote)", _write("q.csv", 'id,label\n3,"3\n7,7\n')),
    Case("labels-3-and-3.0", ["labels", "import", "{d}/f.csv", "--pool", "{d}/pool", "--out", "{d}/new.parquet"], 0, "",
         _write("f.csv", "id,label\n1,3\n2,3.0\n"), _one_class),
    Case("labels-parquet-by-content", ["labels", "import", "{d}/ann.PARQUET", "--pool", "{d}/pool", "--out",
                                       "{d}/new.parquet"], 0, "",
         lambda d: pq.write_table(pa.table({"id": [1, 2], "label": [3.0, 3.0]}), d / "ann.PARQUET"), _one_class),
    Case("labels-nan", ["labels", "import", "{d}/n.csv", "--pool", "{d}/pool", "--out", "{d}/new.parquet"], 2,
         r"n\.csv: line 3: .*(missing|nan)", _write("n.csv", "id,label\n1,3\n2,nan\n")),
    # -- code runs on load ------------------------------------------------------------------------------
    Case("pt2-pickle-payload", ["embed", "{d}/raw.npy", "--encoder", "{d}/evil.pt2", "--out", "{d}/p2"], 2,
         r"evil\.pt2.*(pickle|--trust-encoder)", _pt2_payload, _not_run),
    # -- silent wrong results -----------------------------------------------------------------------------
    Case("float16-underflow", ["embed", "{d}/tiny.npy", "--out", "{d}/p2"], 2, r"tiny\.npy.*row 0.*(underflow|float16)",
         _npy("tiny.npy", np.full((3, 4), 1e-9, dtype=np.float32))),
    Case("l2-huge-row", ["embed", "{d}/huge.npy", "--normalize", "l2", "--out", "{d}/p2", "--dtype", "float32"], 0, "",
         _npy("huge.npy", np.array([[1e20, 1e20], [1.0, 2.0]], dtype=np.float32)),
         lambda d, out: np.testing.assert_allclose(
             np.linalg.norm(np.load(d / "p2" / "shard-000000.npy").astype(np.float64), axis=1), 1.0, rtol=1e-3)),
    Case("l2-tiny-row", ["embed", "{d}/t.npy", "--normalize", "l2", "--out", "{d}/p2", "--dtype", "float32"], 0, "",
         _npy("t.npy", np.array([[1e-30, 1e-30], [1.0, 2.0]], dtype=np.float32))),
    Case("npy-header-mismatch", ["embed", "{d}/v.npy", "--out", "{d}/p2"], 2, r"v\.npy.*(header|rows|size)",
         _npy_short_header),
    Case("ids-text-kept-verbatim", ["embed", "{d}/x3.npy", "--ids", "{d}/ids3.txt", "--out", "{d}/p2"], 0, "",
         _all(_npy("x3.npy", np.ones((3, 2), dtype=np.float32)), _write("ids3.txt", "000001\n1_00\n+5\n")),
         lambda d, out: _pool_ids(d / "p2") == ["000001", "1_00", "+5"]
         or pytest.fail(f"ids rewritten: {_pool_ids(d / 'p2')}")),
    Case("ids-text-bom", ["embed", "{d}/x3.npy", "--ids", "{d}/bom.txt", "--out", "{d}/p2"], 0, "",
         _all(_npy("x3.npy", np.ones((3, 2), dtype=np.float32)), _write("bom.txt", "\ufeffid\n7\n8\n9\n")),
         lambda d, out: _pool_ids(d / "p2") == ["7", "8", "9"] or pytest.fail(_pool_ids(d / "p2"))),
    Case("pt2-garbage-one-line", ["embed", "{d}/raw.npy", "--encoder", "{d}/bad.pt2", "--out", "{d}/p2"], 2,
         r"bad\.pt2: not a torch\.export program",
         _all(_write("bad.pt2", b"PK\x03\x04 not really a zip"), _npy("raw.npy", np.ones((4, 8), np.float32)))),
    Case("encoder-nan-blames-encoder", ["embed", "{d}/raw.npy", "--encoder", "{d}/nan_enc.pt", "--out", "{d}/p2"], 2,
         r"nan_enc\.pt: the encoder produced NaN", _nan_encoder),
    Case("encoder-print-keeps-json-clean", ["embed", "{d}/raw.npy", "--encoder", "{d}/talk.pt", "--out", "{d}/p2",
                                            "--json"], 0, "", _printing_encoder,
         lambda d, out: __import__("json").loads(out)),
    Case("float64-beyond-float32", ["embed", "{d}/w.npy", "--out", "{d}/p2"], 2, r"w\.npy: row 1 .*float32 range",
         _npy("w.npy", np.array([[1.0, 2.0], [1e39, 0.0]]))),
    Case("dup-id-across-shards-verify", ["info", "{d}/pool", "--verify"], 2, r"id 0 appears twice", _dup_id_across_shards),
    Case("labels-other-pool-train", ["train", "{d}/pool", "{d}/other.parquet", "--out", "{d}/h2.pt"], 2,
         r"other\.parquet.*(another pool|other pool|was made for)", _labels_for_other_pool),
    Case("labels-other-pool-select", [*SEL, "--labels", "{d}/other.parquet", "--out", "{d}/s.parquet"], 2,
         r"other\.parquet.*(another pool|other pool|was made for)", _labels_for_other_pool),
    Case("scores-shard-swapped", [*SELH, "--scores", "{d}/scores", "--out", "{d}/s.parquet", "--json"], 0, "",
         _scores_swapped, _json_fresh_false),
    Case("scores-shard-swapped-verify", ["info", "{d}/scores", "--verify"], 2, r"shard-00000[01].*(sha256|checksum)",
         _scores_swapped),
    Case("clusters-shard-swapped-select", ["select", "{d}/pool", "--head", "{d}/head.pt", "--clusters", "{d}/clusters",
                                           "--strategy", "cluster-margin", "--budget", "5", "--out", "{d}/s.parquet"], 2,
         r"shard-000001\.clusters\.parquet: changed since `alq cluster`", _clusters_swapped),
    Case("clusters-verify-healthy", ["info", "{d}/clusters", "--verify"], 0),
]


def _pool_ids(p: Path) -> list:
    from alq.store import open_pool

    pool = open_pool(p)
    return [str(v) for v in pool.ids(np.arange(pool.count))]


def _fmt(args: list[str], d: Path) -> list[str]:
    return [a.replace("{d}", str(d)) for a in args]


def _child_fsize():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))


def _run_child(args: list[str], env: dict, **kw) -> tuple[int, str, str]:
    full = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **env)
    p = subprocess.run([sys.executable, "-m", "alq", *args], capture_output=True, text=True, env=full, timeout=300,
                       **kw)
    return p.returncode, p.stdout, p.stderr


def _ro_mount(path: Path) -> bool:
    """Bind-mount ``path`` read-only over itself; False where that is not allowed."""
    if shutil.which("mount") is None:
        return False
    ok = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode == 0
    if ok and subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", str(path)], capture_output=True)
        ok = False
    return ok


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_failure_case(case: Case, base: Path, tmp_path: Path, monkeypatch, capsys):
    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    if case.setup is not None:
        case.setup(d)
    before = _hashes(d)
    visible = _visible(d)
    args = _fmt(case.args, d)
    mounted = False
    try:
        if case.fault == "erofs":
            mounted = _ro_mount(d / "ro")
            if not mounted:
                pytest.skip("read-only bind mounts are not allowed here")
        if case.fault is not None:
            code, out, err = _run_child(args, case.env, preexec_fn=_child_fsize if case.fault == "fsize" else None)
        else:
            from alq.cli import run

            for k, v in case.env.items():
                monkeypatch.setenv(k, v)
            capsys.readouterr()
            code = run(args)
            out, err = capsys.readouterr()
    finally:
        if mounted:
            subprocess.run(["umount", str(d / "ro")], capture_output=True)
    assert "Traceback" not in err, err
    assert code == case.code, f"exit {code}, expected {case.code}; stderr: {err}"
    if case.code != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err}"
        assert lines[0].startswith("Error: "), lines[0]
        assert re.search(case.stderr, lines[0]), f"{case.stderr!r} not in {lines[0]!r}"
        left = _visible(d) - visible
        assert not left, f"partial outputs left behind: {sorted(left)}"
        junk = [p.name for p in d.rglob("*") if p.name.endswith((".tmp", ".building"))]
        assert not junk, f"temporary files left behind: {junk}"
    after = _hashes(d)
    changed = sorted(k for k, h in before.items() if after.get(k) != h
                     and not (case.code == 0 and _is_output(k, args, d)))
    assert not changed, f"pre-existing files changed or removed: {changed}"
    if case.check is not None:
        case.check(d, out)


def _is_output(rel: str, args: list[str], d: Path) -> bool:
    """A file under the command's --out (or what --out links to) may change when it succeeds."""
    outs = [os.path.realpath(args[i + 1]) for i, a in enumerate(args) if a in ("--out", "-o") and i + 1 < len(args)]
    p = os.path.realpath(d / rel)
    return any(p == o or p.startswith(o + os.sep) for o in outs)


def test_symlinked_pool_shares_the_writer_lock(base: Path, tmp_path: Path):
    """Two writers on one pool, one through a symlink: the second is refused, not silently both."""
    from alq.fs import lock

    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    os.symlink(d / "pool", d / "plink")
    before = _hashes(d / "pool")
    fd = lock.acquire(d / "pool")  # a first `alq embed --append` holding the pool
    try:
        code, _, err = _run_child(["embed", str(d / "x.npy"), "--out", str(d / "plink"), "--append"], {})
    finally:
        lock.release(fd)
    assert "Traceback" not in err
    assert code == 2 and re.search(r"another .* is writing it", err), err
    assert _hashes(d / "pool") == before


def test_no_traceback_without_debug_and_one_with(base: Path, tmp_path: Path):
    """ALQ_DEBUG=1 is the only way to see a traceback."""
    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    args = ["select", str(d / "pool"), "--strategy", "random", "--budget", "5", "--seed", "-1",
            "--out", str(d / "s.parquet")]
    code, _, err = _run_child(args, {})
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    code, _, err = _run_child(args, {"ALQ_DEBUG": "1"})
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("Error: "), err


def test_trust_encoder_is_what_lets_a_pt2_pickle_run(base: Path, tmp_path: Path):
    """The refusal above is real: with --trust-encoder torch.export.load does unpickle the payload."""
    d = tmp_path / "d"
    d.mkdir()
    _pt2_payload(d)
    code, _, err = _run_child(["embed", str(d / "raw.npy"), "--encoder", str(d / "evil.pt2"), "--out",
                               str(d / "p2"), "--trust-encoder", "-q"], {})
    assert "Traceback" not in err
    assert (d / "MARKER").exists(), f"the payload did not run even when trusted (exit {code}: {err})"


def test_next_writer_cleans_what_a_killed_one_left(base: Path, tmp_path: Path, cli):
    """.building / .old / ids spill beside the pool and unlisted shards inside it go with the next append."""
    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    (d / ".pool.k1ll3d.building").mkdir()
    (d / ".pool.k1ll3d.building" / "shard-000000.npy").write_bytes(b"half")
    (d / ".pool.ids.zz.tmp").mkdir()
    (d / ".pool.x.old").mkdir()
    (d / "pool" / "shard-000099.npy").write_bytes(b"orphan")
    (d / "pool" / ".shard-000002.npy.abc.tmp").write_bytes(b"half")
    code, out, err = cli("embed", d / "x.npy", "--out", d / "pool", "--append", "-q")
    assert code == 0, err
    left = sorted(p.name for p in d.iterdir() if p.name.startswith(".pool.") and not p.name.endswith(".lock"))
    assert left == [], left
    assert not (d / "pool" / "shard-000099.npy").exists()
    assert not (d / "pool" / ".shard-000002.npy.abc.tmp").exists()
    code, _, err = cli("info", d / "pool", "--verify")
    assert code == 0, err


def test_published_directories_get_the_umask_mode(base: Path, tmp_path: Path, cli):
    """scores/, clusters/ and report/ are 0755 like pools (mkdtemp alone makes them 0700)."""
    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    old = os.umask(0o022)
    try:
        assert cli("score", d / "pool", "--head", d / "head.pt", "--out", d / "sc", "-q")[0] == 0
        assert cli("cluster", d / "pool", "--out", d / "cl", "-q")[0] == 0
        assert cli("report", d / "results.parquet", "--out", d / "rep", "-q")[0] == 0
    finally:
        os.umask(old)
    for name in ("sc", "cl", "rep", "pool"):
        assert (d / name).stat().st_mode & 0o777 == 0o755, name


# -- a walk over every writing command: bad --out paths and missing inputs never give a traceback -------------
WRITERS = {
    "embed": (["embed", "{d}/x.npy", "--out", "{out}"], "dir"),
    "synth": (["synth", "--out", "{out}", "-n", "10", "-d", "2"], "dir"),
    "labels-import": (["labels", "import", "{d}/done.csv", "--pool", "{d}/pool", "--out", "{out}"], "file"),
    "labels-pending": (["labels", "pending", "--sent", "{d}/sel.parquet", "--out", "{out}"], "file"),
    "train": (["train", "{d}/pool", "{d}/labels.parquet", "--out", "{out}"], "file"),
    "score": (["score", "{d}/pool", "--head", "{d}/head.pt", "--out", "{out}"], "dir"),
    "cluster": (["cluster", "{d}/pool", "--out", "{out}"], "dir"),
    "select": ([*SEL, "--out", "{out}"], "file"),
    "report": (["report", "{d}/results.parquet", "--out", "{out}"], "dir"),
    "transform": (["transform", "{d}/pool", "--labels", "{d}/all.parquet", "--per-class-cap", "5", "--labels-out",
                   "{d}/t.parquet", "--out", "{out}"], "dir"),
    "simulate": (["simulate", "--pool", "{d}/pool", "--labels", "{d}/all.parquet", "--test-pool", "{d}/pool",
                  "--test-labels", "{d}/all.parquet", "-s", "random", "--seed-size", "5", "--budget", "5",
                  "--rounds", "1", "--out", "{out}"], "dir"),
}
BAD_OUTS = {"wrong-type": None, "parent-is-file": "{d}/done.csv/sub", "inside-pool": "{d}/pool/extra",
            "missing-input": "{d}/fresh"}


@pytest.mark.parametrize("bad", list(BAD_OUTS))
@pytest.mark.parametrize("command", list(WRITERS))
def test_every_command_refuses_bad_outputs_in_one_line(command, bad, base, tmp_path, cli):
    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    args, kind = WRITERS[command]
    out = BAD_OUTS[bad] or ("{d}/done.csv" if kind == "dir" else "{d}/clusters")
    argv = [a.replace("{out}", out).replace("{d}", str(d)) for a in args]
    if bad == "missing-input":  # the first input path that exists, gone
        i = next((i for i, a in enumerate(argv) if a.startswith(str(d)) and os.path.exists(a)), None)
        if i is None:
            pytest.skip(f"{command} reads no input file")
        argv[i] = argv[i] + ".missing"
    before, visible = _hashes(d), _visible(d)
    code, _, err = cli(*argv, "-q")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code in (1, 2) and len(lines) == 1 and lines[0].startswith("Error: "), (code, err)
    assert "Traceback" not in err
    after = _hashes(d)
    assert all(after.get(k) == h for k, h in before.items()) and _visible(d) == visible


def test_warnings_never_leak_under_quiet_nor_replace_the_error_line():
    import warnings

    from alq.cli._boundary import run_guarded
    from alq.errors import BadInputError

    def warn_then(fail: bool):
        def call() -> int:
            np.float32(1e30) * np.float32(1e30)  # numpy: RuntimeWarning overflow
            warnings.warn("torch says something", UserWarning, stacklevel=1)
            if fail:
                raise BadInputError("x.npy: row 3 has NaN or Inf")
            return 0
        return call

    for fail, quiet in ((False, True), (True, False), (True, True), (False, False)):
        errors, warns = [], []
        code = run_guarded(warn_then(fail), quiet=quiet, print_error=errors.append, print_warning=warns.append)
        assert code == (2 if fail else 0)
        assert errors == (["x.npy: row 3 has NaN or Inf"] if fail else [])
        if fail or quiet:
            assert warns == []
        else:  # after a successful run, one line per distinct warning
            assert len(warns) == 2 and any("overflow" in w for w in warns), warns


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions; EACCES cannot be made by chmod")
def test_permission_denied_is_one_line(base: Path, tmp_path: Path, cli):
    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    (d / "locked").mkdir()
    (d / "locked").chmod(0o555)
    try:
        code, _, err = cli(*[a.replace("{d}", str(d)) for a in SEL], "--out", d / "locked" / "s.parquet", "-q")
    finally:
        (d / "locked").chmod(0o755)
    assert code == 1 and re.fullmatch(r"Error: .*locked.*permission denied.*\n", err), err


def test_os_error_lines_name_the_path_and_the_fix():
    import errno

    from alq.cli._boundary import translate

    line, code = translate(OSError(errno.ENOSPC, "No space left on device"))
    assert code == 1 and "no space left on device" in line and "free space" in line
    line, code = translate(IsADirectoryError(errno.EISDIR, "Is a directory", "/data/out"))
    assert code == 1 and line.startswith("/data/out: is a directory (give a file path")
    line, code = translate(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"))
    assert code == 1 and "the write failed" in line
    line, code = translate(ValueError("expected non-negative integer"))
    assert code == 2 and line.startswith("bad value: expected non-negative integer")
    line, code = translate(KeyError("boom"))
    assert code == 1 and "ALQ_DEBUG=1" in line


def test_sigterm_cleans_up_and_says_so(tmp_path: Path):
    """A cron timeout sends SIGTERM: the writer's cleanup runs, one line, exit 143, the pool as it was."""
    import time

    from alq.store import PoolWriter

    pool_dir = tmp_path / "pool"
    w = PoolWriter(pool_dir, shard_rows=100, dtype="float32")
    w.add(np.zeros((300, 4), np.float32) + np.arange(4, dtype=np.float32))
    w.close()
    before = _hashes(pool_dir)
    np.save(tmp_path / "big.npy", np.ones((20_000, 4), np.float32))  # 20,000 one-row shards: slow enough
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "alq", "embed", str(tmp_path / "big.npy"), "--out", str(pool_dir),
                             "--shard-rows", "1", "--dtype", "float32", "--append", "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # generous: a loaded CI machine starts Python slowly
    while len(list(pool_dir.glob("shard-*.parquet"))) < 8:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 143, err
    assert err.strip().startswith("Error: terminated") and len(err.strip().splitlines()) == 1, err
    assert _hashes(pool_dir) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".building", ".tmp"))]


def test_score_and_cluster_clean_their_own_leftovers_and_lock(base: Path, tmp_path: Path, cli):
    from alq.fs import lock

    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    (d / ".scores.k1ll3d.building").mkdir()
    (d / ".clusters.k1ll3d.old").mkdir()
    assert cli("score", d / "pool", "--head", d / "head.pt", "--out", d / "scores", "-q")[0] == 0
    assert cli("cluster", d / "pool", "--out", d / "clusters", "-q")[0] == 0
    assert not (d / ".scores.k1ll3d.building").exists() and not (d / ".clusters.k1ll3d.old").exists()
    fd = lock.acquire(d / "scores")  # another `alq score` writing it now
    try:
        code, _, err = cli("score", d / "pool", "--head", d / "head.pt", "--out", d / "scores", "-q")
    finally:
        lock.release(fd)
    assert code == 2 and "is writing it right now" in err
