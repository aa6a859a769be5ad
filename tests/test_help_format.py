"""Help that copies well: no `<bool>` on flags, examples never wrapped mid-command, `--version`, escaped markup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from alq import __version__
from alq.cli import load_commands
from alq.cli._help import WIDTH, wrap_command, wrap_examples

REPO = Path(__file__).resolve().parents[1]


def _paths(cmd, path=()):
    yield path
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        yield from _paths(sub, (*path, name))


PATHS = list(_paths(typer.main.get_command(load_commands())))


def _help(*path: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="80", TERM="dumb")
    proc = subprocess.run([sys.executable, "-m", "alq", *path, "--help"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_wrap_command_keeps_options_with_values_and_continues_lines():
    line = ("  alq select pool/ --head head.pt --labels labels.parquet --pending sent.parquet --strategy margin "
            "--budget 10000 --out batch.parquet --json")
    wrapped = wrap_command(line, 60).splitlines()
    assert len(wrapped) > 1 and all(len(w) <= 60 for w in wrapped)
    assert all(w.endswith(" \\") for w in wrapped[:-1]) and not wrapped[-1].endswith("\\")
    joined = " ".join(w.rstrip("\\").strip() for w in wrapped)
    assert joined == line.strip()  # the same command once the shell joins the lines
    assert any("--budget 10000" in w for w in wrapped)
    assert wrap_examples("Example:\n\n  alq info pool/") == "Example:\n\n  alq info pool/"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "alq")
def test_help_has_no_bool_metavar_and_examples_fit(path):
    out = _help(*path)
    assert "<bool>" not in out
    lines = out.splitlines()
    for i, line in enumerate(lines):
        text = line.strip(" │")
        if text.startswith("alq ") and i > 0 and "Example" in "".join(lines[:i]):
            assert len(text) <= WIDTH
            # an example continues only through an explicit backslash, never by terminal wrapping
            nxt = lines[i + 1].strip(" │") if i + 1 < len(lines) else ""
            if nxt and nxt.startswith("--"):
                assert text.endswith("\\"), (line, lines[i + 1])


def test_version_and_escaped_extra(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"alq {__version__}"
    assert "alq[ray]" in _help("score")


CHOICES = [  # (command, option, the values its help must show instead of <str>)
    (("embed",), "--dtype", "float16|float32"), (("embed",), "--normalize", "l2"), (("embed",), "--engine", "local|ray"),
    (("train",), "--multilabel", "auto|yes|no"), (("train",), "--optimizer", "auto|lbfgs|adam"),
    (("select",), "--aggregate", "min|mean"), (("score",), "--aggregate", "min|mean"),
    (("simulate",), "--head-mode", "reset|update"), (("export",), "--format", "csv|jsonl|parquet|label-studio"),
    (("report",), "--metric", "top1|top5|macro_accuracy|map|pooled_ap"), (("synth",), "--dtype", "float16|float32"),
    (("transform",), "--class-order", "sorted|random|size"),
]


@pytest.mark.parametrize("path,option,values", CHOICES, ids=[f"{p[0]}{o}" for p, o, _ in CHOICES])
def test_choice_options_show_their_values(path, option, values):
    """Issue 20 item 17: an option with a fixed set of values shows them, not <str>."""
    from alq.cli import build_command

    cmd = build_command()
    for name in path:
        cmd = cmd.commands[name]
    param = next(p for p in cmd.params if option in getattr(p, "opts", ()))
    assert param.metavar == values


def test_help_texts_say_what_the_code_does():
    """Issue 20 item 17: the defaults and places the help text names are the real ones."""
    from alq.cli import build_command

    cmds = build_command().commands

    def text(command, option):
        p = next(p for p in cmds[command].params if option in getattr(p, "opts", ()))
        return " ".join(p.help.split())

    assert "`*_id`" in text("embed", "--id-column")  # the id column it picks when there is no `id`
    assert "default: vectors stored as given" in text("embed", "--normalize")
    assert "above" in text("select", "--strategy") and "below" not in text("select", "--strategy")
    assert "default: none" in text("select", "--round")
    assert "default: none" in text("report", "--out")
    doc = cmds["select"].help or ""
    assert doc.index("Strategies:") > 0  # the strategy list is in the description, printed above the options
