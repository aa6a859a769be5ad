"""The vectors of a set of pool rows that a diversity kernel reads once per pick.

k-center greedy, k-means++ seeding and facility location make one pass over
their rows per pick, so re-reading (and re-transforming) the pool from disk
each time would dominate. A :class:`RowTable` holds the rows' vectors in one
of three places, chosen by ``ALQ_WORKING_MEMORY``:

1. **cache**: one tensor on the compute device, float32 when it fits, else
   the pool's own float16 when the pool is float16 and untransformed (a
   lossless copy: compute still happens in float32 block by block);
2. **pool**: streamed from the memory-mapped pool (untransformed rows only);
3. **spill**: a transform's output written once to a temporary raw float32
   file (``ALQ_TMPDIR`` or the system temp dir), streamed each pass through
   a mapping whose pages are dropped from the process as soon as a block is
   read (so RSS does not grow with N), and removed on :meth:`close`.

All three give the same float32 values, so a kernel's picks do not depend
on which one was used (tests pin this).
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import numpy as np
import torch

from alq.config import rows_per_block, working_memory_bytes
from alq.device import serial, torch_device  # noqa: F401 - serial is used here and re-exported
from alq.store.pool import Pool

Transform = Callable[[torch.Tensor], torch.Tensor]


def iter_pool_rows(pool: Pool, rows: np.ndarray, block_rows: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(p0, p1, vectors)``: the embeddings of ``rows[p0:p1]`` (sorted global indices).

    Reads the pool sequentially over ``[rows[0], rows[-1]]`` in blocks of
    ``block_rows`` pool rows; a block fully covered by ``rows`` is a view.
    """
    if len(rows) == 0:
        return
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    for block in pool.iter_blocks(block_rows=block_rows, lo=lo, hi=hi):
        p0 = int(np.searchsorted(rows, block.start, side="left"))
        p1 = int(np.searchsorted(rows, block.stop, side="left"))
        if p1 == p0:
            continue
        if p1 - p0 == len(block.vectors):
            yield p0, p1, block.vectors
        else:
            yield p0, p1, block.vectors[rows[p0:p1] - block.start]


class RowTable:
    """Float32 vectors (``n``, ``width``) of the sorted pool rows ``rows``.

    ``transform`` maps a float32 (m, dim) tensor on ``device`` to a float32
    (m, width) tensor (e.g. head features); ``None`` keeps the embeddings.
    """

    def __init__(self, pool: Pool, rows: np.ndarray, *, transform: Transform | None = None,
                 width: int | None = None, device=None, working_memory: int | None = None,
                 where: str | None = None):
        self.pool = pool
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.rows.size > 1 and not np.all(self.rows[1:] > self.rows[:-1]):
            raise ValueError("RowTable rows must be sorted and distinct")
        self.n = int(self.rows.size)
        self.transform = transform
        self.width = int(pool.dim if transform is None else width)
        self.device = torch.device(device) if device is not None else torch_device()
        self.memory = int(working_memory or working_memory_bytes())
        in_row = pool.dim * (pool.dtype.itemsize + 4)
        self.block = rows_per_block(in_row + 8 * self.width, working_memory=self.memory)
        self._cache: torch.Tensor | None = None
        self._spill: np.ndarray | None = None
        self._tmpdir: str | None = None
        self.where = where or self._choose()
        if self.where == "cache":
            self._build_cache()
        elif self.where == "spill":
            self._build_spill()
        elif self.where != "pool" or transform is not None:
            raise ValueError(f"RowTable where={self.where!r} not possible here")

    # -- placement ----------------------------------------------------------
    def _choose(self) -> str:
        if self.n * self.width * 4 <= self.memory:
            return "cache"
        if self.transform is None:
            if self.pool.dtype == np.float16 and self.n * self.width * 2 <= self.memory:
                return "cache"
            return "pool"
        return "spill"

    def _raw_blocks(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(p0, p1, float32 tensor of rows[p0:p1] after the transform), from the pool."""
        for p0, p1, vec in iter_pool_rows(self.pool, self.rows, self.block):
            x = self._to_dev(vec)
            if self.transform is not None:
                with torch.no_grad():
                    x = self.transform(x).to(torch.float32)
            yield p0, p1, x

    def _build_cache(self) -> None:
        half = self.transform is None and self.n * self.width * 4 > self.memory
        dtype = torch.float16 if half else torch.float32
        self._cache = torch.empty((self.n, self.width), dtype=dtype, device=self.device)
        for p0, p1, x in self._raw_blocks():
            self._cache[p0:p1] = x.to(dtype)

    def _build_spill(self) -> None:
        """Write the transformed rows to a raw float32 file with plain writes (a writable mapping would keep
        every written page in this process's RSS), then map it; passes drop what they read (:meth:`_drop`)."""
        self._tmpdir = tempfile.mkdtemp(prefix="alq-rows-", dir=os.environ.get("ALQ_TMPDIR") or None)
        path = os.path.join(self._tmpdir, "rows.f32")
        with open(path, "wb") as f:
            for _, _, x in self._raw_blocks():
                f.write(memoryview(np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)).cast("B"))
        if self.n:
            self._spill = np.memmap(path, dtype=np.float32, mode="r+", shape=(self.n, self.width))
        else:
            self._spill = np.empty((0, self.width), np.float32)

    def _drop(self, p0: int, p1: int) -> None:
        """Unmap spill rows [p0, p1) from this process (``MADV_DONTNEED``; the data stays in the file and
        the page cache), so a pass over the spill file never adds it to RSS: memory stays what
        ``ALQ_WORKING_MEMORY`` sets, whatever N."""
        mm = getattr(self._spill, "_mmap", None)
        if mm is None or not hasattr(mm, "madvise") or p1 <= p0:
            return
        row = self.width * 4
        start = (p0 * row) // mmap.PAGESIZE * mmap.PAGESIZE
        try:
            mm.madvise(mmap.MADV_DONTNEED, start, min(len(mm), p1 * row) - start)
        except (OSError, ValueError):  # not advisable here: the pages just stay resident
            pass

    def close(self) -> None:
        self._cache = None
        self._spill = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> RowTable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a spill file never outlives its table
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    # -- access -------------------------------------------------------------
    def _to_dev(self, arr: np.ndarray) -> torch.Tensor:
        if self.device.type != "cpu":  # ship the pool's dtype (float16: half the bytes), convert on the device
            arr = np.ascontiguousarray(arr)
            if not arr.flags.writeable:
                arr = arr.copy()
            return torch.from_numpy(arr).to(self.device).to(torch.float32)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not arr.flags.writeable:  # a read-only memory map: torch wants its own copy
            arr = arr.copy()
        return torch.from_numpy(arr).to(self.device)

    def blocks(self, positions: torch.Tensor | None = None) -> Iterator[tuple[slice | torch.Tensor, torch.Tensor]]:
        """Yield ``(pos, x)``: float32 vectors ``x`` of the rows at positions ``pos``.

        ``pos`` is a slice (all rows, in order) or a LongTensor on the device
        (the sorted subset ``positions``).
        """
        step = self.block
        if positions is None:
            if self._cache is not None:
                for p0 in range(0, self.n, step):
                    yield slice(p0, min(p0 + step, self.n)), self._cache[p0:p0 + step].float()
            elif self._spill is not None:
                for p0 in range(0, self.n, step):
                    p1 = min(p0 + step, self.n)
                    yield slice(p0, p1), self._to_dev(self._spill[p0:p1])
                    self._drop(p0, p1)
            else:
                for p0, p1, x in self._raw_blocks():
                    yield slice(p0, p1), x
            return
        positions = positions.to(self.device)
        if self._cache is not None:
            for q0 in range(0, len(positions), step):
                pos = positions[q0:q0 + step]
                yield pos, self._cache.index_select(0, pos).float()
        elif self._spill is not None:
            pos_np = positions.cpu().numpy()
            for q0 in range(0, len(pos_np), step):
                part = pos_np[q0:q0 + step]
                x = self._to_dev(self._spill[part])  # a gathered copy
                self._drop(int(part[0]), int(part[-1]) + 1)
                yield positions[q0:q0 + step], x
        else:
            pos_np = positions.cpu().numpy()
            for q0, q1, vec in iter_pool_rows(self.pool, self.rows[pos_np], self.block):
                yield positions[q0:q1], self._to_dev(vec)

    def take(self, positions) -> torch.Tensor:
        """Float32 vectors (m, width) of the rows at ``positions`` (any order)."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        if self._cache is not None:
            return self._cache[torch.from_numpy(pos).to(self.device)].float()
        if self._spill is not None:
            x = self._to_dev(self._spill[pos])  # a gathered copy
            if len(pos):
                self._drop(int(pos.min()), int(pos.max()) + 1)
            return x
        return self._to_dev(self.pool.take(self.rows[pos], dtype=np.float32))

    def describe(self) -> dict:
        return {"rows": self.n, "width": self.width, "where": self.where,
                "cache_dtype": str(self._cache.dtype).replace("torch.", "") if self._cache is not None else None}
