"""Parquet inputs: a vector column (fixed-size or variable lists of numbers), an optional id column, and
the metadata columns a pool keeps beside its ids (``--keep-columns``).

Read through pyarrow's random-access file (footer, then the column chunks it
needs), local or on ``s3://`` / ``gs://``; one row group in memory at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from alq import fs
from alq.embed.sources.base import ID_NAMES, VECTOR_NAMES, Batch, Source, first_line
from alq.errors import BadInputError


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


class ParquetSource(Source):
    """A Parquet file with a vector column (list<float> or fixed_size_list<float>) and optionally ids."""

    def __init__(self, path: str | Path, *, vector_column: str | None = None, id_column: str | None = None,
                 keep_columns: list[str] | None = None):
        self.path = path
        try:
            # page checksums, where the writer left them (Spark/parquet-mr do), are checked: a flipped byte in
            # a data page is then an error, not a silently different vector
            self.pf = pq.ParquetFile(fs.open_input(path) if fs.is_remote(path) else path,
                                     page_checksum_verification=True)
        except (pa.ArrowException, OSError) as exc:
            raise BadInputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
        schema = self.pf.schema_arrow
        names = schema.names
        if vector_column:
            if vector_column not in names:
                raise BadInputError(f"{path}: no vector column {vector_column!r} (has {', '.join(names)})")
            vcol = vector_column
        else:
            vcol = next((c for c in VECTOR_NAMES if c in names), None)
            if vcol is None:
                lists = [f.name for f in schema if _is_list(f.type)]
                if len(lists) != 1:
                    raise BadInputError(f"{path}: no vector column found (has {', '.join(names)})",
                                        hint="pass --vector-column NAME")
                vcol = lists[0]
        vtype = schema.field(vcol).type
        if not _is_list(vtype) or not (pa.types.is_floating(vtype.value_type) or pa.types.is_integer(vtype.value_type)):
            raise BadInputError(f"{path}: column {vcol!r} has type {vtype}, expected a list of floats")
        if id_column:
            if id_column not in names:
                raise BadInputError(f"{path}: no id column {id_column!r} (has {', '.join(names)})")
            icol = id_column
        else:
            icol = next((c for c in ID_NAMES if c in names), None) or _id_like_column(schema, path)
        if icol is not None:
            itype = schema.field(icol).type
            if not (pa.types.is_integer(itype) or pa.types.is_string(itype) or pa.types.is_large_string(itype)):
                raise BadInputError(f"{path}: id column {icol!r} has type {itype}; alq ids are integers or strings")
        self.vcol, self.icol = vcol, icol
        self.keep = _kept_columns(schema, exclude=(vcol, icol), wanted=keep_columns, path=path)
        self.has_ids = icol is not None
        self.rows = int(self.pf.metadata.num_rows)
        # a variable-length list column's dim is only known once read; the guess only sizes blocks
        self.dim = int(vtype.list_size) if pa.types.is_fixed_size_list(vtype) else None
        self.dim_hint = self.dim or self._guess_dim()
        self.value_bytes = max(1, vtype.value_type.bit_width // 8)

    def _guess_dim(self) -> int | None:
        md = self.pf.metadata
        if md.num_row_groups == 0 or md.row_group(0).num_rows == 0:
            return None
        idx = self.pf.schema_arrow.get_field_index(self.vcol)
        rg = md.row_group(0)
        for c in range(rg.num_columns):
            if rg.column(c).path_in_schema.split(".")[0] == self.pf.schema_arrow.names[idx]:
                return max(1, rg.column(c).num_values // rg.num_rows)
        return None

    def row_bytes(self) -> int:
        return (self.dim_hint or 1024) * self.value_bytes

    def columns_schema(self) -> pa.Schema | None:
        """The schema of the metadata columns this source keeps (None when it keeps none)."""
        if not self.keep:
            return None
        return pa.schema([self.pf.schema_arrow.field(c) for c in self.keep]).remove_metadata()

    def batches(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        cols = [self.vcol] + ([self.icol] if self.icol else []) + self.keep
        stop = self.rows if stop is None else min(stop, self.rows)
        md = self.pf.metadata
        bounds = np.cumsum([0] + [md.row_group(g).num_rows for g in range(md.num_row_groups)])
        groups = [g for g in range(md.num_row_groups) if bounds[g + 1] > start and bounds[g] < stop]
        if not groups:
            return
        r = int(bounds[groups[0]])
        # threads decode column chunks in parallel (nested list columns are the slow part of Parquet)
        it = self.pf.iter_batches(batch_size=block_rows, columns=cols, use_threads=True, row_groups=groups)
        while r < stop:
            try:
                rb = next(it)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as exc:
                raise BadInputError(f"{self.path}: unreadable near row {max(r, start)} ({first_line(exc)})") from None
            if r + rb.num_rows <= start:
                r += rb.num_rows
                continue
            if r < start or r + rb.num_rows > stop:  # the first and last row groups overlap the range's ends
                a = max(start - r, 0)
                rb, r = rb.slice(a, min(stop - r, rb.num_rows) - a), r + a
                if rb.num_rows == 0:
                    continue
            vectors = self._vectors(rb.column(0), r)
            ids = rb.column(1) if self.icol else None
            meta = None
            if self.keep:
                first = 2 if self.icol else 1
                meta = pa.Table.from_batches([rb.select(list(range(first, first + len(self.keep))))])
            yield Batch(vectors, ids, r, self.name, meta)
            r += rb.num_rows

    def _vectors(self, col: pa.Array, row0: int) -> np.ndarray:
        n = len(col)
        if col.null_count:
            r = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise BadInputError(f"{self.path}: row {row0 + r}: vector is null")
        if pa.types.is_fixed_size_list(col.type):
            d = col.type.list_size
        else:
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            d = int(lengths[0]) if n else 0
            bad = np.flatnonzero(lengths != d)
            if bad.size:
                r = int(bad[0])
                raise BadInputError(f"{self.path}: row {row0 + r}: vector has {lengths[r]} values, "
                                    f"row {row0} has {d} (ragged vectors)")
        flat = pc.list_flatten(col)
        if flat.null_count:
            i = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0])
            raise BadInputError(f"{self.path}: row {row0 + i // max(d, 1)}: vector has a null value")
        if d == 0:
            raise BadInputError(f"{self.path}: row {row0}: vector is empty")
        return flat.to_numpy(zero_copy_only=False).reshape(n, d)


def _id_like_column(schema: pa.Schema, path) -> str | None:
    """``image_id``, ``sample_id``...: the one integer or string column named like an id (Hugging Face exports).

    None when there is none (ids are then generated); several are refused, since guessing would be silent.
    """
    like = [f.name for f in schema if f.name.lower().endswith(("_id", "_ids"))
            and (pa.types.is_integer(f.type) or pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]
    if len(like) > 1:
        raise BadInputError(f"{path}: no `id` column, and several columns look like ids ({', '.join(like)})",
                            hint="pass --id-column NAME")
    return like[0] if like else None


def _is_plain(t: pa.DataType) -> bool:
    """Columns kept by default: scalars a table join or an annotation tool can use (not bytes, lists, structs)."""
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
            or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t)
            or pa.types.is_decimal(t) or pa.types.is_dictionary(t))


def _kept_columns(schema: pa.Schema, *, exclude, wanted: list[str] | None, path) -> list[str]:
    """Metadata columns to keep: ``wanted`` (``--keep-columns``), or by default every plain scalar column."""
    rest = [f.name for f in schema if f.name not in exclude]
    if wanted is None:
        return [c for c in rest if _is_plain(schema.field(c).type)]
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        raise BadInputError(f"{path}: --keep-columns names {', '.join(missing)}, not in the file "
                            f"(has {', '.join(schema.names)})")
    return [c for c in wanted if c not in exclude]
