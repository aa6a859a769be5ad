"""The record beside a directory's shards, in a form every dataset reader takes as no rows.

``alq score`` and ``alq cluster`` write a directory of per-shard Parquet files
plus one small record (format, fingerprints, checksums). As a JSON file that
record broke readers that take the whole directory: ``polars.scan_parquet("clusters/")``
refuses a directory holding two file extensions (a ``_``-prefix does not hide a
file from it), and DuckDB's ``'clusters/*'`` reads every file as Parquet. The
record is therefore a zero-row Parquet file with the shards' schema
(``_clusters.parquet``, ``_scores.parquet``), the record as JSON in its
key-value metadata under ``alq.record``: pyarrow and Spark skip ``_``-prefixed
files, polars and DuckDB read it as no rows of the same columns.

Directories written before (``_clusters.json``; ``clusters.json`` before that)
are still read: :func:`decode` reads a ``.json`` name as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from alq.errors import BadInputError

KEY = b"alq.record"


def encode(record: dict, schema: pa.Schema) -> bytes:
    """The sidecar file's bytes: no rows of ``schema`` (its metadata dropped), ``record`` in the metadata."""
    from alq.io import dumps_strict

    table = schema.remove_metadata().empty_table().replace_schema_metadata({KEY: dumps_strict(record).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write(path: str | Path, record: dict, schema: pa.Schema) -> None:
    """Write the sidecar atomically (a local path)."""
    from alq.io import atomic_path

    data = encode(record, schema)
    with atomic_path(path, suffix=".parquet") as tmp:
        Path(tmp).write_bytes(data)


def decode(data: bytes, where, *, what: str) -> dict:
    """The record in ``data``, the content of the file ``where`` (a ``.json`` name: the older layout)."""
    if str(where).endswith(".json"):
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadInputError(f"{where}: {what} is not valid JSON ({exc})") from None
    try:
        schema = pq.read_schema(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(f"{where}: {what} is not a readable Parquet file "
                            f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    raw = (schema.metadata or {}).get(KEY)
    if raw is None:
        raise BadInputError(f"{where}: {what} holds no alq record (no {KEY.decode()} metadata)")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadInputError(f"{where}: {what} is not valid JSON ({exc})") from None


def read(path: str | Path, *, what: str) -> dict:
    """The record of a local sidecar (``.parquet``, or an older ``.json``)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"{p}: {what} not found") from None
    return decode(data, p, what=what)


def is_alq_record(data: bytes, where) -> bool:
    """Whether ``data`` (the file ``where``) holds an alq record (``"format": "alq-..."``)."""
    try:
        record = decode(data, where, what="record")
    except BadInputError:
        return False
    return isinstance(record, dict) and str(record.get("format", "")).startswith("alq")
