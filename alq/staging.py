"""Staged copies of remote files, and the URIs they stand for.

A command reads a remote labels file or head from a temporary local copy
(:func:`alq.fs.staged_input`) and writes a remote selection or report to one
(:func:`alq.fs.staged_output`). What it records about those files (provenance
in Parquet metadata, a run's config, ``--json`` summaries, error lines) must
name the URI the user gave, never the temporary copy: :func:`shown` and
:func:`unstage_text` map a copy back to its URI. Local paths pass through
unchanged, so local runs record exactly what they did before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from alq import fs

_origins: dict[str, str] = {}  # local copy (absolute, as a string) -> the URI it stands for


def reset() -> None:
    """Forget earlier commands' copies (called once per CLI run)."""
    _origins.clear()


def _register(copy: Path, uri: str) -> None:
    for spelling in {os.path.abspath(copy), os.path.realpath(copy)}:  # /tmp may be a symlink (macOS)
        _origins[spelling] = uri


@contextlib.contextmanager
def stage_input(path, *, what: str = "input") -> Iterator[Path | None]:
    """A local path with ``path``'s content (itself when local); see :func:`alq.fs.staged_input`."""
    if path is None:
        yield None
        return
    source = resolve(path) if fs.is_remote(path) else path
    with fs.staged_input(source, what=what) as copy:
        if fs.is_remote(path):
            _register(copy, fs.normalize(path))
        yield copy


@contextlib.contextmanager
def stage_output(path, *, kind: str = "file", resume: bool = False) -> Iterator[Path | None]:
    """A local path to write, published at ``path`` on success; see :func:`alq.fs.staged_output`."""
    if path is None:
        yield None
        return
    with fs.staged_output(path, kind=kind, resume=resume) as copy:
        if fs.is_remote(path):
            _register(copy, fs.normalize(path))
        yield copy


def resolve(uri: str) -> str:
    """Where a remote file's content lives: itself, or (``RUN/results.parquet`` of a run alq published on
    the store) the same name under the current generation of the nearest parent with a pointer."""
    uri = fs.normalize(uri)
    if fs.file_type(uri) != "missing":
        return uri
    child, parent = uri, fs.parent_of(uri)
    while parent != child:
        if fs.exists(fs.join(parent, fs.POINTER)):
            inside = fs.join(fs.current_generation(parent), uri[len(parent) + 1:])
            return inside if fs.file_type(inside) != "missing" else uri
        child, parent = parent, fs.parent_of(parent)
    return uri  # absent: staged_input says so, naming the URI


def shown(path) -> str | None:
    """How to name ``path`` to people and in provenance: the URI of a staged copy (or of a file in it)."""
    if path is None:
        return None
    s = os.fspath(path) if not isinstance(path, str) else path
    if not _origins or fs.scheme_of(s) is not None:
        return s
    full = os.path.abspath(s)
    for copy, uri in _origins.items():
        if full == copy:
            return uri
        if full.startswith(copy + os.sep):
            return uri + "/" + full[len(copy) + 1:].replace(os.sep, "/")
    return s


def unstage_text(text: str) -> str:
    """``text`` with every staged copy's path replaced by its URI (error lines, summaries)."""
    for copy, uri in sorted(_origins.items(), key=lambda kv: -len(kv[0])):
        if copy in text:
            text = text.replace(copy, uri)
    return text


def unstage(obj):
    """``obj`` (a summary: dicts, lists, strings) with staged paths replaced by their URIs."""
    if not _origins:
        return obj
    if isinstance(obj, str):
        return unstage_text(obj)
    if isinstance(obj, Path):
        return shown(obj)
    if isinstance(obj, dict):
        return {k: unstage(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(unstage(v) for v in obj)
    return obj
