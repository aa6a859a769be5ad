"""Help text that reads well and copies well.

- Example command lines in docstrings (``  alq ...`` lines) are broken at
  option boundaries into lines of at most :data:`WIDTH` characters ending in
  `` \\``, so a terminal never wraps them mid-command and a copy-paste runs.
- Flags show no ``<bool>`` type; ``--version`` prints the version.
"""

from __future__ import annotations

import re

import typer

WIDTH = 74  # fits an 80-column terminal with typer's panel border and indent
_INDENT = "  "
_CONT = "      "


def wrap_command(line: str, width: int = WIDTH) -> str:
    """One example command (``  alq ...``) as continuation lines of at most ``width`` characters."""
    words = line.strip().split(" ")
    # keep an option with its value ("--budget 100"), and "&&" with the next command
    tokens: list[str] = []
    for w in words:
        if tokens and not w.startswith("-") and tokens[-1].startswith("-") and " " not in tokens[-1]:
            tokens[-1] += " " + w
        else:
            tokens.append(w)
    lines, cur = [], _INDENT
    for tok in tokens:
        sep = "" if cur.strip() == "" else " "
        if cur.strip() and len(cur) + len(sep) + len(tok) + 2 > width:
            lines.append(cur + " \\")
            cur = _CONT + tok
        else:
            cur += sep + tok
    lines.append(cur)
    return "\n".join(lines)


_EXAMPLE = re.compile(r"^ {2}alq .*$", re.M)


def wrap_examples(doc: str | None, width: int = WIDTH) -> str | None:
    """``doc`` with every long ``  alq ...`` example line wrapped by :func:`wrap_command`."""
    if not doc:
        return doc
    return _EXAMPLE.sub(lambda m: wrap_command(m.group(0), width) if len(m.group(0)) > width else m.group(0), doc)


def polish_docs(app: typer.Typer) -> None:
    """Wrap the examples of the app and of every registered command and group (in place)."""
    if app.info.help:
        app.info.help = wrap_examples(app.info.help)
    for info in app.registered_commands:
        if info.help:
            info.help = wrap_examples(info.help)
        elif info.callback is not None and info.callback.__doc__:
            info.callback.__doc__ = wrap_examples(info.callback.__doc__)
    for group in app.registered_groups:
        if group.help:
            group.help = wrap_examples(group.help)
        if group.typer_instance is not None:
            polish_docs(group.typer_instance)


def hide_flag_types(cmd) -> None:
    """No ``<bool>`` type column for on/off flags, in ``cmd`` and every subcommand (in place)."""
    for param in getattr(cmd, "params", []):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    make_help = cmd.get_help_option  # --help is made on demand, not listed in params

    def get_help_option(ctx):
        opt = make_help(ctx)
        if opt is not None and opt.metavar is None:
            opt.metavar = ""
        return opt

    cmd.get_help_option = get_help_option
    for sub in (getattr(cmd, "commands", None) or {}).values():
        hide_flag_types(sub)


def version_callback(value: bool) -> None:
    if value:
        from alq import __version__

        typer.echo(f"alq {__version__}")
        raise typer.Exit()
