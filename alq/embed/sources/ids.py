"""Ids of an input: a separate ids file read in step with the vectors, and the check every string id passes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from alq.embed.sources.base import ID_NAMES, first_line
from alq.errors import BadInputError
from alq.store.npyfile import iter_npy_rows, npy_info
from alq.store.readers import is_parquet, iter_text_ids, scan_text_ids


def check_id_text(ids, source: str, row0: int) -> None:
    """Refuse string ids a labels CSV could not name exactly: empty, with a line break, or with leading or
    trailing whitespace (CSV and id-list readers strip each field). Integer ids pass.
    """
    if ids is None:
        return
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if isinstance(ids, pa.Array):
        if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
            return
        arr = ids
    else:
        a = np.asarray(ids)
        if a.dtype.kind not in "OUS":
            return
        try:
            arr = pa.array(a.tolist(), type=pa.string())
        except (pa.ArrowException, TypeError, ValueError):
            return  # not all strings: the writer names what is wrong with them
    bad = pc.or_(pc.equal(pc.utf8_length(arr), 0), pc.not_equal(arr, pc.utf8_trim_whitespace(arr)))
    bad = pc.fill_null(pc.or_(bad, pc.match_substring_regex(arr, "[\r\n]")), False)
    if not pc.any(bad).as_py():
        return
    r = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
    v = arr[r].as_py()
    what = ("is empty" if v == "" else "holds a line break" if "\n" in v or "\r" in v
            else "has leading or trailing whitespace")
    raise BadInputError(f"{source}: row {row0 + r}: id {v!r} {what}, so no labels file could name it exactly",
                        hint="clean the ids before `alq embed` (strip them, drop empty ones)")


class IdStream:
    """Ids from a separate file, handed out in order: ``.npy`` (1-D), Parquet (``id`` column) or text/CSV.

    Text files hold one id per line (an optional ``id`` header line; for CSV
    the first field). Ids that all parse as integers are int64, else strings.
    ``path`` is a local file (a remote one is staged first: :func:`alq.embed.staged.staged`).
    """

    def __init__(self, path: Path, *, column: str | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise BadInputError(f"{self.path}: ids file not found")
        suffix = self.path.suffix.lower()
        if suffix == ".npy":
            self.kind = "npy"
            self.info = npy_info(self.path)
            if len(self.info.shape) != 1:
                raise BadInputError(f"{self.path}: ids must be 1-D, got shape {self.info.shape}")
            if self.info.dtype.kind not in "iuUS":
                raise BadInputError(f"{self.path}: ids have dtype {self.info.dtype}; alq ids are integers or strings")
            self.rows = self.info.rows
        elif suffix in (".parquet", ".pq") or is_parquet(self.path):
            self.kind = "parquet"
            try:
                self.pf = pq.ParquetFile(self.path)
            except (pa.ArrowException, OSError) as exc:
                raise BadInputError(f"{self.path}: not a readable Parquet file ({first_line(exc)})") from None
            names = self.pf.schema_arrow.names
            self.column = column if column else next((c for c in ID_NAMES if c in names), None)
            if self.column not in names:
                raise BadInputError(f"{self.path}: no id column {column or 'id'!r} (has {', '.join(names)})")
            self.rows = int(self.pf.metadata.num_rows)
        else:
            self.kind = "text"
            self.rows, self.header, self.numeric = self._scan_text()
        self._iter: Iterator[np.ndarray | pa.Array] | None = None
        self._buf: list = []
        self._given = 0

    def _scan_text(self) -> tuple[int, bool, bool]:
        rows, numeric = scan_text_ids(self.path)  # the labels reader's rules (alq.store.readers)
        return rows, False, numeric

    def _chunks(self, block: int) -> Iterator:
        if self.kind == "npy":
            for _, arr in iter_npy_rows(self.info, block):
                yield arr.astype(str).astype(object) if arr.dtype.kind in "US" else arr
        elif self.kind == "parquet":
            for rb in self.pf.iter_batches(batch_size=block, columns=[self.column], use_threads=False):
                yield rb.column(0)
        else:
            buf: list = []
            for _, v in iter_text_ids(self.path):
                buf.append(int(v) if self.numeric else v)
                if len(buf) >= block:
                    yield np.array(buf, dtype=np.int64 if self.numeric else object)
                    buf = []
            if buf:
                yield np.array(buf, dtype=np.int64 if self.numeric else object)

    def skip(self, n: int) -> None:
        """Pass over the next ``n`` ids (a Ray task starting mid-input), one block at a time."""
        while n > 0:
            k = min(n, 65_536)
            self.take(k)
            n -= k

    def take(self, n: int):
        """The next ``n`` ids (numpy array or Arrow array)."""
        if self._iter is None:
            self._iter = self._chunks(max(n, 65_536))
        parts, have = [], 0
        while have < n:
            if not self._buf:
                nxt = next(self._iter, None)
                if nxt is None:
                    raise BadInputError(f"{self.path}: ran out of ids after {self._given + have}")
                self._buf = [nxt]
            head = self._buf.pop(0)
            k = min(n - have, len(head))
            parts.append(head[:k])
            if k < len(head):
                self._buf.insert(0, head[k:])
            have += k
        self._given += n
        if len(parts) == 1:
            return parts[0]
        if isinstance(parts[0], pa.Array):
            return pa.concat_arrays(parts)
        return np.concatenate(parts)
