"""The output guard every command calls before it does any work.

Rules, checked on resolved paths (symlinks and ``..`` followed), so two
spellings of one file are one file:

1. An output is never one of the command's inputs, never inside an input
   directory, and replacing an output directory never deletes an input
   (a simulation run directory is resumed, never replaced whole: inputs may live in it).
2. An output never lands inside a pool, clusters/ or scores/ directory
   (alq owns what is in them: a pool holds only its shards and manifest).
3. A file output is not an existing directory, a directory output is not an
   existing file, and no parent of the output is a file.
4. An existing output is replaced only by one of its own kind (a selection
   over a selection, a head over a head, a scores directory over a scores
   directory); anything else needs ``--overwrite`` where the command has it.

Outputs on object storage (``s3://``, ``gs://``) follow the same rules on
normalised URIs; what an existing one holds is read from the store (for a
directory alq published, the names in its current generation).

The guard also records the command's outputs, so the CLI error boundary can
name them when the OS reports a failed write without a path (ENOSPC).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alq import fs
from alq.errors import BadInputError

DIR_KINDS = {"pool", "scores", "clusters", "report", "run", "dedup"}
_DESCRIBE = {"pool": "an alq pool", "scores": "an alq scores directory", "clusters": "an alq clusters directory",
             "dedup": "an alq dedup directory",
             "report": "an alq report", "run": "an alq simulation run", "selection": "an alq selection",
             "labels": "an alq labels file", "pending": "an alq pending-ids file", "head": "an alq head",
             "results": "alq simulation results", "metrics": "a JSON file", "dir": "a directory with other files",
             "file": "a file alq did not write"}
_COMPATIBLE = {"metrics": {"metrics"}}

_outputs: list[Path | str] = []


@dataclass(frozen=True)
class Output:
    """One path a command writes: ``kind`` is what it will hold, ``option`` how the user named it."""

    path: str | os.PathLike | None
    kind: str
    option: str = "--out"


def reset() -> None:
    _outputs.clear()


def current_outputs() -> list[Path | str]:
    """Outputs of the running command (for error messages)."""
    return list(_outputs)


def real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and parent in child.parents


def kind_of(path) -> str | None:
    """What an existing path or URI holds (see ``_DESCRIBE``); None when absent or empty."""
    if fs.is_remote(path):
        return _remote_kind(fs.normalize(path))
    path = Path(path)
    if not os.path.lexists(path):
        return None
    if path.is_dir():
        return _dir_kind({p.name for p in path.iterdir()})
    try:
        if path.stat().st_size == 0:
            return None  # an empty placeholder (touch, mktemp): nothing to lose
    except OSError:
        return "file"
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        from alq.io import parquet_metadata, read_parquet_schema

        try:
            schema = read_parquet_schema(path)
        except BadInputError:
            return "file"
        kind = parquet_metadata(schema).get("kind")
        if kind is None and {"id", "label"} <= set(schema.names):
            return "labels"  # a labels table written by another tool
        return {"selection": "selection", "labels": "labels", "pending": "pending",
                "simulation-results": "results"}.get(kind, "file")
    if suffix == ".json":
        try:
            return "metrics" if isinstance(json.loads(path.read_text()), dict) else "file"
        except (OSError, ValueError):
            return "file"
    return "head" if _is_head(path) else "file"


def _dir_kind(names: set[str]) -> str | None:
    if not names:
        return None
    from alq.store.debris import SHARD_FILE

    if all(SHARD_FILE.fullmatch(n) or (n.startswith(".shard-") and n.endswith(".tmp")) for n in names):
        return "pool"  # shard files and no manifest: a first build killed before its commit (the writer clears it)
    for marker, kind in (("manifest.json", "pool"), ("_clusters.parquet", "clusters"), ("_clusters.json", "clusters"),
                         ("clusters.json", "clusters"), ("_scores.parquet", "scores"), ("_scores.json", "scores"),
                         ("scores.json", "scores"), ("_dedup.parquet", "dedup"), ("_dedup.json", "dedup"),
                         ("report.md", "report"), ("report.json", "report"), ("config.json", "run"),
                         ("results.parquet", "run")):
        if marker in names:
            return kind
    return "dir"


def _remote_names(uri: str) -> set[str]:
    """Top-level names of a remote directory: those of its current generation when alq published it."""
    from alq.fs.lock import REMOTE_LOCK

    return set(fs.listdir(fs.current_generation(uri))) - {fs.POINTER, REMOTE_LOCK}


def _remote_kind(uri: str) -> str | None:
    """What is at a remote URI: an object is read the way a local file is (from a staged copy)."""
    have = fs.file_type(uri)
    if have == "missing":
        return None
    if have == "dir":
        return _dir_kind(_remote_names(uri)) or "dir"  # only sub-prefixes: still someone's directory
    if fs.size_of(uri) == 0:
        return None
    with fs.staged_input(uri) as copy:
        return kind_of(copy)


def _is_head(path: Path) -> bool:
    """An alq head file: a torch zip whose data.pkl names the alq-head format (read, never unpickled)."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            return name is not None and b"alq-head" in z.read(name)
    except (OSError, zipfile.BadZipFile, KeyError, RuntimeError):
        return False


_MANAGED = {"manifest.json": "pool", "_clusters.parquet": "clusters directory", "_scores.parquet": "scores directory",
            "_clusters.json": "clusters directory", "clusters.json": "clusters directory",
            "_scores.json": "scores directory", "scores.json": "scores directory",
            "_dedup.parquet": "dedup directory", "_dedup.json": "dedup directory"}


def _managed_above(path: Path) -> tuple[Path, str] | None:
    """The nearest pool, clusters/ or scores/ directory holding ``path``: alq owns everything inside those."""
    for p in path.parents:
        for marker, what in _MANAGED.items():
            if (p / marker).is_file() and _alq_format(p / marker):
                return p, what
    return None


def _alq_format(marker: Path) -> bool:
    """An alq summary file (``"format": "alq-..."``), not any manifest.json (web apps have those too)."""
    from alq.store.sidecar import is_alq_record

    try:
        return is_alq_record(marker.read_bytes(), marker)
    except OSError:
        return False


def check_outputs(outputs: Sequence[Output], inputs: Iterable[tuple[str, str | os.PathLike | None]] = (), *,
                  overwrite: bool | None = False) -> None:
    """Refuse outputs that would destroy inputs, pools or other files; see the module docstring.

    ``inputs`` are ``(option, path)`` pairs (``None`` paths skipped); ``overwrite=None``
    means the command has no ``--overwrite`` flag (so the message does not offer one).
    Remote URIs are compared as normalised strings (object stores have no symlinks).
    """
    inputs = [(opt, p) for opt, p in inputs if p is not None]
    local_ins = [(opt, Path(p), real(p)) for opt, p in inputs if not fs.is_remote(p)]
    remote_ins = [(opt, str(p), fs.normalize(p)) for opt, p in inputs if fs.is_remote(p)]
    outs = [o for o in outputs if o.path is not None]
    for o in outs:
        _outputs.append(fs.normalize(o.path) if fs.is_remote(o.path) else Path(o.path))
    for o in outs:
        if fs.is_remote(o.path):
            _check_remote(o, remote_ins, overwrite)
            continue
        shown, target = Path(o.path), real(o.path)
        is_dir_kind = o.kind in DIR_KINDS
        for opt, given, r in local_ins:
            if r == target:
                raise BadInputError(f"{o.option} {shown}: is also this command's input {opt} {given}",
                                    hint=f"choose another {o.option}; writing it would destroy the input")
            if _inside(target, r) and r.is_dir():
                raise BadInputError(f"{o.option} {shown}: is inside the input directory {opt} {given}",
                                    hint=f"choose an {o.option} outside it")
            if is_dir_kind and o.kind != "run" and _inside(r, target):  # a run dir is never replaced whole
                raise BadInputError(f"{o.option} {shown}: holds this command's input {opt} {given}, which "
                                    "replacing it would delete", hint=f"choose another {o.option}")
        managed = _managed_above(target)
        if managed is not None:
            raise BadInputError(f"{o.option} {shown}: is inside the {managed[1]} {managed[0]}",
                                hint=f"alq owns what is in it (a later run replaces it); choose an {o.option} "
                                     "outside it")
        parent = next((p for p in target.parents if os.path.lexists(p)), None)
        if parent is not None and not parent.is_dir():
            raise BadInputError(f"{o.option} {shown}: its parent {parent} is a file, not a directory",
                                hint=f"choose another {o.option}")
        if not os.path.lexists(target):
            continue
        _check_kind(o, shown, "dir" if target.is_dir() else "file", lambda t=target: kind_of(t), overwrite)


def _check_remote(o: Output, ins: list[tuple[str, str, str]], overwrite: bool | None) -> None:
    """The rules of :func:`check_outputs` for an output on object storage, from what the store holds."""
    shown, target = str(o.path), fs.normalize(o.path)
    is_dir_kind = o.kind in DIR_KINDS
    for opt, given, r in ins:
        if r == target:
            raise BadInputError(f"{o.option} {shown}: is also this command's input {opt} {given}",
                                hint=f"choose another {o.option}; writing it would destroy the input")
        if target.startswith(r + "/") and fs.file_type(r) == "dir":
            raise BadInputError(f"{o.option} {shown}: is inside the input directory {opt} {given}",
                                hint=f"choose an {o.option} outside it")
        if is_dir_kind and o.kind != "run" and r.startswith(target + "/"):
            raise BadInputError(f"{o.option} {shown}: holds this command's input {opt} {given}, which "
                                "replacing it would delete", hint=f"choose another {o.option}")
    managed = _managed_above_remote(target)
    if managed is not None:
        raise BadInputError(f"{o.option} {shown}: is inside the {managed[1]} {managed[0]}",
                            hint=f"alq owns what is in it (a later run replaces it); choose an {o.option} "
                                 "outside it")
    have = fs.file_type(target)
    if have != "missing":
        _check_kind(o, shown, have, lambda: _remote_kind(target), overwrite)


def _check_kind(o: Output, shown, have_type: str, kind: Callable[[], str | None],
                overwrite: bool | None) -> None:
    """Rules 3 and 4 for an existing output: same shape (file / directory), and its own kind unless --overwrite."""
    is_dir_kind = o.kind in DIR_KINDS
    if is_dir_kind and have_type != "dir":
        raise BadInputError(f"{o.option} {shown}: is a file; {o.kind} output is a directory",
                            hint=f"choose another {o.option} (a directory path)")
    if not is_dir_kind and have_type == "dir":
        name = "head.pt" if o.kind == "head" else o.kind + ".parquet"
        raise BadInputError(f"{o.option} {shown}: is a directory", hint=f"give {o.option} a file path, such as "
                            f"{fs.join(shown, name) if fs.is_remote(shown) else Path(shown) / name}")
    have = kind()
    if have is None or have == o.kind or have in _COMPATIBLE.get(o.kind, ()) or overwrite:
        return
    fix = "pass --overwrite to replace it, or choose another" if overwrite is not None else "choose another"
    raise BadInputError(f"{o.option} {shown}: already holds {_DESCRIBE.get(have, have)}, not "
                        f"{_DESCRIBE.get(o.kind, o.kind)}; refusing to replace it", hint=f"{fix} {o.option}")


def _managed_above_remote(uri: str) -> tuple[str, str] | None:
    """:func:`_managed_above` for a URI: a parent prefix whose (current) content holds an alq marker."""
    p = fs.parent_of(uri)
    while p != uri:
        gen = fs.current_generation(p)
        names = _remote_names(p)
        for marker, what in _MANAGED.items():
            if marker in names and _alq_format_bytes(fs.join(gen, marker)):
                return p, what
        uri, p = p, fs.parent_of(p)
    return None


def _alq_format_bytes(uri: str) -> bool:
    from alq.store.sidecar import is_alq_record

    try:
        return is_alq_record(fs.read_bytes(uri), uri)
    except OSError:
        return False
