"""The typer application and the helpers every command shares.

Commands are thin: parse, validate, call one library function, render.
stdout carries results (``--json``); stderr carries people's output
(progress bars only on a TTY, logs, errors).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    name="alq",
    help=(
        "Large-batch active learning on precomputed embeddings.\n\n"
        "Each step is a command that reads and writes files, so cron jobs and shell pipelines can chain them.\n\n"
        "Example (the nightly job):\n\n"
        "  alq embed vectors/ --out pool/ && alq labels import annotations.csv --pool pool/ --out labels.parquet\n\n"
        "  alq train pool/ labels.parquet --out head.pt && alq cluster pool/ --out clusters/\n\n"
        "  alq select pool/ --head head.pt --labels labels.parquet --clusters clusters/ "
        "--strategy cluster-margin --budget 100000 --out batch.parquet"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

stderr = Console(stderr=True, highlight=False)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print alq's version and exit.", is_eager=True,
                                       callback=lambda v: _version(v))) -> None:
    """Large-batch active learning on precomputed embeddings."""


def _version(value: bool) -> None:
    from alq.cli._help import version_callback

    version_callback(value)

JSON_OPTION = typer.Option(False, "--json", help="Print a machine-readable summary on stdout.")
ENGINE_OPTION = typer.Option("local", "--engine", metavar="local|ray", help="local (in-process) or ray (the per-shard map runs as Ray "
                             "tasks; needs `pip install 'alq\\[ray]'`).")
RAY_ADDRESS_OPTION = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                                  help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray).")
RAY_GPUS_OPTION = typer.Option(0.0, "--ray-gpus-per-task", help="GPUs per Ray task; workers then use CUDA.")


def engine_options(engine: str, ray_address: str | None, ray_gpus: float) -> dict:
    """Keyword arguments for :func:`alq.engine.get_engine` from the shared CLI options."""
    if engine != "ray":
        return {}
    return {k: v for k, v in {"address": ray_address, "gpus_per_task": ray_gpus or None}.items() if v}
ESCAPE_FORMULAS_OPTION = typer.Option(True, "--escape-formulas/--no-escape-formulas",
                                     help="CSV output: prefix `'` to cells a spreadsheet would run as a formula "
                                          "(starting with = + - @, not a plain number; OWASP CSV injection).")
QUIET_OPTION = typer.Option(False, "-q", "--quiet", help="No progress or logs on stderr.")


def emit(summary: dict, *, as_json: bool, quiet: bool = False, render: Callable[[dict], None] | None = None) -> None:
    """Print a result: JSON on stdout, or a human rendering (default: key: value lines on stdout)."""
    from alq.io import dumps_strict
    from alq.staging import unstage

    summary = unstage(summary)  # staged copies of remote files are named by their URIs
    if as_json:  # strict JSON: NaN/Infinity are written as null
        sys.stdout.write(dumps_strict(summary, indent=2) + "\n")
        return
    if quiet:
        return
    if render is not None:
        render(summary)
        return
    from alq.cli._render import key_values

    key_values(summary)  # a short table, numbers rounded (--json has them in full)


_deferred: list[str] = []


def log(message: str, *, quiet: bool = False) -> None:
    """A progress line for people (``training on 30 labels (cpu)``), shown when the command succeeds.

    Lines are held back until the command ends: a failing command prints its one ``Error:`` line and
    nothing else (a cron log then says only what went wrong); a successful one prints them in order
    (see :func:`flush_log`, called by :func:`alq.cli.run`). Live progress is the job of
    :func:`progress_bar` (on a TTY).
    """
    if not quiet:
        _deferred.append(message)


def warn(message: str) -> None:
    """A ``warning:`` line on stderr that ``-q`` keeps: something a nightly job's log must show."""
    from rich.markup import escape

    stderr.print(f"warning: {escape(message)}", highlight=False, soft_wrap=True)


def flush_log(*, keep: bool = True) -> None:
    """Print the held-back :func:`log` lines (``keep``), or drop them (a failure), and start afresh."""
    lines = list(_deferred)
    _deferred.clear()
    if keep:
        for line in lines:
            stderr.print(line)


@contextlib.contextmanager
def progress_bar(*, quiet: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """A ``(task, done, total)`` callback drawing rich bars on stderr, only on a TTY."""
    if quiet or not sys.stderr.isatty():
        yield lambda task, done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=stderr, transient=True) as bar:
        def update(task: str, done: int, total: int) -> None:
            key, _, label = task.partition("|")  # "key|what is running now": one bar, a changing label
            if key not in tasks:
                tasks[key] = bar.add_task(label or key, total=total)
            bar.update(tasks[key], completed=done, total=total, description=label or key)

        yield update


def parse_options(pairs: list[str] | None) -> dict:
    """``--option key=value`` pairs into a dict (numbers parsed when they look like numbers)."""
    from alq.errors import BadInputError

    out: dict = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise BadInputError(f"--option {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out
