"""The ids of a pool being written: where each new row came from, and every id once across the whole pool.

A batch's own repeats are refused as it arrives. Repeats across batches, or
against the pool being appended to, are found at the commit: every id's
64-bit hash goes to a spill on disk (:class:`~alq.store.idcheck.UniqueIdSpill`,
bounded memory whatever the pool size), and only hash-equal rows are read back
and compared. A Ray worker writing a part keeps no spill: the driver hashes
every adopted shard's ids into its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq import fs
from alq.errors import BadInputError, StoreError
from alq.store.idcheck import UniqueIdSpill, hash_ids
from alq.store.manifest import Manifest, ShardInfo


@dataclass(frozen=True)
class Segment:
    """New rows [start, start+rows) came from ``source`` rows [row0, row0+rows)."""

    start: int
    rows: int
    source: str
    row0: int


class PoolIds:
    """Id bookkeeping of one writer: generated ids, the source of each new row, the whole-pool uniqueness check.

    ``spill_at``: where the hash spill lives (beside the pool, or in a remote
    writer's stage); None for a worker's part (no check here).
    """

    def __init__(self, spill_at: str | Path | None, base_count: int = 0):
        self.spill = UniqueIdSpill(spill_at) if spill_at is not None else None
        self.base_count = base_count
        self.next_generated = 0  # the first id a batch without ids gets
        self.new_rows = 0
        self.segments: list[Segment] = []

    # -- the pool being appended to ------------------------------------------------------
    def add_existing(self, pool_path, base: Manifest, check_shard: Callable[[ShardInfo], None]) -> None:
        """Hash the pool's ids into the spill, one shard at a time (each checked first); note the largest int id."""
        row = 0
        biggest = -1
        for s in base.shards:
            check_shard(s)
            f = fs.join(pool_path, s.parquet)
            try:
                col = fs.read_table(f, columns=["id"]).column("id").combine_chunks()
            except (pa.ArrowException, OSError) as exc:
                raise StoreError(f"{f}: unreadable ids of the existing pool ({str(exc).splitlines()[0][:160]})",
                                 hint="run `alq info --verify` on the pool") from None
            if base.id_type == "int64":
                arr = col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
                if len(arr):
                    biggest = max(biggest, int(arr.max()))
                h = hash_ids(arr)
            else:
                h = hash_ids(col)
            self._spill(h, row, s.rows)
            row += s.rows
        self.next_generated = biggest + 1

    # -- new rows --------------------------------------------------------------------------
    def check_batch(self, ids: np.ndarray, source: str, row0: int) -> np.ndarray:
        """Refuse an id repeated within one batch; returns the batch's hashes for :meth:`record`."""
        hashes = hash_ids(ids)
        order = np.argsort(hashes, kind="stable")
        h = hashes[order]
        same = np.flatnonzero(h[1:] == h[:-1])
        best = None
        for i in same:
            a, b = int(order[i]), int(order[i + 1])
            if ids[a] == ids[b]:
                pair = (min(a, b), max(a, b))
                best = pair if best is None or pair[1] < best[1] else best
        if best is not None:
            raise BadInputError(f"{source}: duplicate id {show(ids[best[0]])} at rows "
                                f"{row0 + best[0]} and {row0 + best[1]}")
        return hashes

    def record(self, hashes: np.ndarray, ids: np.ndarray, source: str, row0: int) -> None:
        """The batch's rows join the pool being written (after :meth:`check_batch`)."""
        n = len(ids)
        self._spill(hashes, self.base_count + self.new_rows, n)
        self.segments.append(Segment(self.new_rows, n, source, row0))
        if ids.dtype.kind in "iu":
            self.next_generated = max(self.next_generated, int(ids.max()) + 1)
        self.new_rows += n

    def record_shard(self, col: pa.Array, id_type: str | None, source: str, row0: int) -> None:
        """A whole shard written elsewhere (a worker's) joins, by its ids column."""
        ids = col.to_numpy(zero_copy_only=False)
        if id_type == "int64" or pa.types.is_integer(col.type):
            ids = ids.astype(np.int64, copy=False)
            if len(ids):
                self.next_generated = max(self.next_generated, int(ids.max()) + 1)
            h = hash_ids(ids)
        else:
            h = hash_ids(col)
        self._spill(h, self.base_count + self.new_rows, len(col))
        self.segments.append(Segment(self.new_rows, len(col), source, row0))
        self.new_rows += len(col)

    def _spill(self, hashes: np.ndarray, start: int, n: int) -> None:
        if self.spill is not None:
            self.spill.add(hashes, np.arange(start, start + n, dtype=np.int64))

    # -- the commit's check ----------------------------------------------------------------
    def check_unique(self, ids_at: Callable[[np.ndarray], np.ndarray]) -> None:
        """Refuse an id that appears twice in the whole pool; ``ids_at(rows)``: the ids of pool rows."""
        groups = self.spill.candidate_groups() if self.spill is not None else []
        if not groups:
            return
        rows = np.unique(np.concatenate(groups))
        ids = dict(zip(rows.tolist(), ids_at(rows).tolist()))
        best = None  # (first row, duplicate row) with the smallest duplicate row
        for g in groups:
            first_of: dict = {}
            for r in g.tolist():  # g is sorted by row
                v = ids[r]
                if v in first_of:
                    if best is None or r < best[1]:
                        best = (first_of[v], r)
                else:
                    first_of[v] = r
        if best is None:
            return  # hash collisions only
        first, dup = best
        src, srow = self.source_of(dup)
        value = show(ids[dup])
        if first < self.base_count:
            raise BadInputError(f"{src}: row {srow}: id {value} is already in the pool")
        fsrc, frow = self.source_of(first)
        raise BadInputError(f"{src}: row {srow}: duplicate id {value} (first seen at {fsrc} row {frow})")

    def source_of(self, row: int) -> tuple[str, int]:
        """(source, row in it) of pool row ``row`` (a new one)."""
        new = row - self.base_count
        starts = [s.start for s in self.segments]
        seg = self.segments[int(np.searchsorted(starts, new, side="right")) - 1]
        return seg.source, seg.row0 + (new - seg.start)

    def cleanup(self) -> None:
        if self.spill is not None:
            self.spill.cleanup()


def show(v) -> str:
    return repr(v.item() if hasattr(v, "item") else v)
