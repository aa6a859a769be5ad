"""`alq --help` and every command's --help (found by walking the app, so new commands are covered) show an example."""

from __future__ import annotations

import pytest
import typer

from alq.cli import load_commands


def _walk(cmd, path: tuple[str, ...] = ()):
    yield path
    if isinstance(getattr(cmd, "commands", None), dict):  # a group (typer may vendor its own click)
        for name, sub in sorted(cmd.commands.items()):
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(typer.main.get_command(load_commands())))


def test_the_foundation_commands_are_registered():
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "embed", "labels", "labels import", "labels show", "labels pending", "info", "synth", "select"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "alq")
def test_help_shows_an_example(cli, path):
    code, out, err = cli(*path, "--help")
    assert code == 0, err
    assert "Usage: alq" in out
    assert "Example" in out, f"`alq {' '.join(path)} --help` has no Example paragraph"
    example = out[out.index("Example"):]
    assert "alq " in example  # the example is a command line


def test_no_args_shows_help(cli):
    code, out, _ = cli()
    assert code in (0, 2) and "Usage: alq" in out
