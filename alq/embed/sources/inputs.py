"""Which files are the inputs (files, directories, URI prefixes), and the reader each one gets."""

from __future__ import annotations

from pathlib import Path

from alq import fs
from alq.embed.sources.base import Source
from alq.embed.sources.npy import NpySource
from alq.embed.sources.npz import NpzSource
from alq.embed.sources.parquet import ParquetSource
from alq.embed.sources.pool import PoolSource
from alq.errors import BadInputError

SUFFIXES = (".npy", ".npz", ".parquet", ".pq")


def _suffix(path) -> str:
    name = fs.name_of(path)
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


def expand_inputs(inputs: list) -> list:
    """Files, directories and URI prefixes -> the input files (directories: supported files, sorted).

    Local inputs come back as Paths, remote ones as URI strings (as typed, for
    error lines; files found under a prefix as ``prefix/name``).
    """
    from alq.store.manifest import is_pool

    out: list = []
    for p in inputs:
        remote = fs.is_remote(p)
        p = str(p) if remote else Path(p)
        kind = fs.file_type(p)
        if kind == "missing":
            raise BadInputError(f"{p}: input not found")
        if kind == "dir" and not is_pool(p):
            names = sorted(n for n in fs.listdir(p) if _suffix(n) in SUFFIXES and not n.startswith("."))
            if not names:
                raise BadInputError(f"{p}: directory holds no {'/'.join(SUFFIXES)} files")
            out.extend(fs.join(p, n) if remote else p / n for n in names)
        else:
            out.append(p)
    seen: dict = {}
    for p in out:
        key = fs.normalize(p) if fs.is_remote(p) else p.resolve()
        if key in seen:
            raise BadInputError(f"{p}: input given twice")
        seen[key] = p
    if not out:
        raise BadInputError("no inputs given")
    return out


def open_source(path, *, vector_column: str | None = None, id_column: str | None = None,
                raw: bool = False, keep_columns: list[str] | None = None) -> Source:
    if fs.file_type(path) == "dir":
        if raw:
            raise BadInputError(f"{path}: a pool directory holds embeddings, not raw inputs for --encoder")
        return PoolSource(path)
    suffix = _suffix(path)
    if suffix == ".npy":
        return NpySource(path, raw=raw)
    if suffix == ".npz":
        return NpzSource(path, vector_key=vector_column, id_key=id_column, raw=raw)
    if suffix in (".parquet", ".pq"):
        if raw:
            raise BadInputError(f"{path}: --encoder reads raw inputs from .npy or .npz files")
        return ParquetSource(path, vector_column=vector_column, id_column=id_column, keep_columns=keep_columns)
    raise BadInputError(f"{path}: unsupported input type {suffix or '(no suffix)'} (use .npy, .npz, .parquet)")
