"""Id uniqueness over a whole pool in bounded memory.

Every id is reduced to a 64-bit hash and kept, with its row number, in a
buffer; past ``buffer_entries`` (256k, 4 MB) the buffer spills to one of 256
bucket files on disk (by the hash's top byte). At the end each
bucket is sorted on its own: equal hashes are duplicate *candidates*, which
the caller confirms by comparing the real ids (hash collisions are possible
but rare). Memory is one buffer (4 MB) plus one bucket, about 16 bytes x N /
256, so a billion-row pool needs ~60 MB where an in-memory set would need
tens of GB; pools under 256k rows never touch the disk.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

N_BUCKETS = 256
ENTRY = np.dtype([("h", "<u8"), ("r", "<i8")])
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_P = np.uint64(0x100000001B3)  # FNV-64 prime as the polynomial base


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = x + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def hash_ids(ids) -> np.ndarray:
    """64-bit hash per id, shape (n,) uint64. Ints and strings hash differently but deterministically.

    Strings: a polynomial hash of their UTF-8 bytes (vectorised over the Arrow
    buffers, no Python loop per id), mixed with the length.
    """
    if isinstance(ids, np.ndarray) and np.issubdtype(ids.dtype, np.integer):
        return _mix(ids.astype(np.int64, copy=False).view(np.uint64))
    arr = ids if isinstance(ids, pa.Array) else pa.array(np.asarray(ids, dtype=object).tolist(), type=pa.string())
    if pa.types.is_integer(arr.type):
        return _mix(arr.cast(pa.int64()).to_numpy(zero_copy_only=False).view(np.uint64))
    arr = arr.cast(pa.large_string())
    if arr.null_count:
        raise ValueError("null ids cannot be hashed")
    n = len(arr)
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset:arr.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    data = data[offsets[0]:offsets[-1]].astype(np.uint64)
    lengths = np.diff(offsets)
    out = np.zeros(n, dtype=np.uint64)
    if data.size:
        starts = offsets[:-1] - offsets[0]
        pos = np.arange(data.size, dtype=np.int64) - np.repeat(starts, lengths)
        powers = np.cumprod(np.full(int(lengths.max()), _P, dtype=np.uint64))  # P^1 .. P^maxlen
        terms = (data + np.uint64(1)) * powers[pos]
        nonempty = lengths > 0
        out[nonempty] = np.add.reduceat(terms, starts[nonempty])
    return _mix(out ^ _mix(lengths.astype(np.uint64)))


def _groups(e: np.ndarray) -> list[np.ndarray]:
    """Rows of each run of equal hashes (length >= 2), rows sorted."""
    e = e[np.argsort(e["h"], kind="stable")]  # radix sort on uint64; far faster than a structured sort
    same = e["h"][1:] == e["h"][:-1]
    if not same.any():
        return []
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
    ends = np.concatenate([starts[1:], [len(e)]])
    return [np.sort(e["r"][s:t]) for s, t in zip(starts, ends) if t - s > 1]


class UniqueIdSpill:
    """Collect (hash, row) pairs in bucket files; then list rows whose hashes repeat.

    ``rows`` are any int64 labels the caller can map back to ids (a global
    row number). The bucket files live in a hidden sibling of ``target``
    (``.NAME.ids.*.tmp``); use as a context manager, or call ``cleanup()``.
    """

    def __init__(self, target: str | Path, *, buffer_entries: int = 1 << 18):
        self.target = Path(target)
        self.dir: Path | None = None  # created on the first spill: small pools never touch the disk
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self.buffer_entries = max(1, buffer_entries)
        self.count = 0

    def add(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        e = np.empty(len(hashes), dtype=ENTRY)
        e["h"] = hashes
        e["r"] = rows
        self._buf.append(e)
        self._buffered += len(e)
        self.count += len(e)
        if self._buffered >= self.buffer_entries:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        if self.dir is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.ids.", suffix=".tmp",
                                             dir=self.target.parent))
        e = np.concatenate(self._buf)
        self._buf, self._buffered = [], 0
        bucket = (e["h"] >> np.uint64(56)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        e, bucket = e[order], bucket[order]
        bounds = np.searchsorted(bucket, np.arange(N_BUCKETS + 1))
        for b in range(N_BUCKETS):
            lo, hi = bounds[b], bounds[b + 1]
            if hi > lo:
                with open(self.dir / f"b{b:03d}.bin", "ab") as fh:
                    fh.write(e[lo:hi].tobytes())

    def candidate_groups(self) -> list[np.ndarray]:
        """Row groups (each sorted, >= 2 rows) whose hashes are equal. Usually empty."""
        if self.dir is None:  # everything still fits in the buffer
            return _groups(np.concatenate(self._buf)) if self._buf else []
        self._flush()
        groups: list[np.ndarray] = []
        for b in range(N_BUCKETS):
            f = self.dir / f"b{b:03d}.bin"
            if f.exists():
                groups.extend(_groups(np.fromfile(f, dtype=ENTRY)))
        return groups

    def cleanup(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> UniqueIdSpill:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()
