""".npz inputs: a vector array and an optional id array.

A stored (uncompressed) member is read in place from any row by header and
positioned range reads (:mod:`alq.embed.ranged`); a deflated one is streamed
through the zip, one block at a time.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from alq.embed.ranged import stored_member_offset
from alq.embed.sources.base import ID_NAMES, VECTOR_NAMES, Batch, Source, first_line
from alq.errors import BadInputError
from alq.store.npyfile import ArrayAt, npy_header_at, open_file, read_npy_header


class _NpzMember:
    """One array inside an .npz (stored or deflated), read row block by row block."""

    def __init__(self, zf: zipfile.ZipFile, key: str, source: str):
        self.zf, self.key, self.source = zf, key, source
        with zf.open(f"{key}.npy") as fh:
            self.shape, self.dtype, fortran = read_npy_header(fh, source=f"{source}[{key}]")
        if self.dtype.hasobject:
            raise BadInputError(f"{source}[{key}]: holds Python objects; alq reads numeric arrays only")
        if fortran and len(self.shape) > 1:
            raise BadInputError(f"{source}[{key}]: array is in Fortran order")
        # an uncompressed member (np.savez) is read in place from any row; a deflated one is streamed
        self.at: ArrayAt | None = None
        info = zf.getinfo(f"{key}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            base = stored_member_offset(zf.fp, info.header_offset, source=source)
            at = npy_header_at(zf.fp, base, source=f"{source}[{key}]")
            if at.offset - base + (at.rows * at.row_bytes if at.shape else at.dtype.itemsize) <= info.file_size:
                self.at = at

    @property
    def rows(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    def iter_rows(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.rows if stop is None else min(stop, self.rows)
        if self.at is not None:
            for _, block in self.at.blocks(self.zf.fp, block_rows, start, stop):
                yield block
            return
        items = int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1
        with self.zf.open(f"{self.key}.npy") as fh:
            read_npy_header(fh, source=self.source)
            r = 0
            while r < start:  # a deflated member has no row offsets: read through, one block at a time
                n = min(block_rows, start - r)
                if len(fh.read(n * items * self.dtype.itemsize)) != n * items * self.dtype.itemsize:
                    raise BadInputError(f"{self.source}[{self.key}]: truncated before row {start}")
                r += n
            while r < stop:
                n = min(block_rows, stop - r)
                want = n * items * self.dtype.itemsize
                try:
                    buf = fh.read(want)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise BadInputError(f"{self.source}[{self.key}]: unreadable at row {r} ({first_line(exc)})") from None
                if len(buf) != want:
                    raise BadInputError(f"{self.source}[{self.key}]: truncated at row {r + len(buf) // max(1, items * self.dtype.itemsize)}")
                yield np.frombuffer(buf, dtype=self.dtype).reshape((n, *self.shape[1:]))
                r += n


class NpzSource(Source):
    """An .npz with a vector array (``--vector-column`` names its key) and optionally ids."""

    def __init__(self, path: str | Path, *, vector_key: str | None = None, id_key: str | None = None,
                 raw: bool = False):
        self.path = path
        try:
            self.zf = zipfile.ZipFile(open_file(path))  # a remote object: zip directory and members by range reads
        except (zipfile.BadZipFile, OSError) as exc:
            raise BadInputError(f"{path}: not a readable .npz file ({first_line(exc)})") from None
        keys = [n[:-4] for n in self.zf.namelist() if n.endswith(".npy")]
        if not keys:
            raise BadInputError(f"{path}: .npz holds no arrays")
        vkey = vector_key if vector_key in keys else None
        if vector_key and vkey is None:
            raise BadInputError(f"{path}: no array {vector_key!r} (has {', '.join(keys)})")
        if vkey is None:
            vkey = next((k for k in VECTOR_NAMES if k in keys), None)
        members = {}
        if vkey is None:
            arrays = [k for k in keys if k not in ID_NAMES and k != id_key]
            if len(arrays) == 1:
                vkey = arrays[0]
            else:
                raise BadInputError(f"{path}: cannot tell which array holds the vectors (has {', '.join(keys)})",
                                    hint="pass --vector-column KEY")
        self.vec = members[vkey] = _NpzMember(self.zf, vkey, str(path))
        if not raw and len(self.vec.shape) != 2:
            raise BadInputError(f"{path}[{vkey}]: vectors must be 2-D (rows, dim), got shape {self.vec.shape}",
                                hint="raw inputs need --encoder")
        if self.vec.dtype.kind not in "fiub":
            raise BadInputError(f"{path}[{vkey}]: dtype {self.vec.dtype} is not numeric")
        ikey = id_key if id_key in keys else None
        if id_key and ikey is None:
            raise BadInputError(f"{path}: no id array {id_key!r} (has {', '.join(keys)})")
        if ikey is None:
            ikey = next((k for k in ID_NAMES if k in keys), None)
        self.ids = _NpzMember(self.zf, ikey, str(path)) if ikey else None
        if self.ids is not None:
            if len(self.ids.shape) != 1:
                raise BadInputError(f"{path}[{ikey}]: ids must be 1-D, got shape {self.ids.shape}")
            if self.ids.rows != self.vec.rows:
                raise BadInputError(f"{path}: {self.ids.rows} ids for {self.vec.rows} vectors")
            if self.ids.dtype.kind not in "iuUS":
                raise BadInputError(f"{path}[{ikey}]: ids have dtype {self.ids.dtype}; alq ids are integers or strings")
        self.has_ids = self.ids is not None
        self.rows = self.vec.rows
        self.dim = int(self.vec.shape[1]) if len(self.vec.shape) == 2 else None

    def row_bytes(self) -> int:
        return int(np.prod(self.vec.shape[1:], dtype=np.int64)) * self.vec.dtype.itemsize

    def batches(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        id_iter = self.ids.iter_rows(block_rows, start, stop) if self.ids is not None else None
        r = start
        for block in self.vec.iter_rows(block_rows, start, stop):
            ids = next(id_iter) if id_iter is not None else None
            if ids is not None and ids.dtype.kind in "US":
                ids = ids.astype(str).astype(object)
            yield Batch(block, ids, r, self.name)
            r += len(block)
