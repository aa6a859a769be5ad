"""Stream NPY files row-block by row-block, without holding (or mapping) them whole.

Writing: :class:`NpyStreamWriter` writes a fixed-size (128-byte) version 1.0
header, appends row blocks, and rewrites the header in place if the final
row count differs from the planned one, so a shard never sits in memory.

Reading: :func:`npy_info` parses the header and checks the file is not
truncated; :func:`iter_npy_rows` yields row blocks with plain reads (no
mmap), so resident memory stays one block whatever the file size.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from alq.errors import BadInputError

HEADER_BYTES = 128
MAGIC = b"\x93NUMPY"


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 NPY header padded to exactly ``HEADER_BYTES`` (64-byte aligned data)."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                 "shape": tuple(int(s) for s in shape)}).encode("latin1")
    pad = HEADER_BYTES - 10 - len(text) - 1
    if pad < 0:  # pragma: no cover - only for absurd shapes
        raise ValueError(f"shape {shape} does not fit a {HEADER_BYTES}-byte NPY header")
    return MAGIC + b"\x01\x00" + struct.pack("<H", HEADER_BYTES - 10) + text + b" " * pad + b"\n"


class NpyStreamWriter:
    """Append (rows, dim) blocks to an NPY file; the header is fixed up on ``close()``.

    The caller owns atomicity (write to a temporary name, then ``os.replace``)
    and durability (``close(sync=True)``, or :func:`sync_and_hash` later).
    """

    def __init__(self, path: str | Path, dtype: np.dtype, dim: int, planned_rows: int):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.dim = int(dim)
        self.planned = int(planned_rows)
        self.rows = 0
        self._fh: BinaryIO = open(self.path, "wb")
        self._fh.write(npy_header(self.dtype, (self.planned, self.dim)))

    def write(self, block: np.ndarray) -> None:
        """Append rows; ``block`` must already have the file's dtype and dim."""
        if block.dtype != self.dtype or block.ndim != 2 or block.shape[1] != self.dim:
            raise ValueError(f"block {block.shape} {block.dtype} does not match ({self.dim},) {self.dtype}")
        self._fh.write(memoryview(np.ascontiguousarray(block)).cast("B"))
        self.rows += len(block)

    def close(self, *, sync: bool = False) -> None:
        """Finish the file, rewriting the header if the row count differs from the planned one."""
        fh = self._fh
        if self.rows != self.planned:
            fh.seek(0)
            fh.write(npy_header(self.dtype, (self.rows, self.dim)))
        fh.flush()
        if sync:
            os.fsync(fh.fileno())
        fh.close()

    def abort(self) -> None:
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError:  # flushing the buffer fails again on a full disk; the file is dropped anyway
                pass


def sync_and_hash(path: str | Path) -> str:
    """fsync a finished file and return its sha256 (run off the main thread by the pool writer)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
        while block := fh.read(1 << 24):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class NpyInfo:
    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # byte offset of the data

    @property
    def rows(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    @property
    def row_items(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) if self.row_shape else 1


def read_npy_header(fh: BinaryIO, *, source: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran_order) from an open NPY stream positioned at its start."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except (ValueError, OSError, SyntaxError, struct.error, EOFError) as exc:
        raise BadInputError(f"{source}: not a readable .npy file ({_first_line(exc)})") from None
    return tuple(shape), np.dtype(dtype), bool(fortran)


def npy_info(path: str | Path) -> NpyInfo:
    """Parse an NPY header and check the file holds all the bytes it promises."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: file not found")
    with open(p, "rb") as fh:
        shape, dtype, fortran = read_npy_header(fh, source=str(p))
        offset = fh.tell()
    if dtype.hasobject:
        raise BadInputError(f"{p}: holds Python objects (dtype {dtype}); alq reads numeric arrays only")
    if fortran and len(shape) > 1:
        raise BadInputError(f"{p}: array is in Fortran (column-major) order; save it with np.ascontiguousarray")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = p.stat().st_size
    if size < need:
        raise BadInputError(f"{p}: truncated .npy file ({size} bytes, header promises {need})")
    if size > need:
        raise BadInputError(f"{p}: holds {size - need} bytes more than its header's shape {tuple(shape)} "
                            f"promises ({size} bytes, header says {need})",
                            hint="the header is wrong or data was appended; re-save it with np.save")
    return NpyInfo(path=p, shape=shape, dtype=dtype, offset=offset)


def iter_npy_rows(info: NpyInfo, block_rows: int, *, start: int = 0,
                  reuse: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, block)`` with blocks of shape (<= block_rows, *row_shape).

    ``reuse=True`` reads every block into one buffer (no fresh pages per
    block): the caller must be done with a block before asking for the next.
    """
    row_bytes = info.row_items * info.dtype.itemsize
    buf = np.empty(min(block_rows, max(info.rows - start, 0)) * info.row_items, dtype=info.dtype) if reuse else None
    with open(info.path, "rb", buffering=0) as fh:
        fh.seek(info.offset + start * row_bytes)
        r = start
        while r < info.rows:
            n = min(block_rows, info.rows - r)
            arr = buf[: n * info.row_items] if reuse else np.empty(n * info.row_items, dtype=info.dtype)
            view = memoryview(arr).cast("B")
            got = 0
            while got < arr.nbytes:  # raw reads may return short
                k = fh.readinto(view[got:])
                if not k:
                    raise BadInputError(f"{info.path}: truncated at row {r + got // max(row_bytes, 1)}")
                got += k
            yield r, arr.reshape((n, *info.row_shape))
            r += n


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip()
    return s.splitlines()[0][:200] if s else type(exc).__name__
