"""The pool manifest: what a pool directory holds, written last.

A pool directory is::

    POOL/manifest.json          this file (written last, atomically)
    POOL/shard-000000.npy       float16|float32 array of shape (rows, dim)
    POOL/shard-000000.parquet   column ``id`` (int64|string) + metadata, same row order

The manifest lists every shard with its row count and the sha256 of both
files, so ``alq info --verify`` can name the first bad shard.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alq import __version__
from alq.errors import StoreError
from alq.fs import file_type, is_remote, join, read_bytes, write_bytes
from alq.io import atomic_path, dumps_strict, read_json

FORMAT = "alq-pool"
VERSION = 1
MANIFEST = "manifest.json"
DTYPES = ("float16", "float32")
ID_TYPES = ("int64", "string")


@dataclass(frozen=True)
class ShardInfo:
    name: str
    rows: int
    sha256: str  # of the .npy file
    ids_sha256: str  # of the .parquet file

    @property
    def npy(self) -> str:
        return f"{self.name}.npy"

    @property
    def parquet(self) -> str:
        return f"{self.name}.parquet"


@dataclass(frozen=True)
class Manifest:
    dim: int
    dtype: str
    id_type: str
    shards: tuple[ShardInfo, ...] = ()
    normalize: str | None = None
    format: str = FORMAT
    version: int = VERSION
    alq_version: str = __version__
    extra: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def fingerprint(self) -> str:
        """Identity of the pool's content: changes when any shard changes or is added."""
        h = hashlib.sha256(f"{self.dim}|{self.dtype}|{self.id_type}|{self.normalize}".encode())
        for s in self.shards:
            h.update(f"|{s.name}:{s.rows}:{s.sha256}:{s.ids_sha256}".encode())
        return h.hexdigest()[:16]

    def lineage(self) -> set[str]:
        """Fingerprints this pool had before each of its appends (and has now)."""
        h = hashlib.sha256(f"{self.dim}|{self.dtype}|{self.id_type}|{self.normalize}".encode())
        out = {h.copy().hexdigest()[:16]}
        for s in self.shards:
            h.update(f"|{s.name}:{s.rows}:{s.sha256}:{s.ids_sha256}".encode())
            out.add(h.copy().hexdigest()[:16])
        return out

    def to_json(self) -> dict:
        d = asdict(self)
        d["count"] = self.count
        d["fingerprint"] = self.fingerprint
        d["shards"] = [asdict(s) for s in self.shards]
        return d

    @classmethod
    def from_json(cls, d: dict, *, path: Path) -> Manifest:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise StoreError(f"{path}: not an alq pool manifest (format is {d.get('format') if isinstance(d, dict) else None!r})")
        if d.get("version") != VERSION:
            raise StoreError(f"{path}: pool format version {d.get('version')} is not supported (this alq reads {VERSION})",
                             hint="upgrade alq")
        try:
            shards = tuple(ShardInfo(**s) for s in d["shards"])
            m = cls(dim=int(d["dim"]), dtype=str(d["dtype"]), id_type=str(d["id_type"]), shards=shards,
                    normalize=d.get("normalize"), alq_version=d.get("alq_version", "?"), extra=d.get("extra", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{path}: malformed manifest ({exc})") from None
        for sh in m.shards:
            if not _plain_name(sh.name):
                raise StoreError(f"{path}: shard name {sh.name!r} is not a plain file name inside the pool; "
                                 "refusing to follow it", hint="restore manifest.json from a backup, or rebuild "
                                 "the pool with `alq embed`")
        if m.dtype not in DTYPES or m.id_type not in ID_TYPES or m.dim < 1:
            raise StoreError(f"{path}: manifest has dtype={m.dtype!r} id_type={m.id_type!r} dim={m.dim}")
        if "count" in d and int(d["count"]) != m.count:
            raise StoreError(f"{path}: manifest count {d['count']} != sum of shard rows {m.count}")
        _check_distinct(m, path)
        return m


def _plain_name(name) -> bool:
    """A shard name that stays inside its pool: no path separator, no parent, no hidden or absolute name."""
    return (isinstance(name, str) and 0 < len(name) <= 200 and not name.startswith((".", " ", "~"))
            and not any(c in name for c in "/\\\0:") and name == name.strip())


def _check_distinct(m: Manifest, path) -> None:
    """A shard listed twice (or two shards with the same ids file) would give every id twice."""
    seen: dict[str, str] = {}
    for s in m.shards:
        for key in (s.name, "ids:" + s.ids_sha256 if s.rows else None):
            if key is None:
                continue
            if key in seen:
                what = "is listed more than once" if key == s.name else f"has the same ids file as {seen[key]}"
                raise StoreError(f"{path}: shard {s.name} {what} (every id in it would count twice)",
                                 hint="restore manifest.json from a backup, or rebuild the pool with `alq embed`")
            seen[key] = s.name


def manifest_path(pool_dir):
    """The manifest of a pool (a Path for a local pool, a URI string for one on object storage)."""
    return join(pool_dir, MANIFEST)


def is_pool(path) -> bool:
    if is_remote(path):
        return file_type(manifest_path(path)) == "file"
    return manifest_path(path).is_file()


def manifest_bytes(manifest: Manifest) -> bytes:
    """The manifest file's exact bytes (one encoder, so local and object-store pools hold the same file)."""
    return (dumps_strict(manifest.to_json(), indent=2, sort_keys=True) + "\n").encode()


def read_manifest(pool_dir) -> Manifest:
    if is_remote(pool_dir):
        got = read_manifest_versioned(pool_dir)
        return got[0]
    path = manifest_path(pool_dir)
    if not Path(pool_dir).exists():
        from alq.io import moved_aside, restore_moved_aside

        if restore_moved_aside(pool_dir) is None:  # a replace killed between its renames: the old pool comes back
            olds = moved_aside(pool_dir)
            if olds:
                raise StoreError(f"{pool_dir}: pool directory not found; the previous pool is at {olds[-1]} "
                                 "(moved aside by a replace that is running or was killed)",
                                 hint="rerun when no `alq embed` writes it: the next run puts it back")
            raise StoreError(f"{pool_dir}: pool directory not found", hint="build one with `alq embed`")
    if not path.exists():
        raise StoreError(f"{pool_dir}: no {MANIFEST} (not an alq pool, or its first write never finished)",
                         hint="build one with `alq embed`")
    return Manifest.from_json(read_json(path, what="pool manifest"), path=path)


def read_manifest_versioned(pool_uri: str, *, versioned: bool = False) -> tuple[Manifest, str | None]:
    """A remote pool's manifest and (``versioned=True``) its store version token, read in one GET.

    The token is what a writer's commit is conditioned on (If-Match): a pool
    that changed since it was read is never overwritten blindly.
    """
    uri = manifest_path(pool_uri)
    if versioned:
        from alq.fs import read_versioned

        got = read_versioned(uri)
        data, version = got if got is not None else (None, None)
    else:
        try:
            data, version = read_bytes(uri), None
        except FileNotFoundError:
            data = None
    if data is None:
        what = "pool not found" if file_type(pool_uri) == "missing" else \
            f"no {MANIFEST} (not an alq pool, or its first write never finished)"
        raise StoreError(f"{pool_uri}: {what}", hint="build one with `alq embed`")
    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{uri}: pool manifest is not valid JSON ({exc})") from None
    return Manifest.from_json(d, path=uri), version


def write_manifest(pool_dir, manifest: Manifest) -> None:
    if is_remote(pool_dir):
        write_bytes(manifest_path(pool_dir), manifest_bytes(manifest))
        return
    with atomic_path(manifest_path(pool_dir)) as tmp:
        tmp.write_bytes(manifest_bytes(manifest))
