"""Command-line interface: ``alq COMMAND``. One module per command."""

from __future__ import annotations

import importlib
import os
import pkgutil
import signal
import sys
import threading

# OpenMP threads (torch's and faiss's) spin between parallel regions by default: on a shared 2-core
# machine that doubled the CPU and the linkage time of `alq cluster`. Set before torch or faiss loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from alq.cli.app import app, flush_log, stderr

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
    """Run the CLI; return the exit code (0 ok, 1 failure, 2 bad usage or input).

    Every failure is one ``Error:`` line on stderr (see :mod:`alq.cli._boundary`).
    """
    from rich.markup import escape

    from alq.cli._boundary import check_arguments, run_guarded

    load_commands()
    args = sys.argv[1:] if argv is None else list(argv)
    quiet = any(a in ("-q", "--quiet") for a in args)

    def call() -> int:
        check_arguments(args)
        try:
            # standalone_mode=False: usage errors come back as exceptions, to be one Error: line like any other
            code = build_command().main(args=args, prog_name="alq", standalone_mode=False)
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        except NoArgsIsHelpError as exc:  # `alq`, `alq labels`: the help, exit 2 (as click does)
            if exc.format_message().strip():  # rich help is printed already, as the error was made
                exc.show()
            return exc.exit_code
        except UsageError as exc:
            raise usage_error(exc, args) from None
        except ClickException as exc:
            exc.show()
            return exc.exit_code
        except Abort:
            raise KeyboardInterrupt() from None
        return code if isinstance(code, int) else 0

    def error(line: str) -> None:
        flush_log(keep=False)  # a failure is its one Error: line, without the progress lines before it
        # escape: messages quote user data (paths, ids, "file.npz[key]") that rich would read as markup
        stderr.print(f"[bold red]Error:[/] {escape(line)}", markup=True, highlight=False, soft_wrap=True)

    def warning(line: str) -> None:
        stderr.print(f"warning: {escape(line)}", markup=True, highlight=False, soft_wrap=True)

    previous = _catch_sigterm()
    flush_log(keep=False)  # an earlier in-process run's leftovers are not this command's
    try:
        code = run_guarded(call, quiet=quiet, print_error=error, print_warning=warning, before_warnings=flush_log)
        flush_log(keep=code == 0)
        return code
    except Terminated:
        flush_log(keep=False)
        stderr.print("Error: terminated (SIGTERM); outputs are written atomically, nothing partial was left.",
                     soft_wrap=True)
        return 143
    except KeyboardInterrupt:
        flush_log(keep=False)
        stderr.print("Interrupted; outputs are written atomically, nothing partial was left.", soft_wrap=True)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _given_value(param, args: list[str]) -> str | None:
    """The value ``args`` gave the option ``param`` (its last one), or None."""
    opts = getattr(param, "opts", None) or []
    if not opts or not all(o.startswith("-") for o in opts):
        return None
    value = None
    for i, a in enumerate(args):
        for o in opts:
            if a == o and i + 1 < len(args):
                value = args[i + 1]
            elif a.startswith(o + "=") and o.startswith("--"):
                value = a.split("=", 1)[1]
    return value


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so every writer's cleanup (``except BaseException``) runs."""


def _catch_sigterm():
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_term(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, on_term)


from typer import Abort  # noqa: E402

try:  # typer >= 0.26 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError


def usage_error(exc: UsageError, args: list[str] = ()) -> Exception:
    """A click usage error (missing option, bad value, unknown option) as a one-line bad-input error (exit 2),
    naming the value given when an option's value was refused."""
    from alq.errors import BadInputError

    where = exc.ctx.command_path if exc.ctx is not None else "alq"
    message = " ".join(exc.format_message().split())  # one line, however click wrapped it
    value = _given_value(getattr(exc, "param", None), list(args))
    if value is not None and repr(value) not in message:
        message = message.rstrip(".") + f" (got {value!r})"
    return BadInputError(f"{where}: {message}", hint=f"see `{where} --help`")


def main() -> None:
    sys.exit(run())
