"""Every example in README.md and docs/*.md runs, so the documentation cannot rot.

The convention (docs/index.md, "How the examples are tested"):

- ```console blocks are shell sessions. Each ``$ `` line (``\\`` continues it) is run in order, in one
  working directory per page that starts with a copy of sample_data/ (and, on pages marked
  ``<!-- docs-test: after README -->``, with everything the README's pipeline wrote: pool/, labels.parquet,
  head.pt, scores/, clusters/, batch.parquet, exp/, sim/ ...). A plain ``alq ...`` line runs in-process
  (one torch import for the whole file); a line with shell syntax (pipes, ``&&``, redirects, ``$VAR``)
  runs in bash with ``alq`` on PATH. It must exit 0. The lines under a command are output that must
  appear in what it printed (stdout + stderr, whitespace collapsed; ``...`` matches anything, a line of
  only ``...`` is skipped); ``[exit N]`` among them expects exit code N instead of 0.
- ```python blocks run with ``exec`` in the same directory, one namespace per page (asserts in them are
  the checks).
- A console or python block whose first line is ``# not run: REASON`` is shown but not run; those are
  counted per page in :data:`NOT_RUN` below, so adding one is a visible change.
- ```bash blocks are scripts run verbatim by a test of their own, which the text right after the block
  names (``tests/test_nightly.py``); that test must read the page.
- ```text blocks are diagrams and layouts, never commands (no ``$ `` lines).
- Any other fence is an error.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))]
AFTER_README = "<!-- docs-test: after README -->"
KINDS = {"console", "python", "bash", "text"}

# Blocks shown but not run, per page, and why (the `# not run:` line of each says it to the reader too).
NOT_RUN = {
    "README.md": 1,  # make demo / make test: builds .venv, runs the suite
    "docs/install.md": 3,  # make targets that build environments, pip installs (network), a GPU venv
    "docs/object-storage.md": 1,  # a real bucket and credentials
    "docs/ray.md": 2,  # a Ray cluster (and S3 and GPUs for distributed encoding)
}


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    kind: str
    body: str
    after: str  # text after the block, up to the next block or heading

    @property
    def not_run(self) -> str | None:
        first = self.body.lstrip("\n").splitlines()[:1]
        m = re.match(r"#\s*not run:\s*(.+)", first[0]) if first else None
        return m.group(1).strip() if m else None

    def where(self) -> str:
        return f"{self.page}:{self.line}"


FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def blocks(page: str) -> list[Block]:
    text = (REPO / page).read_text()
    found = list(FENCE.finditer(text))
    out = []
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        after = text[m.end():end]
        after = re.split(r"^#", after, maxsplit=1, flags=re.M)[0]
        out.append(Block(page, text.count("\n", 0, m.start()) + 1, m.group(1).strip().split(" ")[0], m.group(2),
                         after))
    return out


def all_blocks() -> list[Block]:
    return [b for p in PAGES for b in blocks(p)]


# ---------------------------------------------------------------- running a page


def _commands(body: str) -> list[tuple[str, list[str], int]]:
    """(command, expected output lines, expected exit code) for each ``$ `` line of a console block."""
    cmds: list[list] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("$ "):
            cmd = ln[2:]
            while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd.rstrip()[:-1].rstrip() + " " + lines[i].strip()
            cmds.append([cmd, [], 0])
        elif cmds and ln.strip():
            m = re.fullmatch(r"\[exit (\d+)\]", ln.strip())
            if m:
                cmds[-1][2] = int(m.group(1))
            elif ln.strip() != "...":
                cmds[-1][1].append(ln.strip())
        elif ln.strip() and not ln.startswith("#"):
            raise AssertionError(f"output before any command: {ln!r}")
        i += 1
    return [tuple(c) for c in cmds]


def _argv(cmd: str) -> list[str] | None:
    """The argv of a plain command, or None when the line needs a shell (pipes, &&, redirects, $VAR, X=1 ...)."""
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    tokens = list(lex)
    if any(set(t) <= set("();<>|&") or "$" in t or "`" in t for t in tokens) or re.match(r"\w+=", tokens[0]):
        return None
    return tokens


def _collapse(s: str) -> str:
    return " ".join(s.split())


def _expect(where: str, cmd: str, out: str, expected: list[str]) -> None:
    got = _collapse(out)
    for line in expected:
        pat = ".*?".join(re.escape(_collapse(part)) for part in line.split("..."))
        assert re.search(pat, got), f"{where}: `{cmd}` did not print {line!r}; it printed:\n{out[-3000:]}"


class Page:
    """The working directory of one page, and the state its examples share."""

    def __init__(self, page: str, workdir: Path):
        self.page, self.dir, self.ns = page, workdir, {"__name__": "__docs__"}
        self.ran = 0

    def env(self) -> dict:
        bindir = self.dir / ".bin"
        if not (bindir / "alq").exists():
            bindir.mkdir(exist_ok=True)
            (bindir / "alq").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m alq "$@"\n')
            (bindir / "alq").chmod(0o755)
        return dict(os.environ, PYTHONPATH=str(REPO), PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")

    def console(self, b: Block) -> None:
        from alq.cli import run

        for cmd, expected, code in _commands(b.body):
            argv = _argv(cmd)
            if argv is None:
                p = subprocess.run(["bash", "-c", f"set -euo pipefail\n{cmd}"], cwd=self.dir, env=self.env(),
                                   capture_output=True, text=True, timeout=600)
                rc, out = p.returncode, p.stdout + p.stderr
            else:
                assert argv[0] == "alq", f"{b.where()}: only alq commands run in-process: {cmd}"
                o, e = io.StringIO(), io.StringIO()
                with _cwd(self.dir), contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
                    rc = run(argv[1:])
                out = o.getvalue() + e.getvalue()
            assert rc == code, f"{b.where()}: `{cmd}` exited {rc}, not {code}:\n{out[-3000:]}"
            _expect(b.where(), cmd, out, expected)
            self.ran += 1

    def python(self, b: Block) -> None:
        from alq.strategies import REGISTRY, load_all

        load_all()
        registered = dict(REGISTRY)  # an example may @register a strategy: leave the registry as it was
        try:
            with _cwd(self.dir):
                exec(compile(b.body, b.where(), "exec"), self.ns)  # noqa: S102 - the docs' own examples
        finally:
            REGISTRY.clear()
            REGISTRY.update(registered)
        self.ran += 1

    def run_all(self) -> int:
        for b in blocks(self.page):
            if b.not_run or b.kind not in ("console", "python"):
                continue
            getattr(self, b.kind)(b)
        return self.ran


@contextlib.contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _fresh(root: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copytree(REPO / "sample_data", root / "sample_data")
    return root


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory):
    """The README's pipeline, run once: its outputs seed every page marked 'after README'.

    ``ALQ_DOCS_README_DIR=DIR`` (for editing docs) keeps the run in DIR and reuses it while it is there.
    """
    keep = os.environ.get("ALQ_DOCS_README_DIR")
    if keep and (Path(keep) / "report" / "report.md").exists():
        return Path(keep)
    if keep:
        shutil.rmtree(keep, ignore_errors=True)
    d = _fresh(Path(keep) if keep else tmp_path_factory.mktemp("docs") / "README")
    ran = Page("README.md", d).run_all()
    assert ran >= 10
    return d


def _runnable(page: str) -> bool:
    return any(b.kind in ("console", "python") and not b.not_run for b in blocks(page))


@pytest.mark.parametrize("page", [p for p in PAGES if p != "README.md" and _runnable(p)])
def test_page_examples_run(page, readme_dir, tmp_path):
    if AFTER_README in (REPO / page).read_text():
        d = tmp_path / "work"
        shutil.copytree(readme_dir, d, ignore=shutil.ignore_patterns(".bin"))
    else:
        d = _fresh(tmp_path / "work")
    assert Page(page, d).run_all() > 0


def test_readme_pipeline_runs(readme_dir):
    for name in ("pool/manifest.json", "labels.parquet", "head.pt", "scores/_scores.parquet",
                 "clusters/_clusters.parquet", "batch.parquet", "tasks.json", "sim/results.parquet",
                 "report/report.md"):
        assert (readme_dir / name).exists(), name


# ---------------------------------------------------------------- the convention itself


def test_every_block_is_a_known_kind():
    for b in all_blocks():
        assert b.kind in KINDS, f"{b.where()}: fence ```{b.kind}: use console, python, bash or text (docs/index.md)"
        if b.kind == "text":
            assert not re.search(r"^\$ ", b.body, re.M), f"{b.where()}: commands in a text block: use console"
        if b.kind == "console" and not b.not_run:
            assert _commands(b.body), f"{b.where()}: a console block without a `$ ` command"


def test_bash_scripts_are_run_by_their_own_test():
    for b in all_blocks():
        if b.kind != "bash":
            continue
        m = re.search(r"tests/(test_\w+\.py)", b.after)
        assert m, f"{b.where()}: a bash script must be followed by the test that runs it (tests/test_*.py)"
        test = REPO / "tests" / m.group(1)
        assert test.exists(), f"{b.where()}: {test} does not exist"
        assert b.page in test.read_text(), f"{b.where()}: {test.name} does not read {b.page}"


def test_not_run_blocks_are_few_and_counted():
    counts: dict[str, int] = {}
    for b in all_blocks():
        if b.not_run:
            assert b.kind in ("console", "python"), b.where()
            counts[b.page] = counts.get(b.page, 0) + 1
    assert counts == NOT_RUN
    runnable = sum(1 for b in all_blocks() if b.kind in ("console", "python") and not b.not_run)
    assert runnable >= 4 * sum(NOT_RUN.values())


def test_index_lists_every_page():
    index = (REPO / "docs" / "index.md").read_text()
    for p in PAGES:
        if p.startswith("docs/") and p != "docs/index.md":
            assert f"({Path(p).name})" in index, f"docs/index.md does not link {p}"


def test_readme_fits_one_screen_of_reading():
    assert (REPO / "README.md").stat().st_size < 12 * 1024


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_links_and_anchors_resolve():
    for p in PAGES:
        text = (REPO / p).read_text()
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
            if "://" in target:
                continue
            path = (REPO / p).parent / target if target else REPO / p
            assert path.exists(), f"{p}: broken link {target}"
            if anchor:
                assert anchor in _anchors(path), f"{p}: no heading #{anchor} in {target or p}"
