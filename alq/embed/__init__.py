"""``alq embed`` as a library call: inputs -> a new or extended pool store.

Inputs stream through in blocks sized by ``ALQ_WORKING_MEMORY`` into a
:class:`~alq.store.PoolWriter`; nothing is published until every row has
been validated and every id checked unique, so a bad input leaves the
existing pool exactly as it was.

Inputs, ``--ids``, ``--encoder`` and ``--out`` may be ``s3://`` / ``gs://``
URIs. With a Ray engine the rows are encoded and written by Ray tasks
(:mod:`alq.embed.distributed`) and this process only plans and commits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alq import fs
from alq.config import rows_per_block
from alq.embed.sources import IdStream, check_id_text, expand_inputs, open_source
from alq.embed.staged import staged
from alq.errors import BadInputError
from alq.store.manifest import is_pool, read_manifest
from alq.store.writer import DEFAULT_SHARD_ROWS, PoolWriter

__all__ = ["EmbedRequest", "embed"]


@dataclass
class EmbedRequest:
    inputs: list  # local paths or URIs
    out: str | Path
    ids: list = field(default_factory=list)
    id_column: str | None = None
    vector_column: str | None = None
    encoder: str | Path | None = None
    batch_size: int = 256
    shard_rows: int = DEFAULT_SHARD_ROWS
    dtype: str = "float16"
    normalize: str | None = None
    append: bool = False
    overwrite: bool = False
    skip_existing: bool = False  # --append: skip rows whose id and vector are already in the pool
    keep_columns: list[str] | None = None  # metadata columns to keep (None: every plain scalar column)
    trust_encoder: bool = False  # load a .pt2 even if it carries pickles that are not plain tensors


def embed(req: EmbedRequest, *, progress: Callable[[str, int, int], None] | None = None, engine=None,
          tasks: int | None = None, _task_fn=None) -> dict:
    """Build (or ``append`` to) the pool at ``req.out``; return a summary dict.

    ``engine``: None or a local engine streams every row through this process;
    a Ray engine runs ``tasks`` tasks that each encode and write whole shards.
    """
    with contextlib.ExitStack() as stack:
        return _embed(req, stack, progress or (lambda task, done, total: None), engine, tasks, _task_fn)


def _embed(req: EmbedRequest, stack: contextlib.ExitStack, progress, engine, tasks, task_fn) -> dict:
    t0 = time.perf_counter()
    distributed = engine is not None and getattr(engine, "name", "local") != "local"
    if req.append and req.overwrite:
        raise BadInputError("--append and --overwrite exclude each other")
    files = expand_inputs(req.inputs)
    out = fs.normalize(req.out)
    for f in files:
        if not fs.is_remote(f) and not fs.is_remote(out) and Path(f).resolve() == Path(out).resolve():
            raise BadInputError(f"{f}: an input cannot be the output pool")
        if fs.is_remote(f) and fs.is_remote(out) and fs.normalize(f) == out:
            raise BadInputError(f"{f}: an input cannot be the output pool")
    encoder = encoder_path = None
    if req.encoder is not None:
        encoder_path = stack.enter_context(staged(req.encoder, what="encoder"))
        if not distributed:  # Ray tasks load it themselves
            from alq.embed.encoder import Encoder

            encoder = Encoder(encoder_path, batch_size=req.batch_size, trust=req.trust_encoder)
    raw = req.encoder is not None
    sources = [open_source(f, vector_column=req.vector_column, id_column=req.id_column, raw=raw,
                           keep_columns=req.keep_columns) for f in files]
    for s in sources:
        if s.rows == 0:
            raise BadInputError(f"{s.name}: empty input (0 rows)")
        if req.keep_columns and not hasattr(s, "columns_schema"):  # named columns cannot be kept from no columns
            raise BadInputError(f"{s.name}: --keep-columns {','.join(req.keep_columns)} names columns, but this "
                                "input holds only vectors and ids", hint="keep columns from Parquet inputs, or drop "
                                "--keep-columns")
    if not raw:
        dims = {s.name: s.dim for s in sources if s.dim is not None}
        if len(set(dims.values())) > 1:
            (a, da), (b, db) = _first_two_different(dims)
            raise BadInputError(f"{b}: dim {db} does not match {a} (dim {da})")
        if req.append and is_pool(out) and dims:
            pool_dim = read_manifest(out).dim
            name, d = next(iter(dims.items()))
            if d != pool_dim:
                raise BadInputError(f"{name}: dim {d} does not match the pool {out} (dim {pool_dim})")
    ids_local = [stack.enter_context(staged(p, what="ids file")) for p in req.ids]
    id_streams = _id_streams(ids_local, sources)
    total = sum(s.rows for s in sources)

    extra = {"embed": {"inputs": [fs.name_of(f) for f in files[:20]] + (["..."] if len(files) > 20 else []),
                       "rows": total}}
    id_columns = _id_columns(sources, id_streams, read_manifest(out).extra if req.append and is_pool(out) else {})
    if id_columns:  # `alq labels import` finds ids under these names (image_id, ...) as this command did
        extra["id_columns"] = id_columns
    if raw:
        from alq.io import sha256_file

        sha = encoder.sha256 if encoder is not None else sha256_file(encoder_path)
        extra["encoder"] = {"file": fs.name_of(req.encoder), "sha256": sha}
        if req.append and is_pool(out):
            old = read_manifest(out).extra.get("encoder")
            if old and old.get("sha256") != sha:
                raise BadInputError(f"{req.encoder}: not the encoder this pool was built with "
                                    f"({old.get('file')}, sha256 {old.get('sha256', '')[:12]}...)",
                                    hint="embed with the same encoder, or build a new pool")
    existing = None
    if req.skip_existing:
        if not req.append:
            raise BadInputError("--skip-existing needs --append (it skips rows already in the pool)")
        if distributed:
            raise BadInputError("--skip-existing runs with --engine local only (it compares every row with the "
                                "pool as it streams)", hint="drop --engine ray")
        if is_pool(out):
            from alq.embed.existing import ExistingRows

            existing = ExistingRows(out)
    if distributed:
        ray_plan = _distributed_plan(req, sources, files, id_streams)
        if not fs.is_remote(out):
            out = Path(out).resolve()  # workers write into the writer's build directory by absolute path
    writer = PoolWriter(out, dtype=req.dtype, shard_rows=req.shard_rows, normalize=req.normalize,
                        append=req.append, overwrite=req.overwrite, extra=extra)
    with writer:
        if distributed:
            from alq.embed.distributed import write_distributed

            stats = write_distributed(writer, engine, sources, reader=dict(vector_column=req.vector_column,
                              id_column=req.id_column, keep_columns=req.keep_columns),
                              encoder=_where(req.encoder), encoder_name=str(req.encoder) if raw else None,
                              batch_size=req.batch_size, trust_encoder=req.trust_encoder, tasks=tasks,
                              progress=progress, **ray_plan, **({"task_fn": task_fn} if task_fn else {}))
            t_commit = time.perf_counter()
            manifest = writer.close()
            stats["commit_seconds"] = round(time.perf_counter() - t_commit, 4)
        else:
            manifest = _write_local(writer, sources, id_streams, encoder, existing, req, progress, total, out)
    skipped = existing.skipped if existing is not None else 0
    shown = str(req.out if fs.is_remote(req.out) else fs.normalize(req.out))
    return {"pool": shown, "output": shown,
            "appended": bool(req.append), "rows_added": total - skipped,
            "rows_skipped": skipped, "columns": writer.columns_schema.names if writer.columns_schema else [],
            "count": manifest.count, "dim": manifest.dim, "dtype": manifest.dtype, "id_type": manifest.id_type,
            "normalize": manifest.normalize, "shards": len(manifest.shards),
            "shards_added": len(writer.new_shards),
            "inputs": [str(f) for f in files], "encoder": str(req.encoder) if req.encoder else None,
            "fingerprint": manifest.fingerprint, "seconds": round(time.perf_counter() - t0, 3),
            **({"engine": {"name": engine.name, **stats}} if distributed else {})}


def _write_local(writer, sources, id_streams, encoder, existing, req, progress, total, out):
    """Stream every input through this process into ``writer``; return the committed manifest."""
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
            check_id_text(ids, batch.source, batch.row0)
            if existing is None:
                writer.add(vectors, ids, source=batch.source, source_row0=batch.row0, columns=batch.columns)
            else:
                _add_new_rows(writer, existing, vectors, ids, batch)
            done += len(vectors)
            progress("embed", done, total)
            del batch, vectors, ids  # free this block before the reader allocates the next
    if existing is not None and writer.rows_written == 0:
        writer.abort()  # every row was already there: the pool stays exactly as it was
        return read_manifest(out)
    return writer.close()


def _where(path) -> str | None:
    """A name a worker can open: the URI, or the absolute local path."""
    if path is None:
        return None
    return str(fs.normalize(path)) if fs.is_remote(path) else str(fs.local(path).resolve())


def _distributed_plan(req: EmbedRequest, sources: list, files: list, id_streams: list) -> dict:
    """What tasks need beyond row ranges: names, the ids plan, the id type and kept columns fixed up front.

    The local engine learns the id type and the metadata columns from the first
    batch; tasks start mid-input, so they are read here from the headers and the
    same mismatches are refused with the same lines.
    """
    from alq.embed.distributed import IdsPlan

    names = [str(f) for f in files]
    if req.ids:
        kinds = [_stream_kind(st) for st in id_streams[:1 if len(req.ids) == 1 else None]]
        ids = IdsPlan(mode="one" if len(req.ids) == 1 else "each", files=tuple(_where(p) for p in req.ids),
                      names=tuple(str(p) for p in req.ids))
        labels = [str(p) for p in req.ids]
    else:
        have = [s.has_ids for s in sources]
        if any(have) and not all(have):
            first = names[have.index(False)] if have[0] else names[have.index(True)]
            raise BadInputError(f"{first}: --engine ray needs every input to carry ids, or none to "
                                "(generated ids after given ones depend on rows read before them)",
                                hint="pass --ids, or use --engine local")
        ids = IdsPlan(mode="inputs" if all(have) else "generated")
        kinds = [_source_kind(s) for s in sources] if all(have) else ["int64"]
        labels = names
    id_type = None
    for label, kind in zip(labels, kinds):
        if id_type is None:
            id_type = kind
        elif kind != id_type:
            raise BadInputError(f"{label}: ids are {'integers' if kind == 'int64' else 'strings'} but earlier "
                                f"input has {'integer' if id_type == 'int64' else 'string'} ids")
    columns_schema = None
    if req.keep_columns != []:
        schemas = [s.columns_schema() if hasattr(s, "columns_schema") else None for s in sources]
        columns_schema = schemas[0]
        if columns_schema is None:
            later = next((i for i, sc in enumerate(schemas) if sc is not None), None)
            if later is not None:
                raise BadInputError(f"{names[later]}: has metadata columns ({', '.join(schemas[later].names)}) but "
                                    "the pool's earlier rows have none", hint="pass --keep-columns none")
    return {"names": names, "ids": ids, "id_type": id_type, "columns_schema": columns_schema}


def _source_kind(s) -> str:
    import pyarrow as pa

    if getattr(s, "pool", None) is not None:
        return s.pool.id_type
    if getattr(s, "icol", None):
        t = s.pf.schema_arrow.field(s.icol).type
        return "int64" if pa.types.is_integer(t) else "string"
    return "int64" if s.ids.dtype.kind in "iu" else "string"


def _stream_kind(st: IdStream) -> str:
    import pyarrow as pa

    if st.kind == "npy":
        return "int64" if st.info.dtype.kind in "iu" else "string"
    if st.kind == "parquet":
        return "int64" if pa.types.is_integer(st.pf.schema_arrow.field(st.column).type) else "string"
    return "int64" if st.numeric else "string"


def _add_new_rows(writer: PoolWriter, existing, vectors, ids, batch) -> None:
    """Add the rows of one block that are not already in the pool, in runs that keep source rows exact."""
    from alq.embed.existing import runs

    keep = existing.keep_mask(ids, vectors, source=batch.source, row0=batch.row0)
    for a, b in runs(keep):
        sub_ids = ids[a:b] if ids is not None else None
        cols = batch.columns.slice(a, b - a) if batch.columns is not None else None
        writer.add(vectors[a:b], sub_ids, source=batch.source, source_row0=batch.row0 + a, columns=cols)


def _id_columns(sources: list, id_streams: list, base_extra: dict) -> list[str]:
    """The column names the pool's ids were read from (Parquet inputs, --ids Parquet, an npz key), kept
    across appends."""
    names = list(base_extra.get("id_columns") or [])
    if any(st is not None for st in id_streams):
        found = [st.column for st in dict.fromkeys(st for st in id_streams if st is not None) if st.kind == "parquet"]
    else:
        found = []
        for s in sources:
            if getattr(s, "icol", None):
                found.append(s.icol)
            elif getattr(s, "pool", None) is not None:
                found += list(s.pool.manifest.extra.get("id_columns") or [])
            elif getattr(getattr(s, "ids", None), "key", None):
                found.append(s.ids.key)
    return names + [n for n in dict.fromkeys(found) if n not in names]


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
