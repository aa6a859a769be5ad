"""The CLI layer's hostile cases (issue 20): one ``Error:`` line, the right exit code, nothing touched.

Same table style as ``tests/test_failures.py`` (and its ``base`` directory): each case is (setup, command,
expected exit code, a regex for the single stderr line); every file that existed before the command is
byte-for-byte unchanged (sha256), and a failing command leaves no new visible file behind.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_failures import _fmt, _hashes, _npy, _visible, _write  # noqa: E402
from test_failures import base as base  # noqa: E402,F401  (the shared module-scoped fixture)


# -- setups ---------------------------------------------------------------------------------------------
def _flip_npy_header(d: Path) -> None:
    """A '#' in a shard's NPY header dict: numpy's fallback parser raises tokenize.TokenError."""
    f = d / "pool" / "shard-000000.npy"
    raw = bytearray(f.read_bytes())
    raw[20] = ord("#")
    f.write_bytes(bytes(raw))


def _truncate_npy(d: Path) -> None:
    f = d / "pool" / "shard-000000.npy"
    f.write_bytes(f.read_bytes()[:-100])


def _flip_parquet(d: Path) -> None:
    f = d / "pool" / "shard-000000.parquet"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))


def _other_pool_head(d: Path) -> None:
    """other.pt: a head trained on another pool of the same dimension (8), with the same generated ids."""
    from alq.cli import run
    from alq.store import PoolWriter

    rng = np.random.default_rng(1)
    w = PoolWriter(d / "other", shard_rows=100, dtype="float32")
    w.add(rng.normal(size=(200, 8)).astype(np.float32))
    w.close()
    assert run(["labels", "import", str(d / "done.csv"), "--pool", str(d / "other"), "--out",
                str(d / "other_labels.parquet"), "-q"]) == 0
    assert run(["train", str(d / "other"), str(d / "other_labels.parquet"), "--out", str(d / "other.pt"), "-q"]) == 0


def _corrupt_checksummed_parquet(d: Path) -> None:
    """v.parquet written with page checksums (as Spark writes them), one byte of a data page flipped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.random.default_rng(3).random((2000, 4))
    pq.write_table(pa.table({"id": np.arange(2000), "embedding": pa.array(x.tolist(), pa.list_(pa.float64()))}),
                   d / "v.parquet", write_page_checksum=True)
    raw = bytearray((d / "v.parquet").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "v.parquet").write_bytes(bytes(raw))


def _one_row_pool(d: Path) -> None:
    """one/: a pool of one row, and l.parquet: its one label (item 31)."""
    from alq.cli import run
    from alq.store import PoolWriter

    w = PoolWriter(d / "one", dtype="float32")
    w.add(np.ones((1, 4), dtype=np.float32))
    w.close()
    (d / "one.csv").write_text("id,label\n0,1\n")
    assert run(["labels", "import", str(d / "one.csv"), "--pool", str(d / "one"), "--out", str(d / "l.parquet"),
                "-q"]) == 0


def _appended(d: Path) -> None:
    """The pool grew after head.pt was trained (the nightly case)."""
    from alq.store import PoolWriter

    w = PoolWriter(d / "pool", append=True)
    w.add(np.random.default_rng(2).normal(size=(30, 8)).astype(np.float32))
    w.close()


def _warns_other_pool(d: Path, out: str, err: str) -> None:
    assert re.search(r"^warning: --force-head: head .*other\.pt was trained on another pool", err, re.M), err


def _no_lock_files(d: Path, out: str, err: str) -> None:
    locks = sorted(str(p.relative_to(d)) for p in d.rglob("*.lock"))
    assert not locks, f"lock files left beside the outputs: {locks}"


def _notes_append(d: Path, out: str, err: str) -> None:
    import json

    assert "before rows were appended" in json.loads(out)["head_note"]
    assert "warning" not in err, err


# -- the table ------------------------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    args: list[str]  # "{d}" is the case's directory
    code: int
    stderr: str = ""  # regex the single stderr line must match (searched); "" = stderr may be anything
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, str, str], None] | None = None  # extra assertion on (dir, stdout, stderr)
    env: dict = field(default_factory=dict)


SEL = ["select", "{d}/pool", "--strategy", "random", "--budget", "5"]
SELH = ["select", "{d}/pool", "--head", "{d}/head.pt", "--strategy", "margin", "--budget", "5"]
TRAIN = ["train", "{d}/pool", "{d}/labels.parquet", "--out", "{d}/h2.pt"]

CASES = [
    # -- item 4: a selection nobody can read is not a success ----------------------------------------------
    Case("select-without-out", SEL, 2, r"^Error: alq select: Missing option '--out'.*--help"),
    # -- item 16: usage errors are one Error line, not a box; near-miss strategy names get a suggestion -----
    Case("select-missing-strategy", ["select", "{d}/pool", "--budget", "5", "--out", "{d}/s.parquet"], 2,
         r"^Error: alq select: Missing option '--strategy'.*\(see `alq select --help`\)$"),
    Case("select-unknown-flag", [*SEL, "--budgte", "5", "--out", "{d}/s.parquet"], 2, r"No such option: --budgte"),
    Case("select-strategy-underscore", ["select", "{d}/pool", "--strategy", "cluster_margin", "--budget", "5",
                                        "--out", "{d}/s.parquet"], 2, r"did you mean cluster-margin\?"),
    Case("labels-import-missing-pool", ["labels", "import", "{d}/done.csv", "--out", "{d}/l2.parquet"], 2,
         r"^Error: alq labels import: Missing option '--pool'"),
    # -- item 29: values typer cannot parse: one line, exit 2 ----------------------------------------------
    Case("select-budget-not-int", [*SEL[:-1], "x", "--out", "{d}/s.parquet"], 2,
         r"Invalid value for '--budget'.*\(got 'x'\)"),
    Case("select-seed-not-int", [*SEL, "--seed=1.5", "--out", "{d}/s.parquet"], 2,
         r"Invalid value for '--seed'.*\(got '1\.5'\)"),
    Case("synth-classes-float", ["synth", "--classes", "1e9", "--out", "{d}/syn"], 2, r"--classes"),
    # -- item 29: options silently ignored or accepted out of range ------------------------------------
    Case("select-unknown-strategy-option", [*SEL, "--option", "foo=1", "--out", "{d}/s.parquet"], 2,
         r"--option foo=1: strategy random has no option 'foo'"),
    Case("select-option-of-another-strategy", [*SEL, "--option", "knn=5", "--out", "{d}/s.parquet"], 2,
         r"--option knn=5: strategy random has no option 'knn'"),
    Case("select-flag-of-another-strategy", [*SEL, "--partitions", "3", "--out", "{d}/s.parquet"], 2,
         r"^Error: --partitions: strategy random has no option 'partitions'"),
    Case("select-known-option-dash", ["select", "{d}/pool", "--strategy", "typiclust", "--budget", "5", "--option",
                                      "typicality-sample=20", "--out", "{d}/s.parquet"], 0),
    Case("simulate-unknown-option", ["simulate", "--pool", "{d}/pool", "--labels", "{d}/all.parquet", "--test-pool",
                                     "{d}/pool", "--test-labels", "{d}/all.parquet", "-s", "random,margin",
                                     "--seed-size", "5", "--budget", "5", "--rounds", "1", "--option",
                                     "margin.knn=3", "--out", "{d}/run"], 2,
         r"--option margin\.knn=3: strategy margin has no option 'knn'"),
    Case("embed-keep-columns-from-npy", ["embed", "{d}/x.npy", "--keep-columns", "nosuch", "--out", "{d}/p2"], 2,
         r"x\.npy: --keep-columns nosuch names columns"),
    Case("embed-corrupt-parquet", ["embed", "{d}/v.parquet", "--out", "{d}/p2"], 2,
         r"v\.parquet: unreadable near row \d+ .*(CRC|checksum)", _corrupt_checksummed_parquet),
    Case("train-lr-inf", [*TRAIN, "--lr", "inf"], 2, r"--lr=inf must be a finite number > 0"),
    Case("train-lr-zero", [*TRAIN, "--lr", "0", "--optimizer", "adam"], 2, r"--lr=0(\.0)? must be"),
    Case("cluster-more-clusters-than-rows", ["cluster", "{d}/pool", "--n-clusters", "100000", "--out", "{d}/cl2"], 2,
         r"--n-clusters=100000 exceeds the 200 pool rows"),
    Case("transform-huge-redundancy", ["transform", "{d}/pool", "--labels", "{d}/all.parquet", "--redundancy",
                                       "1000000000000", "--out", "{d}/tp", "--labels-out", "{d}/tl.parquet"], 2,
         r"--redundancy=1000000000000 duplicates no row"),
    Case("pending-id-type-mismatch", [*SEL, "--pending", "{d}/p.csv", "--out", "{d}/s.parquet"], 2,
         r"^Error: .*p\.csv: pending ids of type string do not match the pool's id type int64",
         _write("p.csv", "id\nabc\n")),
    # -- item 31: one line for bad input found while training ----------------------------------------------
    Case("train-one-row-pool", ["train", "{d}/one", "{d}/l.parquet", "--out", "{d}/h1.pt"], 2,
         r"^Error: .*single class", _one_row_pool),
    # -- item 15: a head trained on another pool of the same dimension ----------------------------------
    Case("select-head-of-another-pool", [*SELH[:3], "{d}/other.pt", *SELH[4:], "--out", "{d}/s.parquet"], 2,
         r"other\.pt: head was trained on another pool .*--force-head", _other_pool_head),
    Case("select-head-of-another-pool-forced-quiet", [*SELH[:3], "{d}/other.pt", *SELH[4:], "--out",
                                                      "{d}/s.parquet", "--force-head", "-q"], 0, "",
         _other_pool_head, _warns_other_pool),
    Case("select-head-before-append", [*SELH, "--out", "{d}/s.parquet", "--json"], 0, "", _appended, _notes_append),
    # -- item 19: no zero-byte .NAME.lock left after success, a dry run or a failure -----------------------
    *[Case(f"no-lock-left-{name}", [*args, "-q"], code, "", check=_no_lock_files) for name, args, code in [
        ("labels-import-dry-run", ["labels", "import", "{d}/done.csv", "--pool", "{d}/pool", "--out", "{d}/l2.parquet",
                                   "--dry-run"], 0),
        ("labels-import", ["labels", "import", "{d}/done.csv", "--pool", "{d}/pool", "--out", "{d}/l2.parquet"], 0),
        ("embed", ["embed", "{d}/x.npy", "--out", "{d}/p2"], 0),
        ("embed-append", ["embed", "{d}/x.npy", "--out", "{d}/pool", "--append"], 0),
        ("score", ["score", "{d}/pool", "--head", "{d}/head.pt", "--out", "{d}/sc2"], 0),
        ("cluster", ["cluster", "{d}/pool", "--out", "{d}/cl2"], 0),
    ]],
    Case("no-lock-left-embed-append-fails", ["embed", "{d}/nan.npy", "--out", "{d}/pool", "--append", "-q"], 2,
         r"nan\.npy.*NaN", _npy("nan.npy", np.full((3, 8), np.nan, dtype=np.float32)), _no_lock_files),
    Case("device-env-unknown", TRAIN, 2, r"ALQ_DEVICE='tpu' is not a device", env={"ALQ_DEVICE": "tpu"}),
    # -- item 32: a failure is its one Error line (no progress line before it), bad input names the file --
    Case("train-truncated-npy-one-line", TRAIN, 2, r"^Error: .*shard-000000\.npy", _truncate_npy),
    Case("train-flipped-parquet-one-line", TRAIN, 2, r"^Error: .*shard-000000\.parquet", _flip_parquet),
    Case("train-damaged-npy-header", TRAIN, 2, r"^Error: .*shard-000000\.npy: .*(unreadable|not a readable)",
         _flip_npy_header),
    Case("select-damaged-npy-header", [*SELH, "--out", "{d}/s.parquet"], 2,
         r"^Error: .*shard-000000\.npy: .*(unreadable|not a readable)", _flip_npy_header),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_failure_case(case: Case, base: Path, tmp_path: Path, monkeypatch, capsys):  # noqa: F811
    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    if case.setup is not None:
        case.setup(d)
    before = _hashes(d)
    visible = _visible(d)
    args = _fmt(case.args, d)
    from alq.cli import run

    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    code = run(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert code == case.code, f"exit {code}, expected {case.code}; stderr: {err}"
    if case.code != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err}"
        assert lines[0].startswith("Error: "), lines[0]
        assert re.search(case.stderr, lines[0]), f"{case.stderr!r} not in {lines[0]!r}"
        left = _visible(d) - visible
        assert not left, f"partial outputs left behind: {sorted(left)}"
        junk = [p.name for p in d.rglob("*") if p.name.endswith((".tmp", ".building", ".lock"))
                and p.stat().st_size == 0 and str(p.relative_to(d)) not in before]
        assert not junk, f"temporary or lock files left behind: {junk}"
        changed = sorted(k for k, h in before.items() if _hashes(d).get(k) != h)
        assert not changed, f"pre-existing files changed or removed: {changed}"
    elif case.stderr:
        assert re.search(case.stderr, err), f"{case.stderr!r} not in {err!r}"
    if case.check is not None:
        case.check(d, out, err)


def test_progress_lines_still_shown_on_success(base: Path, tmp_path: Path, cli):  # noqa: F811
    """Deferred, not lost: a successful train prints its progress line (after the work)."""
    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    code, out, err = cli("train", d / "pool", d / "labels.parquet", "--out", d / "h2.pt")
    assert code == 0, err
    assert re.search(r"training on 20 labels", err), err


def test_writer_lock_leaves_no_file_and_still_excludes(tmp_path: Path):
    """Item 19: no zero-byte .NAME.lock after a writer is done; a second writer is still refused while one holds."""
    from alq.errors import BadInputError
    from alq.fs import lock

    held = lock.acquire(tmp_path / "pool")
    assert (tmp_path / ".pool.lock").exists()
    with pytest.raises(BadInputError, match="is writing it right now"):
        lock.acquire(tmp_path / "pool")
    lock.release(held)
    assert list(tmp_path.iterdir()) == []
    # a writer that opened the lock file just before its holder removed it locks a file no longer on the
    # path: it must notice and lock the new one, so the next writer is refused by one of them
    stale_fd = os.open(tmp_path / ".pool.lock", os.O_RDWR | os.O_CREAT)
    os.unlink(tmp_path / ".pool.lock")
    real_open = os.open
    calls = []

    def open_stale_first(path, flags, mode=0o777):
        calls.append(path)
        return stale_fd if len(calls) == 1 else real_open(path, flags, mode)

    os.open = open_stale_first
    try:
        second = lock.acquire(tmp_path / "pool")
    finally:
        os.open = real_open
    assert len(calls) == 2, "the writer kept a lock on a removed file"
    with pytest.raises(BadInputError, match="is writing it right now"):
        lock.acquire(tmp_path / "pool")
    lock.release(second)
    assert list(tmp_path.iterdir()) == []


def test_info_on_a_remote_directory_names_the_uri(base: Path, s3_bucket, cli):  # noqa: F811
    """Item 32: `alq info s3://.../rep` on a directory it cannot describe names the URI, not the local copy."""
    from alq import fs

    fs.upload(base / "done.csv", fs.join(s3_bucket, "rep", "notes.csv"))
    code, _, err = cli("info", fs.join(s3_bucket, "rep"))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{s3_bucket}/rep" in lines[0] and "alq-in-" not in lines[0], err
