"""Id-list readers that do not guess: one set of rules for ``--ids``, ``--pending`` and ``--sent``.

- Parquet is recognised by its content (the ``PAR1`` magic), whatever the suffix
  (``x.pq``, ``x.PARQUET``, no suffix at all).
- Text is UTF-8 (a BOM is dropped); other bytes are an error naming the line.
- One id per line, the first CSV field (so ``"k0"`` is ``k0``); an optional
  ``id`` header line; blank lines skipped.
- Ids are integers only when every id is written as a plain integer that fits
  int64 (``17``, ``-3``), exactly as the labels reader decides; otherwise every id
  is kept verbatim as a string (``000001``, ``1_00`` and ``+5`` stay as written).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from alq.errors import BadInputError

PARQUET_MAGIC = b"PAR1"
HEADER_NAMES = ("id", "ids", "image_id", "key")
_INT64 = (-(2**63), 2**63 - 1)


def is_parquet(path: str | Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == PARQUET_MAGIC
    except (IsADirectoryError, FileNotFoundError):
        return False


def plain_int(v: str) -> int | None:
    """``v`` as an int64 when it is written as a plain integer, else None."""
    try:
        n = int(v)
    except ValueError:
        return None
    return n if str(n) == v and _INT64[0] <= n <= _INT64[1] else None


def iter_text_ids(path: str | Path, *, header_names: tuple[str, ...] = HEADER_NAMES) -> Iterator[tuple[int, str]]:
    """(line number, id text) for each id line of a text/CSV ids file."""
    path = Path(path)
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise BadInputError(f"{path}: line {n}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                                    hint="convert it, e.g. `iconv -f latin1 -t utf-8`") from None
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                fields = next(csv.reader([line], strict=True), [""])
            except csv.Error as exc:
                raise BadInputError(f"{path}: line {n}: bad quoting ({exc})") from None
            v = fields[0].strip() if fields else ""
            if n == 1 and v in header_names:
                continue
            if not v:
                raise BadInputError(f"{path}: line {n}: empty id")
            yield n, v


def scan_text_ids(path: str | Path) -> tuple[int, bool]:
    """(number of ids, whether every id is a plain integer)."""
    rows, numeric = 0, True
    for _, v in iter_text_ids(path):
        rows += 1
        if numeric and plain_int(v) is None:
            numeric = False
    return rows, numeric
