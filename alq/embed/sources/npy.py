""".npy inputs: 2-D vectors, or raw encoder inputs of any shape, read in place (local or by range reads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from alq.embed.sources.base import Batch, Source
from alq.errors import BadInputError
from alq.store.npyfile import ArrayAt, npy_file, open_file


class NpySource(Source):
    """A .npy array: (rows, dim) vectors, or (rows, ...) raw inputs when ``raw``."""

    has_ids = False

    def __init__(self, path: str | Path, *, raw: bool = False):
        self.path = path
        with open_file(path) as fh:  # reopened per read: a directory of many inputs holds no descriptors
            self.info: ArrayAt = npy_file(fh, source=str(path))
        shape, dtype = self.info.shape, self.info.dtype
        if len(shape) == 0:
            raise BadInputError(f"{path}: holds a scalar, not an array of rows")
        if not raw and len(shape) != 2:
            raise BadInputError(f"{path}: vectors must be 2-D (rows, dim), got shape {shape}",
                                hint="raw inputs need --encoder")
        if not raw and shape[1] == 0:
            raise BadInputError(f"{path}: vectors have 0 columns (shape {shape}); a pool needs dimension >= 1")
        if dtype.kind not in ("fiub" if raw else "fiu"):
            raise BadInputError(f"{path}: dtype {dtype} is not numeric")
        self.rows = int(shape[0])
        self.dim = int(shape[1]) if len(shape) == 2 else None
        self.raw = raw

    def row_bytes(self) -> int:
        return self.info.row_bytes

    def batches(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        # one reused buffer: embed consumes each batch before asking for the next
        with open_file(self.path) as fh:
            for r, block in self.info.blocks(fh, block_rows, start, stop, reuse=True):
                yield Batch(block, None, r, self.name)
