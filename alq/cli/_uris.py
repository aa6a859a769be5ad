"""Path arguments of the CLI: local paths, ``file://``, ``s3://`` and ``gs://`` URIs alike.

Typer's ``Path`` type turns ``s3://b/k`` into ``s3:/b/k``, so commands take
paths as ``str`` and normalise them here. Pools go to ``open_pool`` /
``PoolWriter`` as they are (those read and write object storage directly);
every other file a command reads or writes is staged through :class:`Staged`,
so library code keeps receiving local paths.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from alq import fs, staging

URI_NOTE = "Paths may be local, file://, s3:// or gs:// URIs."


def where(value: str | None) -> Path | str | None:
    """A path argument as alq uses it: a local Path, or a clean remote URI string (None stays None)."""
    if value is None:
        return None
    if value == "-":
        return Path("-")
    return fs.normalize(value)


def where_all(values: list[str] | None) -> list[Path | str]:
    return [where(v) for v in values or []]


class Staged(contextlib.ExitStack):
    """Local stand-ins for a command's remote inputs and outputs; outputs are published when the block succeeds."""

    def input(self, path, what: str = "input") -> Path | None:
        return self.enter_context(staging.stage_input(path, what=what))

    def inputs(self, paths, what: str = "input") -> list[Path]:
        return [self.input(p, what) for p in paths]

    def output(self, path, kind: str = "file", *, resume: bool = False) -> Path | None:
        """``path`` staged for writing (``-``, stdout, passes through)."""
        if path is not None and str(path) == "-":
            return path
        return self.enter_context(staging.stage_output(path, kind=kind, resume=resume))


def remote_lock(target, what: str):
    """The writer lock of a remote file output (a local one is locked by the library call itself).

    Keyed beside the file, ``.NAME.lock`` like a local lock, not under ``NAME/``: a prefix
    ``NAME/`` would make the file look like a directory to stores that keep directory markers.
    """
    if target is None or not fs.is_remote(target):
        return contextlib.nullcontext()
    from alq.fs.lock import exclusive_lock

    return exclusive_lock(fs.join(fs.parent_of(target), f".{fs.name_of(target)}.lock"), what=what)


def path(value: str) -> str:
    """Typer parser of path arguments: the text as given (help shows ``<path>``; ``Path`` would mangle URIs)."""
    return value
