"""``alq embed`` as a library call: inputs -> a new or extended pool store.

Inputs stream through in blocks sized by ``ALQ_WORKING_MEMORY`` into a
:class:`~alq.store.PoolWriter`; nothing is published until every row has
been validated and every id checked unique, so a bad input leaves the
existing pool exactly as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alq.config import rows_per_block
from alq.embed.sources import IdStream, expand_inputs, open_source
from alq.errors import BadInputError
from alq.store.manifest import is_pool, read_manifest
from alq.store.writer import DEFAULT_SHARD_ROWS, PoolWriter

__all__ = ["EmbedRequest", "embed"]


@dataclass
class EmbedRequest:
    inputs: list[Path]
    out: Path
    ids: list[Path] = field(default_factory=list)
    id_column: str | None = None
    vector_column: str | None = None
    encoder: Path | None = None
    batch_size: int = 256
    shard_rows: int = DEFAULT_SHARD_ROWS
    dtype: str = "float16"
    normalize: str | None = None
    append: bool = False
    overwrite: bool = False
    skip_existing: bool = False  # --append: skip rows whose id and vector are already in the pool
    keep_columns: list[str] | None = None  # metadata columns to keep (None: every plain scalar column)
    trust_encoder: bool = False  # load a .pt2 even if it carries pickles that are not plain tensors


def embed(req: EmbedRequest, *, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Build (or ``append`` to) the pool at ``req.out``; return a summary dict."""
    t0 = time.perf_counter()
    progress = progress or (lambda task, done, total: None)
    if req.append and req.overwrite:
        raise BadInputError("--append and --overwrite exclude each other")
    files = expand_inputs(req.inputs)
    out = Path(req.out)
    for f in files:
        if f.resolve() == out.resolve():
            raise BadInputError(f"{f}: an input cannot be the output pool")
    encoder = None
    if req.encoder is not None:
        from alq.embed.encoder import Encoder

        encoder = Encoder(req.encoder, batch_size=req.batch_size, trust=req.trust_encoder)
    sources = [open_source(f, vector_column=req.vector_column, id_column=req.id_column, raw=encoder is not None,
                           keep_columns=req.keep_columns) for f in files]
    for s in sources:
        if s.rows == 0:
            raise BadInputError(f"{s.name}: empty input (0 rows)")
    if encoder is None:
        dims = {s.name: s.dim for s in sources if s.dim is not None}
        if len(set(dims.values())) > 1:
            (a, da), (b, db) = _first_two_different(dims)
            raise BadInputError(f"{b}: dim {db} does not match {a} (dim {da})")
        if req.append and is_pool(out) and dims:
            pool_dim = read_manifest(out).dim
            name, d = next(iter(dims.items()))
            if d != pool_dim:
                raise BadInputError(f"{name}: dim {d} does not match the pool {out} (dim {pool_dim})")
    id_streams = _id_streams(req.ids, sources)
    total = sum(s.rows for s in sources)

    extra = {"embed": {"inputs": [f.name for f in files[:20]] + (["..."] if len(files) > 20 else []),
                       "rows": total}}
    if encoder is not None:
        extra["encoder"] = {"file": encoder.path.name, "sha256": encoder.sha256}
        if req.append and is_pool(out):
            old = read_manifest(out).extra.get("encoder")
            if old and old.get("sha256") != encoder.sha256:
                raise BadInputError(f"{encoder.path}: not the encoder this pool was built with "
                                    f"({old.get('file')}, sha256 {old.get('sha256', '')[:12]}...)",
                                    hint="embed with the same encoder, or build a new pool")
    existing = None
    if req.skip_existing:
        if not req.append:
            raise BadInputError("--skip-existing needs --append (it skips rows already in the pool)")
        if is_pool(out):
            from alq.embed.existing import ExistingRows

            existing = ExistingRows(out)
    writer = PoolWriter(out, dtype=req.dtype, shard_rows=req.shard_rows, normalize=req.normalize,
                        append=req.append, overwrite=req.overwrite, extra=extra)
    with writer:
        done = 0
        progress("embed", 0, total)
        for s, ids_stream in zip(sources, id_streams):
            out_dim = s.dim if encoder is None else None
            bytes_per_row = s.row_bytes() + 4 * (out_dim or s.dim or 256) * 3 + 64
            block = rows_per_block(bytes_per_row)
            if encoder is not None:
                block = max(block // req.batch_size, 1) * req.batch_size
            for batch in s.batches(block):
                vectors = batch.vectors
                if encoder is not None:
                    vectors = encoder.encode(vectors, source=batch.source, row0=batch.row0)
                ids = ids_stream.take(len(vectors)) if ids_stream is not None else batch.ids
                if existing is None:
                    writer.add(vectors, ids, source=batch.source, source_row0=batch.row0, columns=batch.columns)
                else:
                    _add_new_rows(writer, existing, vectors, ids, batch)
                done += len(vectors)
                progress("embed", done, total)
                del batch, vectors, ids  # free this block before the reader allocates the next
        if existing is not None and writer.rows_written == 0:
            writer.abort()  # every row was already there: the pool stays exactly as it was
            manifest = read_manifest(out)
        else:
            manifest = writer.close()
    skipped = existing.skipped if existing is not None else 0
    return {"pool": str(out), "output": str(out), "appended": bool(req.append), "rows_added": total - skipped,
            "rows_skipped": skipped, "columns": writer.columns_schema.names if writer.columns_schema else [], "count": manifest.count,
            "dim": manifest.dim, "dtype": manifest.dtype, "id_type": manifest.id_type,
            "normalize": manifest.normalize, "shards": len(manifest.shards),
            "shards_added": len(writer.new_shards),
            "inputs": [str(f) for f in files], "encoder": str(req.encoder) if req.encoder else None,
            "fingerprint": manifest.fingerprint, "seconds": round(time.perf_counter() - t0, 3)}


def _add_new_rows(writer: PoolWriter, existing, vectors, ids, batch) -> None:
    """Add the rows of one block that are not already in the pool, in runs that keep source rows exact."""
    from alq.embed.existing import runs

    keep = existing.keep_mask(ids, vectors, source=batch.source, row0=batch.row0)
    for a, b in runs(keep):
        sub_ids = ids[a:b] if ids is not None else None
        cols = batch.columns.slice(a, b - a) if batch.columns is not None else None
        writer.add(vectors[a:b], sub_ids, source=batch.source, source_row0=batch.row0 + a, columns=cols)


def _first_two_different(dims: dict) -> tuple[tuple[str, int], tuple[str, int]]:
    items = list(dims.items())
    for name, d in items[1:]:
        if d != items[0][1]:
            return items[0], (name, d)
    raise AssertionError("unreachable")


def _id_streams(ids_files: list[Path], sources: list) -> list[IdStream | None]:
    """One ids stream per source: ``--ids`` once covers all inputs in order; N times pairs with N inputs."""
    if not ids_files:
        return [None] * len(sources)
    if len(ids_files) == 1:
        stream = IdStream(ids_files[0])
        total = sum(s.rows for s in sources)
        if stream.rows != total:
            raise BadInputError(f"{ids_files[0]}: {stream.rows} ids for {total} input rows")
        return [stream] * len(sources)
    if len(ids_files) != len(sources):
        raise BadInputError(f"--ids given {len(ids_files)} times for {len(sources)} inputs "
                            "(give it once for all inputs, or once per input)")
    streams = []
    for f, s in zip(ids_files, sources):
        stream = IdStream(f)
        if stream.rows != s.rows:
            raise BadInputError(f"{f}: {stream.rows} ids for the {s.rows} rows of {s.name}")
        streams.append(stream)
    return streams
