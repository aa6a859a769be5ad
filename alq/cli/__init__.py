"""Command-line interface: ``alq COMMAND``. One module per command."""

from __future__ import annotations

import importlib
import pkgutil
import sys

from alq.cli.app import app, stderr
from alq.errors import AlqError

_loaded = False


def load_commands():
    global _loaded
    if not _loaded:
        for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
            if mod not in ("app",) and not mod.startswith("_"):
                importlib.import_module(f"{__name__}.{mod}")
        from alq.cli._help import polish_docs

        polish_docs(app)
        _loaded = True
    return app


def build_command():
    """The click command of the app, with flags shown without a type."""
    import typer.main

    from alq.cli._help import hide_flag_types

    cmd = typer.main.get_command(load_commands())
    hide_flag_types(cmd)
    return cmd


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 failure, 2 bad usage or input)."""
    load_commands()
    try:
        build_command()(args=argv, prog_name="alq")  # typer exits via SystemExit (usage errors: code 2)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except AlqError as exc:
        from rich.markup import escape

        # escape: messages quote user data (paths, ids, "file.npz[key]") that rich would read as markup
        stderr.print(f"[bold red]Error:[/] {escape(exc.line())}", markup=True, highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        stderr.print("Interrupted; outputs are written atomically, nothing partial was left.")
        return 130
    except BrokenPipeError:
        return 0
    return 0


def main() -> None:
    sys.exit(run())
