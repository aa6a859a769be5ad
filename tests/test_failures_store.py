"""Store and failure semantics (issue 20): no silent wrong result, no stuck cron job.

A table of hostile CLI cases in the style of tests/test_failures.py (setup,
argv, exit code, a regex for the single stderr line, every pre-existing
file's sha256 unchanged), then the cases that need real kills at an exact
point, or concurrent writers against the loopback S3 server.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]


# -- the base directory every case starts from ------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """pool/ (200 x 8, 2 shards), labels.parquet, all.parquet, head.pt, clusters/, scores/, results.parquet."""
    from alq.cli import run
    from alq.store import PoolWriter

    d = tmp_path_factory.mktemp("base")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 8)) * 4
    y = rng.integers(0, 2, size=200)
    x = (centres[y] + rng.normal(size=(200, 8))).astype(np.float32)
    np.save(d / "x.npy", x[:50] + 100)
    w = PoolWriter(d / "pool", shard_rows=100, dtype="float32")
    w.add(x)
    w.close()
    (d / "done.csv").write_text("id,label\n" + "".join(f"{i},{y[i]}\n" for i in range(20)))
    (d / "every.csv").write_text("id,label\n" + "".join(f"{i},{y[i]}\n" for i in range(200)))
    steps = [["labels", "import", d / "every.csv", "--pool", d / "pool", "--out", d / "all.parquet", "-q"],
             ["labels", "import", d / "done.csv", "--pool", d / "pool", "--out", d / "labels.parquet", "-q"],
             ["train", d / "pool", d / "labels.parquet", "--out", d / "head.pt", "-q"],
             ["cluster", d / "pool", "--out", d / "clusters", "-q"],
             ["score", d / "pool", "--head", d / "head.pt", "--out", d / "scores", "-q"],
             ["split", d / "pool", "--labels", d / "all.parquet", "--out", d / "split", "-q"]]
    for argv in steps:
        assert run([str(a) for a in argv]) == 0, argv
    sys.path.insert(0, str(REPO / "tests"))
    from test_report import make_results

    make_results(d / "results.parquet")
    assert run(["report", str(d / "results.parquet"), "--out", str(d / "report"), "-q"]) == 0
    return d


@pytest.fixture
def case_dir(base, tmp_path):
    d = tmp_path / "case"
    shutil.copytree(base, d, symlinks=True)
    return d


def _hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and not p.is_symlink()}


def _alq(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alq", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


# -- setups ---------------------------------------------------------------------------------------------
def _manifest_edit(d: Path, fn) -> None:
    f = d / "pool" / "manifest.json"
    m = json.loads(f.read_text())
    fn(m)
    f.write_text(json.dumps(m))


def _shard_outside(d: Path) -> None:
    """The manifest's second shard points at a copy of it outside the pool (checksums match the copy)."""
    (d / "elsewhere").mkdir()
    for ext in ("npy", "parquet"):
        shutil.copyfile(d / "pool" / f"shard-000001.{ext}", d / "elsewhere" / f"shard.{ext}")
    _manifest_edit(d, lambda m: m["shards"][1].update(name="../elsewhere/shard"))


def _shard_absolute(d: Path) -> None:
    for ext in ("npy", "parquet"):
        shutil.copyfile(d / "pool" / f"shard-000001.{ext}", d / f"abs.{ext}")
    _manifest_edit(d, lambda m: m["shards"][1].update(name=str(d / "abs")))


def _nan_row_resummed(d: Path) -> None:
    """Row 3 of shard 0 set to NaN, and the manifest's checksum updated to match (a 'repaired' pool)."""
    f = d / "pool" / "shard-000000.npy"
    a = np.load(f)
    a[3, 2] = np.nan
    np.save(f, a)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    _manifest_edit(d, lambda m: m["shards"][0].update(sha256=digest))


def _flipped_bytes(d: Path) -> None:
    """Bytes of shard 1 overwritten in place (bit rot, a bad copy): row 7 gets an all-ones exponent."""
    f = d / "pool" / "shard-000001.npy"
    raw = bytearray(f.read_bytes())
    header = len(raw) - 100 * 8 * 4
    at = header + (7 * 8 + 5) * 4
    raw[at:at + 4] = b"\xff\xff\xff\x7f"  # a NaN pattern
    f.write_bytes(bytes(raw))


@dataclass
class Case:
    id: str
    args: list[str]  # "{d}" is the case's directory
    code: int
    stderr: str = ""  # regex the single stderr line must match (searched)
    setup: Callable[[Path], None] | None = None


SELH = ["select", "{d}/pool", "--head", "{d}/head.pt", "--strategy", "margin", "--budget", "5", "--out", "{d}/s.parquet"]
OUTSIDE = r"shard name '\.\./elsewhere/shard' is not a plain file name inside the pool"
NAN = r"shard-000000\.npy: row 3: NaN or Inf in the stored embeddings"
FLIP = r"shard-000001\.npy: row 7: NaN or Inf"

CASES = [
    # -- item 27: a manifest that points outside its pool is refused, never followed or rewritten -----------
    Case("outside-info-verify", ["info", "{d}/pool", "--verify"], 2, OUTSIDE, _shard_outside),
    Case("outside-select", ["select", "{d}/pool", "--strategy", "random", "--budget", "5", "--out", "{d}/s.parquet"],
         2, OUTSIDE, _shard_outside),
    Case("outside-embed-append", ["embed", "{d}/x.npy", "--out", "{d}/pool", "--append"], 2, OUTSIDE, _shard_outside),
    Case("absolute-shard-info", ["info", "{d}/pool"], 2, r"is not a plain file name inside the pool", _shard_absolute),
    # -- item 30: values are checked on --verify and on every streamed block -----------------------------------
    Case("nan-resummed-verify", ["info", "{d}/pool", "--verify"], 2, NAN, _nan_row_resummed),
    Case("nan-resummed-score", ["score", "{d}/pool", "--head", "{d}/head.pt", "--out", "{d}/sc2"], 2, NAN,
         _nan_row_resummed),
    # no head: a head trained before the shard was rewritten is refused first (another pool's head)
    Case("nan-resummed-select", ["select", "{d}/pool", "--strategy", "kcenter", "--budget", "5", "--out",
                                 "{d}/s.parquet"], 2, NAN, _nan_row_resummed),
    Case("nan-resummed-cluster", ["cluster", "{d}/pool", "--out", "{d}/cl2", "-q"], 2, NAN, _nan_row_resummed),
    Case("flipped-bytes-score", ["score", "{d}/pool", "--head", "{d}/head.pt", "--out", "{d}/sc2"], 2, FLIP,
         _flipped_bytes),
    Case("flipped-bytes-verify", ["info", "{d}/pool", "--verify"], 2, r"shard-000001\.npy: checksum mismatch",
         _flipped_bytes),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case(case_dir, case):
    d = case_dir
    if case.setup is not None:
        case.setup(d)
    before = _hashes(d)
    r = _alq(*[a.replace("{d}", str(d)) for a in case.args])
    assert r.returncode == case.code, (r.returncode, r.stderr)
    if case.stderr:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
        assert re.search(case.stderr, lines[0]), lines[0]
    after = _hashes(d)
    assert {k: v for k, v in after.items() if k in before} == before, "a pre-existing file changed"


def test_verify_json_names_the_nan_row(case_dir):
    _nan_row_resummed(case_dir)
    r = _alq("info", case_dir / "pool", "--verify", "--json")
    assert r.returncode == 2, r.stderr
    from alq.store.pool import ShardedPool

    problems = ShardedPool(case_dir / "pool").verify()
    assert len(problems) == 1 and re.search(NAN, problems[0]), problems


# -- item 9a / 9c: SIGKILL exactly between the two renames of a directory replacement ---------------------
_KILL_AT_SWAP = textwrap.dedent("""
    import os, signal, sys
    real = os.replace
    def replace(src, dst, *a, **k):
        dst_s = os.path.realpath(os.fspath(dst))
        parent, name = os.path.dirname(dst_s), os.path.basename(dst_s)
        if os.fspath(src).endswith(".building") and not os.path.lexists(dst_s) and any(
                n.startswith("." + name + ".") and n.endswith(".old") for n in os.listdir(parent)):
            os.kill(os.getpid(), signal.SIGKILL)  # the old output is aside, the new one not yet in
        return real(src, dst, *a, **k)
    os.replace = replace
    from alq.cli import run
    sys.exit(run(sys.argv[1:]))
""")


def _killed_at_swap(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _KILL_AT_SWAP, *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


def _olds(d: Path, name: str) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".old"))


SWAPS = {
    "scores": ["score", "{d}/pool", "--head", "{d}/head.pt", "--out", "{d}/scores", "-q"],
    "clusters": ["cluster", "{d}/pool", "--out", "{d}/clusters", "-q"],
    "report": ["report", "{d}/results.parquet", "--out", "{d}/report", "-q"],
    "split": ["split", "{d}/pool", "--labels", "{d}/all.parquet", "--out", "{d}/split", "--overwrite", "--seed", "3",
              "-q"],
    "pool": ["embed", "{d}/x.npy", "--out", "{d}/pool", "--overwrite", "-q"],
}


@pytest.mark.parametrize("target", sorted(SWAPS))
def test_sigkill_between_the_renames_a_reader_puts_the_previous_output_back(case_dir, target):
    d = case_dir
    before = {k: v for k, v in _hashes(d).items() if k.startswith(target + "/")}
    argv = [a.replace("{d}", str(d)) for a in SWAPS[target]]
    r = _killed_at_swap(*argv)
    assert r.returncode == -9, (r.returncode, r.stderr)
    olds = _olds(d, target)
    assert not (d / target).exists() and len(olds) == 1  # exactly the window of the issue
    inner = {"split": "test", "report": "report.json"}.get(target, "")  # split: a reader of one part
    info = _alq("info", d / target / inner, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["restored_from"] == olds[0]
    assert {k: v for k, v in _hashes(d).items() if k.startswith(target + "/")} == before
    assert _olds(d, target) == []
    again = _alq(*argv)  # and the next run goes through, leaving no debris
    assert again.returncode == 0, again.stderr
    assert not [p.name for p in d.iterdir() if p.name.startswith(f".{target}.") and not p.name.endswith(".lock")]


@pytest.mark.parametrize("target", sorted(SWAPS))
def test_sigkill_between_the_renames_the_next_writer_puts_it_back(case_dir, target):
    d = case_dir
    argv = [a.replace("{d}", str(d)) for a in SWAPS[target]]
    assert _killed_at_swap(*argv).returncode == -9
    assert not (d / target).exists()
    again = _alq(*argv)
    assert again.returncode == 0, again.stderr
    assert (d / target).is_dir() and _olds(d, target) == []
    assert not [p.name for p in d.iterdir() if p.name.startswith(f".{target}.") and not p.name.endswith(".lock")]


def test_killed_overwrite_then_plain_embed_keeps_the_pool(case_dir):
    """The nightly script's plain `alq embed` after a killed `--overwrite`: the 200-row pool comes back, never
    replaced by the 50 new rows, and the refusal names what happened."""
    d = case_dir
    manifest = (d / "pool" / "manifest.json").read_bytes()
    assert _killed_at_swap("embed", d / "x.npy", "--out", d / "pool", "--overwrite", "-q").returncode == -9
    assert not (d / "pool").exists()
    r = _alq("embed", d / "x.npy", "--out", d / "pool", "-q")
    assert r.returncode == 2, r.stderr
    assert re.search(r"already exists and is not empty \(its previous pool, which a killed replace had moved "
                     r"aside to \.pool\.\w{8}\.old, is back in place\)", r.stderr), r.stderr
    assert (d / "pool" / "manifest.json").read_bytes() == manifest
    from alq.store import open_pool

    assert open_pool(d / "pool").count == 200 and open_pool(d / "pool").verify() == []


def test_killed_split_overwrite_never_leaks_test_rows(case_dir):
    """Published as one directory: the split in place is always one draw (pool and test disjoint)."""
    from alq.store import open_pool

    d = case_dir
    argv = SWAPS["split"]
    assert _killed_at_swap(*[a.replace("{d}", str(d)) for a in argv]).returncode == -9
    for _ in range(2):
        pool, test = open_pool(d / "split" / "pool"), open_pool(d / "split" / "test")
        assert not set(pool.ids().tolist()) & set(test.ids().tolist())
        assert pool.count + test.count == 200
        assert _alq(*[a.replace("{d}", str(d)) for a in argv]).returncode == 0


def test_report_sweeps_a_killed_reports_building_dir(case_dir):
    d = case_dir
    junk = d / ".report.abcd1234.building"
    junk.mkdir()
    (junk / "plot.png").write_bytes(b"half")
    r = _alq("report", d / "results.parquet", "--out", d / "report", "-q")
    assert r.returncode == 0, r.stderr
    assert not junk.exists()


def test_sweep_leaves_a_sibling_outputs_moved_aside_copy(tmp_path):
    """`.pool.v2.XXXXXXXX.old` is pool.v2's previous output: a writer of `pool` never touches it."""
    from alq.store.debris import sweep

    (tmp_path / "pool").mkdir()
    theirs = tmp_path / ".pool.v2.abcd1234.old"
    theirs.mkdir()
    mine = tmp_path / ".pool.abcd1234.old"
    mine.mkdir()
    assert sweep(tmp_path / "pool", None) == [mine.name]
    assert theirs.is_dir() and not mine.exists()


# -- item 7: a first build that was killed is debris, not a reason to refuse the rerun ----------------------
def test_local_dir_with_only_a_killed_builds_shards_is_cleared(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((5, 4), np.float32))
    (tmp_path / "pool").mkdir()
    for f in ("shard-000000.npy", "shard-000000.parquet", ".shard-000001.npy.abc.tmp"):
        (tmp_path / "pool" / f).write_bytes(b"partial")
    r = _alq("embed", tmp_path / "x.npy", "--out", tmp_path / "pool", "-q")
    assert r.returncode == 0, r.stderr
    from alq.store import open_pool

    assert open_pool(tmp_path / "pool").count == 5 and open_pool(tmp_path / "pool").verify() == []


def test_local_dir_with_other_files_is_still_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((5, 4), np.float32))
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "shard-000000.npy").write_bytes(b"partial")
    (tmp_path / "pool" / "notes.txt").write_text("keep me")
    r = _alq("embed", tmp_path / "x.npy", "--out", tmp_path / "pool", "-q")
    assert r.returncode == 2 and (tmp_path / "pool" / "notes.txt").read_text() == "keep me"


def test_s3_killed_first_build_after_the_lock_ttl_the_cli_rerun_proceeds(s3_bucket, tmp_path):
    from alq import fs
    from alq.fs.lock import REMOTE_LOCK
    from alq.store import PoolWriter, open_pool

    uri = fs.join(s3_bucket, "pool")
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    w = PoolWriter(uri, shard_rows=100)
    w.add(x)
    w._settle()  # three shards uploaded; then the process "dies": no manifest, no cleanup
    w._lock._stop.set()
    w._closed, w._lock = True, None
    fs.write_bytes(fs.join(uri, REMOTE_LOCK), json.dumps({"owner": "dead", "expires": 0}).encode())  # TTL passed
    np.save(tmp_path / "x.npy", x)
    r = _alq("embed", tmp_path / "x.npy", "--out", uri, "--shard-rows", "100", "-q")
    assert r.returncode == 0, r.stderr
    assert open_pool(uri).count == 300 and open_pool(uri).verify() == [] and open_pool(uri).unlisted() == []


def test_s3_sigkill_of_a_first_build_the_rerun_proceeds_at_once(s3_bucket, tmp_path):
    """A real SIGKILL mid-upload: the dead writer's lock names a process of this host that is gone, so the
    rerun takes it over without waiting out ALQ_LOCK_TTL, clears the shard objects and builds the pool."""
    import time

    from alq import fs
    from alq.store import open_pool

    uri = fs.join(s3_bucket, "pool")
    np.save(tmp_path / "big.npy", np.random.default_rng(9).normal(size=(150_000, 24)).astype(np.float32))
    proc = subprocess.Popen([sys.executable, "-m", "alq", "embed", str(tmp_path / "big.npy"), "--out", uri,
                             "--shard-rows", "500", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 120
        while len(fs.listdir(uri)) < 5 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert "manifest.json" not in fs.listdir(uri) and "_alq_writer.lock" in fs.listdir(uri)
    np.save(tmp_path / "x.npy", np.ones((7, 24), np.float32))
    r = _alq("embed", tmp_path / "x.npy", "--out", uri, "-q")
    assert r.returncode == 0, r.stderr
    assert open_pool(uri).count == 7 and open_pool(uri).unlisted() == []


def test_s3_manifest_pointing_outside_the_pool_is_refused(s3_bucket, tmp_path):
    from alq import fs
    from alq.store import PoolWriter

    uri = fs.join(s3_bucket, "pool")
    w = PoolWriter(uri, shard_rows=50)
    w.add(np.ones((100, 4), np.float32))
    w.close()
    for ext in ("npy", "parquet"):
        fs.write_bytes(fs.join(s3_bucket, f"elsewhere/shard.{ext}"), fs.read_bytes(fs.join(uri, f"shard-000001.{ext}")))
    m = json.loads(fs.read_bytes(fs.join(uri, "manifest.json")))
    m["shards"][1]["name"] = "../elsewhere/shard"
    fs.write_bytes(fs.join(uri, "manifest.json"), json.dumps(m).encode())
    before = fs.read_bytes(fs.join(uri, "manifest.json"))
    np.save(tmp_path / "x.npy", np.full((3, 4), 2.0, np.float32))
    for argv in (["info", uri, "--verify"], ["embed", tmp_path / "x.npy", "--out", uri, "--append", "-q"]):
        r = _alq(*argv)
        assert r.returncode == 2 and re.search(OUTSIDE, r.stderr) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert fs.read_bytes(fs.join(uri, "manifest.json")) == before


# -- item 8: writers of one directory output on object storage --------------------------------------------
def test_s3_report_writers_one_wins_whole_and_the_pointer_names_a_complete_generation(base, s3_bucket):
    from alq import fs

    uri = fs.join(s3_bucket, "rep")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "alq", "report", str(base / "results.parquet"), "--out", uri,
                               "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(3)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert code == 0 or (code == 2 and len(err.strip().splitlines()) == 1 and "another" in err), (code, err)
    gen = fs.current_generation(uri)
    assert {"report.json", "report.md"} <= set(fs.listdir(gen)), fs.listdir(uri, recursive=True)


def test_s3_report_refused_while_another_writer_holds_the_output(base, s3_bucket):
    from alq import fs

    uri = fs.join(s3_bucket, "rep")
    with fs.staged_output(uri, kind="dir") as local:  # this process is the writer
        r = _alq("report", base / "results.parquet", "--out", uri, "-q")
        assert r.returncode == 2 and "another" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        local.mkdir()
        (local / "report.md").write_text("mine")
    assert fs.read_bytes(fs.join(fs.current_generation(uri), "report.md")) == b"mine"


def test_s3_pointer_switch_is_conditional(s3_bucket, tmp_path):
    """A writer whose pointer read is stale publishes nothing and removes only its own generation."""
    from alq import fs
    from alq.errors import StoreError
    from alq.fs import generations  # where publish_dir's pointer switch reads the pointer

    uri = fs.join(s3_bucket, "out")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("a")
    first = fs.publish_dir(tmp_path / "a", uri)
    real = generations.read_versioned
    generations.read_versioned = lambda u: (b'{"generation": "' + first.encode() + b'"}', '"stale-etag"')
    try:
        with pytest.raises(StoreError, match="another writer published it"):
            fs.publish_dir(tmp_path / "a", uri)
    finally:
        generations.read_versioned = real
    assert fs.current_generation(uri) == fs.join(uri, first)
    assert {n.split("/", 1)[0] for n in fs.listdir(uri, recursive=True)} == {first, fs.POINTER}


@pytest.mark.parametrize("body", [b"[1, 2]", b'"gen-x"', b'{"generation": 5}', b'{"generation": "../../x"}',
                                  b"not json"])
def test_s3_malformed_pointer_is_bad_input(s3_bucket, body):
    from alq import fs

    uri = fs.join(s3_bucket, "rep")
    fs.write_bytes(fs.join(uri, "gen-1", "report.md"), b"x")
    fs.write_bytes(fs.join(uri, fs.POINTER), body)
    r = _alq("info", uri)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "_alq_current.json" in r.stderr, r.stderr


# -- item 9: a simulation that failed or was killed before it finished -------------------------------------------
SIM = ["simulate", "--pool", "{d}/pool", "--labels", "{d}/all.parquet", "--test-pool", "{d}/split/test",
       "--test-labels", "{d}/split/test_labels.parquet", "-s", "random", "--seed-size", "5", "--budget", "5",
       "--rounds", "3", "--out", "{d}/run", "-q"]


def _fsize_limit():
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def _visible(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if not any(x.startswith(".") for x in p.relative_to(d).parts)}


def test_simulate_under_a_file_size_limit_leaves_nothing_and_the_rerun_runs(case_dir):
    d = case_dir
    argv = [a.replace("{d}", str(d)) for a in SIM]
    before = _visible(d)
    r = subprocess.run([sys.executable, "-m", "alq", *argv], capture_output=True, text=True, timeout=300,
                       preexec_fn=_fsize_limit, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "file too large" in r.stderr, r.stderr
    assert _visible(d) == before, _visible(d) - before  # no partial run directory
    again = _alq(*argv)
    assert again.returncode == 0, again.stderr
    assert pq.read_metadata(d / "run" / "results.parquet").num_rows == 12  # 3 repeats x 4 rounds


def test_plain_rerun_continues_a_killed_simulation(case_dir):
    """The nightly job's same command after a SIGKILL: the committed rounds are kept, the rest is run, and the
    results equal an uninterrupted run's."""
    d = case_dir
    argv = [a.replace("{d}", str(d)) for a in SIM]
    ref = [a.replace("{d}/run", str(d / "ref")).replace("{d}", str(d)) for a in SIM]
    assert _alq(*ref).returncode == 0
    kill_after_round_2 = textwrap.dedent("""
        import os, signal, sys
        from alq.simulate import rundir
        real = rundir.RunDir.commit
        def commit(self, strategy, repeat, rnd, *a, **k):
            real(self, strategy, repeat, rnd, *a, **k)
            if strategy == "random" and rnd == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        rundir.RunDir.commit = commit
        from alq.cli import run
        sys.exit(run(sys.argv[1:]))
    """)
    r = subprocess.run([sys.executable, "-c", kill_after_round_2, *argv], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == -9, r.stderr
    kept = (d / "run" / "state" / "random" / "r0" / "round-1.json").read_bytes()
    again = _alq(*argv, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["rounds_resumed"] == 2
    assert (d / "run" / "state" / "random" / "r0" / "round-1.json").read_bytes() == kept

    def rows(p):
        t = pq.read_table(p).to_pylist()
        return [{k: v for k, v in row.items() if "seconds" not in k} for row in t]

    assert rows(d / "run" / "results.parquet") == rows(d / "ref" / "results.parquet")
    done = _alq(*argv)  # a finished run is still never redone silently
    assert done.returncode == 2 and "--resume" in done.stderr


def test_s3_simulate_refused_while_another_writer_holds_the_output(base, s3_bucket):
    from alq import fs

    uri = fs.join(s3_bucket, "run")
    argv = [a.replace("{d}/run", uri).replace("{d}", str(base)) for a in SIM]
    with fs.staged_output(uri, kind="dir"):
        r = _alq(*argv)
        assert r.returncode == 2 and "another" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _alq(*argv)
    assert r.returncode == 0, r.stderr
    assert {"config.json", "results.parquet"} <= set(fs.listdir(fs.current_generation(uri)))


# -- item 9b: --engine ray fails with the local engine's one line and exit code ------------------------------------
def _nan_encoder(d: Path) -> None:
    import torch

    class Enc(torch.nn.Module):
        def forward(self, x):
            return torch.log(x - 10.0)  # NaN for these inputs

    torch.jit.save(torch.jit.script(Enc()), str(d / "nan_enc.pt"))
    np.save(d / "raw.npy", np.ones((300, 8), dtype=np.float32))


RAY_CASES = [
    ("score-nan-row", ["score", "{d}/pool", "--head", "{d}/head.pt", "--out", "{d}/sc2", "-q"], _nan_row_resummed),
    ("embed-encoder-nan", ["embed", "{d}/raw.npy", "--encoder", "{d}/nan_enc.pt", "--out", "{d}/p2",
                           "--shard-rows", "100", "-q"], _nan_encoder),
]


@pytest.mark.ray
@pytest.mark.parametrize("name,args,setup", RAY_CASES, ids=[c[0] for c in RAY_CASES])
def test_ray_failures_are_the_local_line(case_dir, name, args, setup):
    pytest.importorskip("ray")
    d = case_dir
    setup(d)
    argv = [a.replace("{d}", str(d)) for a in args]
    local = _alq(*argv)
    assert local.returncode == 2 and len(local.stderr.strip().splitlines()) == 1, local.stderr
    ray = _alq(*argv, "--engine", "ray", env={"RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"})
    assert ray.returncode == local.returncode, ray.stderr
    assert ray.stderr.strip() == local.stderr.strip(), ray.stderr  # no Ray log lines before it
