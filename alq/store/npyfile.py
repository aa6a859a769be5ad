"""Stream NPY files row-block by row-block, without holding (or mapping) them whole.

Writing: :class:`NpyStreamWriter` writes a fixed-size (128-byte) version 1.0
header, appends row blocks, and rewrites the header in place if the final
row count differs from the planned one, so a shard never sits in memory.

Reading: :func:`npy_file` parses the header of a local file or of an object
on a store and checks it is not truncated; :meth:`ArrayAt.blocks` yields row
blocks with positioned reads (no mmap; range GETs on ``s3://`` / ``gs://``),
so resident memory stays one block whatever the file size.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from alq import fs
from alq.errors import BadInputError

HEADER_BYTES = 128
MAGIC = b"\x93NUMPY"
# what numpy raises on a damaged file: its header parser falls back to tokenize on a header it cannot
# literal_eval, so a flipped byte there surfaces as tokenize.TokenError, not ValueError
READ_ERRORS = (ValueError, OSError, SyntaxError, struct.error, EOFError, tokenize.TokenError)


def read_error_text(exc: BaseException) -> str:
    """A short reason for a :data:`READ_ERRORS` exception (no tokenizer internals)."""
    if isinstance(exc, (SyntaxError, tokenize.TokenError)):
        return "damaged .npy header"
    return _first_line(exc)


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


def read_npy_header(fh: BinaryIO, *, source: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran_order) from an open NPY stream positioned at its start."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except READ_ERRORS as exc:
        raise BadInputError(f"{source}: not a readable .npy file ({read_error_text(exc)})") from None
    return tuple(shape), np.dtype(dtype), bool(fortran)


def open_file(path):
    """A seekable binary file (``seek``/``readinto``; pyarrow's random-access file for URIs)."""
    if fs.is_remote(path):
        return fs.open_input(path)
    return open(fs.local(path), "rb", buffering=0)


def read_into(fh, offset: int, out: np.ndarray, *, source: str, row: int, row_bytes: int) -> None:
    """Fill ``out`` with the bytes at ``offset``; a short read is a truncated file, named by its row."""
    view = memoryview(out).cast("B")
    fh.seek(offset)
    got = 0
    while got < len(view):  # raw reads may return short
        k = fh.readinto(view[got:])
        if not k:
            raise BadInputError(f"{source}: truncated at row {row + got // max(row_bytes, 1)}")
        got += k


def read_bytes_at(fh, offset: int, nbytes: int, *, source: str) -> bytes:
    buf = np.empty(nbytes, dtype=np.uint8)
    read_into(fh, offset, buf, source=source, row=0, row_bytes=1)
    return buf.tobytes()


@dataclass(frozen=True)
class ArrayAt:
    """An array's layout in a file: C-order rows of ``row_shape`` starting at byte ``offset``."""

    source: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def rows(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize

    def blocks(self, fh, block_rows: int, start: int = 0, stop: int | None = None, *,
               reuse: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """``(first_row, block)`` over rows [start, stop), one positioned read per block.

        ``reuse=True`` reads every block into one buffer: the caller must be
        done with a block before asking for the next.
        """
        stop = self.rows if stop is None else min(stop, self.rows)
        items = self.row_bytes // self.dtype.itemsize
        buf = np.empty(min(block_rows, max(stop - start, 0)) * items, dtype=self.dtype) if reuse else None
        r = start
        while r < stop:
            n = min(block_rows, stop - r)
            arr = buf[: n * items] if reuse else np.empty(n * items, dtype=self.dtype)
            read_into(fh, self.offset + r * self.row_bytes, arr, source=self.source, row=r, row_bytes=self.row_bytes)
            yield r, arr.reshape((n, *self.row_shape))
            r += n


def npy_header_at(fh, base: int, *, source: str, size: int | None = None) -> ArrayAt:
    """Parse the .npy header that starts at byte ``base`` of ``fh``."""
    avail = 12 if size is None else max(0, min(12, size - base))
    head = read_bytes_at(fh, base, avail, source=source) if avail else b""
    if len(head) < 10 or head[:6] != b"\x93NUMPY":
        raise BadInputError(f"{source}: not a readable .npy file (no NPY magic)")
    if head[6] == 1:
        hlen = 10 + struct.unpack("<H", head[8:10])[0]
    else:
        hlen = 12 + struct.unpack("<I", head[8:12].ljust(4, b"\0"))[0]
    if size is not None and base + hlen > size:
        raise BadInputError(f"{source}: not a readable .npy file (truncated header)")
    shape, dtype, fortran = read_npy_header(io.BytesIO(read_bytes_at(fh, base, hlen, source=source)),
                                            source=source)
    if dtype.hasobject:
        raise BadInputError(f"{source}: holds Python objects (dtype {dtype}); alq reads numeric arrays only")
    if fortran and len(shape) > 1:
        raise BadInputError(f"{source}: array is in Fortran (column-major) order; save it with np.ascontiguousarray")
    return ArrayAt(source=source, shape=tuple(shape), dtype=np.dtype(dtype), offset=base + hlen)


def npy_file(fh, *, source: str) -> ArrayAt:
    """The layout of a whole .npy file, checked against its size (truncated or padded files are refused)."""
    size = fh.size() if hasattr(fh, "size") else _size_of(fh)
    arr = npy_header_at(fh, 0, source=source, size=size)
    need = arr.offset + (arr.rows * arr.row_bytes if arr.shape else arr.dtype.itemsize)
    if size < need:
        raise BadInputError(f"{source}: truncated .npy file ({size} bytes, header promises {need})")
    if size > need:
        raise BadInputError(f"{source}: holds {size - need} bytes more than its header's shape {arr.shape} "
                            f"promises ({size} bytes, header says {need})",
                            hint="the header is wrong or data was appended; re-save it with np.save")
    return arr


def npy_info(path) -> ArrayAt:
    """Parse a local NPY file's header and check the file holds exactly the bytes it promises."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: file not found")
    with open_file(p) as fh:
        return npy_file(fh, source=str(p))


def iter_npy_rows(info: ArrayAt, block_rows: int, *, start: int = 0,
                  reuse: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, block)`` of a local NPY file with plain reads (no mmap): resident memory stays
    one block whatever the file size (see :meth:`ArrayAt.blocks`)."""
    with open_file(info.source) as fh:
        yield from info.blocks(fh, block_rows, start, reuse=reuse)


def _size_of(fh) -> int:
    pos = fh.tell()
    end = fh.seek(0, io.SEEK_END)
    fh.seek(pos)
    return end


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip()
    return s.splitlines()[0][:200] if s else type(exc).__name__
