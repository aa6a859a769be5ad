"""One batch of rows on its way into a pool: vectors checked and cast, ids and metadata columns typed.

Pure functions of the batch and of what the pool has fixed so far (dtype,
normalisation, id type, metadata schema); errors name the source and row.
Used by every writer of shards (:mod:`alq.store.sharding`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from alq.errors import BadInputError


def prepare_vectors(vectors: np.ndarray, source: str, row0: int, *, dtype: np.dtype, normalize: str | None,
                    buffer: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Finite check, optional l2 normalisation, cast to the pool dtype: (rows, the conversion buffer).

    ``buffer``: the previous call's conversion buffer, reused (the rows it
    holds must have gone to disk before this call).

    Row max and min carry the checks (NaN and +-Inf propagate through
    them; float16 overflows iff max |x| >= 65520), so no (rows, dim)
    boolean temporaries are made.
    """
    if vectors.dtype.itemsize > 4 and vectors.dtype.kind == "f" and len(vectors):
        wide = np.maximum(vectors.max(axis=1), -vectors.min(axis=1))  # NaN propagates
        big = np.isfinite(wide) & (wide > np.finfo(np.float32).max)
        if big.any():
            raise BadInputError(f"{source}: row {row0 + int(np.flatnonzero(big)[0])} has a finite value "
                                f"beyond the float32 range (|x| > 3.4e38)", hint="rescale the vectors")
    with np.errstate(over="ignore", invalid="ignore"):
        vec = vectors.astype(np.float32, copy=False)
    mx, mn = vec.max(axis=1), vec.min(axis=1)
    bad = ~(np.isfinite(mx) & np.isfinite(mn))
    if bad.any():
        raise BadInputError(f"{source}: row {row0 + int(np.flatnonzero(bad)[0])} has NaN or Inf")
    scale = np.maximum(mx, -mn)  # max |x| per row
    if normalize == "l2":
        if (scale == 0).any():
            row = int(np.flatnonzero(scale == 0)[0])
            raise BadInputError(f"{source}: row {row0 + row} is all zeros and cannot be l2-normalised")
        # divide by max |x| first: the squares of 1e20 (or 1e-30) would overflow (underflow) float32
        vec = vec / scale[:, None]
        vec = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    elif dtype == np.float16:
        big = scale >= 65520.0  # rounds to inf in float16
        if big.any():
            raise BadInputError(f"{source}: row {row0 + int(np.flatnonzero(big)[0])} overflows float16 "
                                "(|x| > 65504)", hint="use --dtype float32 or --normalize l2")
        tiny = (scale > 0) & (scale < 2.0 ** -25)  # every value rounds to 0 in float16
        if tiny.any():
            raise BadInputError(f"{source}: row {row0 + int(np.flatnonzero(tiny)[0])} underflows float16 "
                                "(every |x| < 3e-8 would be stored as 0)",
                                hint="use --dtype float32 or --normalize l2")
    if vec.dtype == dtype:
        return vec, buffer
    n = vec.size
    if buffer is None or buffer.size < n:
        buffer = np.empty(n, dtype=dtype)
    out = buffer[:n].reshape(vec.shape)  # reused: rows go to disk before the next batch
    np.copyto(out, vec, casting="unsafe")
    return out, buffer


def normalise_ids(ids, n: int, source: str, row0: int, *, id_type: str | None, next_generated: int,
                  extending: bool) -> tuple[np.ndarray, str]:
    """A batch's ids as int64 or str objects (generated from ``next_generated`` when None), and the id type
    they fix (``id_type`` when already known; ``extending``: the pool being appended to has it)."""
    if ids is None:
        if id_type == "string":
            raise BadInputError(f"{source}: no ids given but the pool uses string ids",
                                hint="pass --ids FILE or --id-column")
        return np.arange(next_generated, next_generated + n, dtype=np.int64), id_type or "int64"
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        if ids.null_count:
            r = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
            raise BadInputError(f"{source}: row {row0 + r} has a null id")
        if pa.types.is_integer(ids.type):
            ids = ids.cast(pa.int64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
            ids = np.asarray(ids.to_pylist(), dtype=object)
        else:
            raise BadInputError(f"{source}: ids have type {ids.type}; alq ids are integers or strings")
    ids = np.asarray(ids)
    if len(ids) != n:
        raise BadInputError(f"{source}: {len(ids)} ids for {n} vectors")
    if ids.dtype.kind in "iu":
        kind = "int64"
    elif ids.dtype.kind in "OUS":
        kind = "string"
    else:
        raise BadInputError(f"{source}: ids have dtype {ids.dtype}; alq ids are integers or strings")
    if id_type is None:
        id_type = kind
    if kind != id_type:
        what = "the pool uses" if extending else "earlier input has"
        raise BadInputError(f"{source}: ids are {'integers' if kind == 'int64' else 'strings'} but {what} "
                            f"{'integer' if id_type == 'int64' else 'string'} ids")
    if kind == "int64":
        if ids.dtype.kind == "u" and len(ids) and ids.max() > np.iinfo(np.int64).max:
            raise BadInputError(f"{source}: row {row0 + int(np.argmax(ids))} id does not fit int64")
        return ids.astype(np.int64, copy=False), id_type
    ids = ids.astype(object)
    for r, v in enumerate(ids):
        if not isinstance(v, str):
            if v is None:
                raise BadInputError(f"{source}: row {row0 + r} has a null id")
            ids[r] = v.decode() if isinstance(v, bytes) else str(v)
    return ids, id_type


def conform_columns(columns: pa.Table | None, n: int, source: str, *, schema: pa.Schema | None,
                    has_rows: bool) -> tuple[pa.Table | None, pa.Schema | None]:
    """A batch's metadata columns cast to the pool's ``schema`` (the first batch of a new pool fixes it): (table,
    schema). ``has_rows``: the pool already has rows, so columns can no longer be introduced."""
    if columns is not None and columns.num_columns == 0:
        columns = None
    if schema is None:
        if columns is None:
            return None, None
        if has_rows:
            raise BadInputError(f"{source}: has metadata columns ({', '.join(columns.column_names)}) but the "
                                "pool's earlier rows have none", hint="pass --keep-columns none")
        return columns.replace_schema_metadata(None), columns.schema.remove_metadata()
    given = columns.column_names if columns is not None else []
    unknown = [c for c in given if c not in schema.names]
    if unknown:
        raise BadInputError(f"{source}: metadata column(s) {', '.join(unknown)} are not in the pool (it keeps "
                            f"{', '.join(schema.names)})", hint="pass --keep-columns with the pool's columns")
    arrays = []
    for f in schema:
        if f.name in given:
            try:
                arrays.append(columns.column(f.name).cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise BadInputError(f"{source}: column {f.name!r} has type {columns.schema.field(f.name).type}, "
                                    f"the pool keeps it as {f.type}") from None
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=schema), schema
