"""Atomic, self-describing file I/O shared by every command.

Every output is written to a temporary name beside its target and moved into
place with ``os.replace``: a crash (even SIGKILL) leaves either the previous
file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from alq.errors import BadInputError

PathLike = str | os.PathLike


@contextlib.contextmanager
def atomic_path(target: PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it into place on success.

    On any exception the temporary file is removed and ``target`` is untouched.
    A symlinked ``target`` is written through: the file it points to is replaced
    and the link stays.
    """
    target = Path(os.path.realpath(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        apply_umask(tmp_path)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_umask(path: PathLike) -> None:
    """Give a mkstemp/mkdtemp result (0600/0700) the permissions a plain open/mkdir would have."""
    mode = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, mode & ~_umask())


def replace_dir(build: PathLike, target: PathLike) -> None:
    """Move a finished ``build`` directory to ``target``, replacing any directory there.

    The old directory is first renamed aside to ``.NAME.XXXXXXXX.old`` (one
    ``os.replace``), then the new one renamed in (another), then the old one
    renamed to a ``.trash`` name and deleted. A crash leaves the old or the
    new directory at ``target``, never a mixture; a SIGKILL between the two
    renames leaves no ``target`` and the complete old one under its ``.old``
    name, which :func:`restore_moved_aside` puts back (readers and the next
    writer call it). A half-deleted old directory only ever has a ``.trash``
    name, so a ``.old`` directory is always a complete previous output.
    The caller holds ``target``'s writer lock (:mod:`alq.fs.flock`).
    """
    build, target = Path(build), Path(os.path.realpath(target))
    apply_umask(build)  # mkdtemp made it 0700; the published directory gets the umask's mode (0755)
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
        os.replace(build, target)
        _discard(old)
    else:
        os.replace(build, target)


def _discard(old: Path) -> None:
    """Delete a moved-aside directory, first renaming it so that a partial delete is never taken for a copy."""
    trash = old.with_name(old.name[: -len(".old")] + ".trash")
    try:
        os.replace(old, trash)
    except OSError:
        trash = old
    shutil.rmtree(trash, ignore_errors=True)


def moved_aside(target: PathLike) -> list[Path]:
    """Complete previous copies of ``target`` that a killed :func:`replace_dir` left beside it, oldest first."""
    import re

    target = Path(os.path.realpath(target))
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]+\.old")
    try:
        found = [p for p in target.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    return sorted(found, key=lambda p: (p.stat().st_ctime_ns, p.name))


def restore_moved_aside(target: PathLike, *, locked: bool = False) -> str | None:
    """Put back the previous ``target`` when a replace was killed between its two renames; its old name, or None.

    Does nothing when ``target`` exists or nothing was moved aside. ``locked``:
    the caller holds ``target``'s writer lock; otherwise the lock is tried
    without waiting, and a writer that holds it (and may be between its two
    renames this very moment) is left to finish its swap.
    """
    target = Path(os.path.realpath(target))
    if os.path.lexists(target):
        return None
    if not target.parent.exists():  # inside a directory that was moved aside (a split's pool/ or test/)
        name = restore_moved_aside(target.parent)
        return name if name is not None and os.path.lexists(target) else None
    olds = moved_aside(target)
    if not olds:
        return None
    if not locked:
        from alq.fs.flock import acquire_local

        try:
            handle = acquire_local(target)
        except (BadInputError, OSError):
            return None  # a live writer holds it (or the directory is read-only): not ours to touch
        try:
            return restore_moved_aside(target, locked=True)
        finally:
            handle.release()
    newest = olds[-1]
    try:
        os.rename(newest, target)
    except OSError:
        return None  # someone else restored or published it first
    return newest.name


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_json(path: PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(dumps_strict(obj, indent=2, sort_keys=True) + "\n")


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN / +-Infinity float replaced by None, so the JSON is strict.

    ``JSON.parse``, polars and most JSON readers reject the ``NaN``/``Infinity`` that Python's
    json module writes by default; alq writes ``null`` instead (documented per field: e.g. a
    labeling efficiency that is undefined because a curve never reaches the target accuracy).
    """
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if type(obj).__module__ == "numpy":
        try:
            return strict_json(_json_default(obj))
        except TypeError:
            return obj
    return obj


def dumps_strict(obj: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`strict_json` (``allow_nan=False``: a non-finite float can never slip out)."""
    return json.dumps(strict_json(obj), default=_json_default, allow_nan=False, **kwargs)


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: PathLike, *, what: str = "file") -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: {what} is not valid JSON ({exc})") from None


def write_parquet(path: PathLike, table: pa.Table, metadata: dict[str, Any] | None = None) -> None:
    """Write ``table`` atomically, with ``metadata`` as JSON in the key-value metadata.

    Each metadata value is stored JSON-encoded under ``alq.<key>`` so that
    ``alq info`` and ``alq report`` can say where a file came from.
    """
    if metadata:
        kv = dict(table.schema.metadata or {})
        for key, value in metadata.items():
            kv[f"alq.{key}".encode()] = json.dumps(value, default=_json_default).encode()
        table = table.replace_schema_metadata(kv)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def parquet_metadata(path_or_schema: PathLike | pa.Schema) -> dict[str, Any]:
    """The ``alq.*`` key-value metadata of a Parquet file, decoded."""
    schema = path_or_schema if isinstance(path_or_schema, pa.Schema) else read_parquet_schema(path_or_schema)
    out: dict[str, Any] = {}
    for key, value in (schema.metadata or {}).items():
        k = key.decode(errors="replace")
        if k.startswith("alq."):
            try:
                out[k[4:]] = json.loads(value)
            except json.JSONDecodeError:
                out[k[4:]] = value.decode(errors="replace")
    return out


def read_parquet_schema(path: PathLike) -> pa.Schema:
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: file not found")
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(f"{path}: not a readable Parquet file ({_short(exc)})") from None


def read_parquet(path: PathLike, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file; a missing, truncated or corrupt file is a BadInputError."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: file not found")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(f"{path}: not a readable Parquet file ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def sha256_file(path: PathLike, *, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
