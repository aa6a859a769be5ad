"""What every input reader of ``alq embed`` is: a :class:`Source` of batches (:class:`Batch`), and the names it looks for."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

VECTOR_NAMES = ("embedding", "embeddings", "vector", "vectors", "emb", "features", "x")
ID_NAMES = ("id", "ids")


@dataclass
class Batch:
    """Rows ``row0 .. row0+len(vectors)`` of ``source``."""

    vectors: np.ndarray  # (n, dim) vectors, or (n, ...) raw encoder inputs
    ids: np.ndarray | pa.Array | None  # None: generate
    row0: int
    source: str
    columns: pa.Table | None = None  # metadata columns of the same rows (Parquet inputs)


class Source(ABC):
    path: str | Path  # as given: a local path or a URI
    rows: int
    dim: int | None  # None where unknown before reading (variable-length lists)
    has_ids: bool

    @property
    def name(self) -> str:
        return str(self.path)

    @abstractmethod
    def batches(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        """Yield consecutive batches of at most ``block_rows`` rows, covering rows [start, stop).

        A batch's arrays may be overwritten by the next one: consume it first.
        """

    def row_bytes(self) -> int:
        """Bytes one input row occupies in memory (for block sizing)."""
        return 4 * (self.dim or 1024)


def first_line(exc: BaseException) -> str:
    """An exception's first line (at most 200 characters), for a one-line error."""
    s = str(exc).strip()
    return s.splitlines()[0][:200] if s else type(exc).__name__
