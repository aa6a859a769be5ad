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

The guard also records the command's outputs, so the CLI error boundary can
name them when the OS reports a failed write without a path (ENOSPC).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alq.errors import BadInputError

DIR_KINDS = {"pool", "scores", "clusters", "report", "run"}
_DESCRIBE = {"pool": "an alq pool", "scores": "an alq scores directory", "clusters": "an alq clusters directory",
             "report": "an alq report", "run": "an alq simulation run", "selection": "an alq selection",
             "labels": "an alq labels file", "pending": "an alq pending-ids file", "head": "an alq head",
             "results": "alq simulation results", "metrics": "a JSON file", "dir": "a directory with other files",
             "file": "a file alq did not write"}
_COMPATIBLE = {"metrics": {"metrics"}}

_outputs: list[Path] = []


@dataclass(frozen=True)
class Output:
    """One path a command writes: ``kind`` is what it will hold, ``option`` how the user named it."""

    path: str | os.PathLike | None
    kind: str
    option: str = "--out"


def reset() -> None:
    _outputs.clear()


def current_outputs() -> list[Path]:
    """Outputs of the running command (for error messages)."""
    return list(_outputs)


def real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and parent in child.parents


def kind_of(path: Path) -> str | None:
    """What an existing path holds (see ``_DESCRIBE``); None when absent or empty."""
    if not os.path.lexists(path):
        return None
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if not names:
            return None
        for marker, kind in (("manifest.json", "pool"), ("_clusters.json", "clusters"), ("clusters.json", "clusters"),
                             ("_scores.json", "scores"), ("scores.json", "scores"),
                             ("report.md", "report"), ("report.json", "report"), ("config.json", "run"),
                             ("results.parquet", "run")):
            if marker in names:
                return kind
        return "dir"
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


def _is_head(path: Path) -> bool:
    """An alq head file: a torch zip whose data.pkl names the alq-head format (read, never unpickled)."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            return name is not None and b"alq-head" in z.read(name)
    except (OSError, zipfile.BadZipFile, KeyError, RuntimeError):
        return False


_MANAGED = {"manifest.json": "pool", "_clusters.json": "clusters directory", "clusters.json": "clusters directory",
            "_scores.json": "scores directory", "scores.json": "scores directory"}


def _managed_above(path: Path) -> tuple[Path, str] | None:
    """The nearest pool, clusters/ or scores/ directory holding ``path``: alq owns everything inside those."""
    for p in path.parents:
        for marker, what in _MANAGED.items():
            if (p / marker).is_file() and _alq_format(p / marker):
                return p, what
    return None


def _alq_format(marker: Path) -> bool:
    """An alq summary file (``"format": "alq-..."``), not any manifest.json (web apps have those too)."""
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("format", "")).startswith("alq")


def check_outputs(outputs: Sequence[Output], inputs: Iterable[tuple[str, str | os.PathLike | None]] = (), *,
                  overwrite: bool | None = False) -> None:
    """Refuse outputs that would destroy inputs, pools or other files; see the module docstring.

    ``inputs`` are ``(option, path)`` pairs (``None`` paths skipped); ``overwrite=None``
    means the command has no ``--overwrite`` flag (so the message does not offer one).
    """
    ins = [(opt, Path(p), real(p)) for opt, p in inputs if p is not None]
    outs = [o for o in outputs if o.path is not None]
    for o in outs:
        _outputs.append(Path(o.path))
    for o in outs:
        shown, target = Path(o.path), real(o.path)
        is_dir_kind = o.kind in DIR_KINDS
        for opt, given, r in ins:
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
        if is_dir_kind and not target.is_dir():
            raise BadInputError(f"{o.option} {shown}: is a file; {o.kind} output is a directory",
                                hint=f"choose another {o.option} (a directory path)")
        if not is_dir_kind and target.is_dir():
            raise BadInputError(f"{o.option} {shown}: is a directory", hint=f"give {o.option} a file path, such as "
                                f"{shown / ('head.pt' if o.kind == 'head' else o.kind + '.parquet')}")
        have = kind_of(target)
        if have is None or have == o.kind or have in _COMPATIBLE.get(o.kind, ()) or overwrite:
            continue
        fix = "pass --overwrite to replace it, or choose another" if overwrite is not None else "choose another"
        raise BadInputError(f"{o.option} {shown}: already holds {_DESCRIBE.get(have, have)}, not "
                            f"{_DESCRIBE.get(o.kind, o.kind)}; refusing to replace it", hint=f"{fix} {o.option}")
