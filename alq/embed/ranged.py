"""Row ranges of .npy data read with positioned reads, local or on object storage.

A Ray task encodes rows [lo, hi) of an input without reading what comes
before; on ``s3://`` / ``gs://`` that means range GETs of exactly those
bytes (one per block), never a download of the whole object. The same reads
serve arrays stored (uncompressed, ``np.savez``'s default) inside an .npz:
their bytes sit at a fixed offset of the zip.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from alq import fs
from alq.errors import BadInputError
from alq.store.npyfile import read_npy_header

_ZIP_LOCAL = struct.Struct("<4s5H3L2H")  # a zip local file header (30 bytes)


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


def stored_member_offset(fh, header_offset: int, *, source: str) -> int:
    """Where the bytes of an uncompressed zip member begin (after its local header)."""
    raw = read_bytes_at(fh, header_offset, _ZIP_LOCAL.size, source=source)
    fields = _ZIP_LOCAL.unpack(raw)
    if fields[0] != b"PK\x03\x04":
        raise BadInputError(f"{source}: not a readable .npz file (bad zip member header)")
    return header_offset + _ZIP_LOCAL.size + fields[-2] + fields[-1]


def _size_of(fh) -> int:
    pos = fh.tell()
    end = fh.seek(0, io.SEEK_END)
    fh.seek(pos)
    return end
