"""Input readers for ``alq embed``: each streams (vectors, ids) in bounded blocks.

Formats: ``.npy`` (2-D vectors, or raw encoder inputs of any shape),
``.npz`` (a vector array + an optional id array), Parquet (a vector column
of fixed-size or variable lists of floats + an optional id column), and an
existing pool directory. Every reader knows its row count before reading,
so progress has a total and an ids file can be checked up front; none
holds more than one block (or one Parquet row group) in memory.

Inputs may be ``s3://`` / ``gs://`` URIs, read in place: .npy and stored
.npz arrays by header + positioned range reads (:mod:`alq.embed.ranged`),
deflated .npz members streamed through the zip, Parquet through pyarrow's
random-access file (footer, then the column chunks it needs). Every reader
can also start at any row (``batches(block, start, stop)``), which is what a
Ray task encoding one slice of the inputs needs.
"""

from __future__ import annotations

import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from alq import fs
from alq.embed.ranged import stored_member_offset
from alq.errors import BadInputError
from alq.store.npyfile import (
    ArrayAt,
    iter_npy_rows,
    npy_file,
    npy_header_at,
    npy_info,
    open_file,
    read_npy_header,
)
from alq.store.readers import is_parquet, iter_text_ids, scan_text_ids

VECTOR_NAMES = ("embedding", "embeddings", "vector", "vectors", "emb", "features", "x")
ID_NAMES = ("id", "ids")
SUFFIXES = (".npy", ".npz", ".parquet", ".pq")


@dataclass
class Batch:
    """Rows ``row0 .. row0+len(vectors)`` of ``source``."""

    vectors: np.ndarray  # (n, dim) vectors, or (n, ...) raw encoder inputs
    ids: np.ndarray | pa.Array | None  # None: generate
    row0: int
    source: str
    columns: pa.Table | None = None  # metadata columns of the same rows (Parquet inputs)


class Source(ABC):
    path: str | Path  # as given: a local path or a URI
    rows: int
    dim: int | None  # None where unknown before reading (variable-length lists)
    has_ids: bool

    @property
    def name(self) -> str:
        return str(self.path)

    @abstractmethod
    def batches(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        """Yield consecutive batches of at most ``block_rows`` rows, covering rows [start, stop).

        A batch's arrays may be overwritten by the next one: consume it first.
        """

    def row_bytes(self) -> int:
        """Bytes one input row occupies in memory (for block sizing)."""
        return 4 * (self.dim or 1024)


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip()
    return s.splitlines()[0][:200] if s else type(exc).__name__


# -- .npy ---------------------------------------------------------------------
class NpySource(Source):
    """A .npy array: (rows, dim) vectors, or (rows, ...) raw inputs when ``raw``."""

    has_ids = False

    def __init__(self, path: str | Path, *, raw: bool = False):
        self.path = path
        with open_file(path) as fh:  # reopened per read: a directory of many inputs holds no descriptors
            self.info: ArrayAt = npy_file(fh, source=str(path))
        shape, dtype = self.info.shape, self.info.dtype
        if len(shape) == 0:
            raise BadInputError(f"{path}: holds a scalar, not an array of rows")
        if not raw and len(shape) != 2:
            raise BadInputError(f"{path}: vectors must be 2-D (rows, dim), got shape {shape}",
                                hint="raw inputs need --encoder")
        if not raw and shape[1] == 0:
            raise BadInputError(f"{path}: vectors have 0 columns (shape {shape}); a pool needs dimension >= 1")
        if dtype.kind not in ("fiub" if raw else "fiu"):
            raise BadInputError(f"{path}: dtype {dtype} is not numeric")
        self.rows = int(shape[0])
        self.dim = int(shape[1]) if len(shape) == 2 else None
        self.raw = raw

    def row_bytes(self) -> int:
        return self.info.row_bytes

    def batches(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        # one reused buffer: embed consumes each batch before asking for the next
        with open_file(self.path) as fh:
            for r, block in self.info.blocks(fh, block_rows, start, stop, reuse=True):
                yield Batch(block, None, r, self.name)


# -- .npz ---------------------------------------------------------------------
class _NpzMember:
    """One array inside an .npz (stored or deflated), read row block by row block."""

    def __init__(self, zf: zipfile.ZipFile, key: str, source: str):
        self.zf, self.key, self.source = zf, key, source
        with zf.open(f"{key}.npy") as fh:
            self.shape, self.dtype, fortran = read_npy_header(fh, source=f"{source}[{key}]")
        if self.dtype.hasobject:
            raise BadInputError(f"{source}[{key}]: holds Python objects; alq reads numeric arrays only")
        if fortran and len(self.shape) > 1:
            raise BadInputError(f"{source}[{key}]: array is in Fortran order")
        # an uncompressed member (np.savez) is read in place from any row; a deflated one is streamed
        self.at: ArrayAt | None = None
        info = zf.getinfo(f"{key}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            base = stored_member_offset(zf.fp, info.header_offset, source=source)
            at = npy_header_at(zf.fp, base, source=f"{source}[{key}]")
            if at.offset - base + (at.rows * at.row_bytes if at.shape else at.dtype.itemsize) <= info.file_size:
                self.at = at

    @property
    def rows(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    def iter_rows(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.rows if stop is None else min(stop, self.rows)
        if self.at is not None:
            for _, block in self.at.blocks(self.zf.fp, block_rows, start, stop):
                yield block
            return
        items = int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1
        with self.zf.open(f"{self.key}.npy") as fh:
            read_npy_header(fh, source=self.source)
            r = 0
            while r < start:  # a deflated member has no row offsets: read through, one block at a time
                n = min(block_rows, start - r)
                if len(fh.read(n * items * self.dtype.itemsize)) != n * items * self.dtype.itemsize:
                    raise BadInputError(f"{self.source}[{self.key}]: truncated before row {start}")
                r += n
            while r < stop:
                n = min(block_rows, stop - r)
                want = n * items * self.dtype.itemsize
                try:
                    buf = fh.read(want)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise BadInputError(f"{self.source}[{self.key}]: unreadable at row {r} ({_first_line(exc)})") from None
                if len(buf) != want:
                    raise BadInputError(f"{self.source}[{self.key}]: truncated at row {r + len(buf) // max(1, items * self.dtype.itemsize)}")
                yield np.frombuffer(buf, dtype=self.dtype).reshape((n, *self.shape[1:]))
                r += n


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


class NpzSource(Source):
    """An .npz with a vector array (``--vector-column`` names its key) and optionally ids."""

    def __init__(self, path: str | Path, *, vector_key: str | None = None, id_key: str | None = None,
                 raw: bool = False):
        self.path = path
        try:
            self.zf = zipfile.ZipFile(open_file(path))  # a remote object: zip directory and members by range reads
        except (zipfile.BadZipFile, OSError) as exc:
            raise BadInputError(f"{path}: not a readable .npz file ({_first_line(exc)})") from None
        keys = [n[:-4] for n in self.zf.namelist() if n.endswith(".npy")]
        if not keys:
            raise BadInputError(f"{path}: .npz holds no arrays")
        vkey = vector_key if vector_key in keys else None
        if vector_key and vkey is None:
            raise BadInputError(f"{path}: no array {vector_key!r} (has {', '.join(keys)})")
        if vkey is None:
            vkey = next((k for k in VECTOR_NAMES if k in keys), None)
        members = {}
        if vkey is None:
            arrays = [k for k in keys if k not in ID_NAMES and k != id_key]
            if len(arrays) == 1:
                vkey = arrays[0]
            else:
                raise BadInputError(f"{path}: cannot tell which array holds the vectors (has {', '.join(keys)})",
                                    hint="pass --vector-column KEY")
        self.vec = members[vkey] = _NpzMember(self.zf, vkey, str(path))
        if not raw and len(self.vec.shape) != 2:
            raise BadInputError(f"{path}[{vkey}]: vectors must be 2-D (rows, dim), got shape {self.vec.shape}",
                                hint="raw inputs need --encoder")
        if self.vec.dtype.kind not in "fiub":
            raise BadInputError(f"{path}[{vkey}]: dtype {self.vec.dtype} is not numeric")
        ikey = id_key if id_key in keys else None
        if id_key and ikey is None:
            raise BadInputError(f"{path}: no id array {id_key!r} (has {', '.join(keys)})")
        if ikey is None:
            ikey = next((k for k in ID_NAMES if k in keys), None)
        self.ids = _NpzMember(self.zf, ikey, str(path)) if ikey else None
        if self.ids is not None:
            if len(self.ids.shape) != 1:
                raise BadInputError(f"{path}[{ikey}]: ids must be 1-D, got shape {self.ids.shape}")
            if self.ids.rows != self.vec.rows:
                raise BadInputError(f"{path}: {self.ids.rows} ids for {self.vec.rows} vectors")
            if self.ids.dtype.kind not in "iuUS":
                raise BadInputError(f"{path}[{ikey}]: ids have dtype {self.ids.dtype}; alq ids are integers or strings")
        self.has_ids = self.ids is not None
        self.rows = self.vec.rows
        self.dim = int(self.vec.shape[1]) if len(self.vec.shape) == 2 else None

    def row_bytes(self) -> int:
        return int(np.prod(self.vec.shape[1:], dtype=np.int64)) * self.vec.dtype.itemsize

    def batches(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        id_iter = self.ids.iter_rows(block_rows, start, stop) if self.ids is not None else None
        r = start
        for block in self.vec.iter_rows(block_rows, start, stop):
            ids = next(id_iter) if id_iter is not None else None
            if ids is not None and ids.dtype.kind in "US":
                ids = ids.astype(str).astype(object)
            yield Batch(block, ids, r, self.name)
            r += len(block)


# -- Parquet ------------------------------------------------------------------
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
            raise BadInputError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
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
                raise BadInputError(f"{self.path}: unreadable near row {max(r, start)} ({_first_line(exc)})") from None
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


# -- an existing pool ---------------------------------------------------------
class PoolSource(Source):
    """Another pool directory: copy (or convert the dtype of) its rows and ids."""

    has_ids = True

    def __init__(self, path: str | Path):
        from alq.store import open_pool

        self.path = path
        self.pool = open_pool(path)
        self.rows = self.pool.count
        self.dim = self.pool.dim

    def row_bytes(self) -> int:
        return self.pool.dim * self.pool.dtype.itemsize

    def batches(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        stop = self.rows if stop is None else min(stop, self.rows)
        for s in range(self.pool.n_shards):
            off, end = int(self.pool.offsets[s]), int(self.pool.offsets[s + 1])
            if end <= start or off >= stop:
                continue
            vecs = self.pool.shard_vectors(s)
            ids = self.pool.shard_ids(s)
            for a in range(max(start - off, 0), min(stop, end) - off, block_rows):
                b = min(a + block_rows, min(stop, end) - off)
                yield Batch(np.asarray(vecs[a:b]), ids[a:b], off + a, f"{self.path}/{self.pool.manifest.shards[s].npy}")


# -- opening inputs -----------------------------------------------------------
def _suffix(path) -> str:
    name = fs.name_of(path)
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


def expand_inputs(inputs: list) -> list:
    """Files, directories and URI prefixes -> the input files (directories: supported files, sorted).

    Local inputs come back as Paths, remote ones as URI strings (as typed, for
    error lines; files found under a prefix as ``prefix/name``).
    """
    from alq.store.manifest import is_pool

    out: list = []
    for p in inputs:
        remote = fs.is_remote(p)
        p = str(p) if remote else Path(p)
        kind = fs.file_type(p)
        if kind == "missing":
            raise BadInputError(f"{p}: input not found")
        if kind == "dir" and not is_pool(p):
            names = sorted(n for n in fs.listdir(p) if _suffix(n) in SUFFIXES and not n.startswith("."))
            if not names:
                raise BadInputError(f"{p}: directory holds no {'/'.join(SUFFIXES)} files")
            out.extend(fs.join(p, n) if remote else p / n for n in names)
        else:
            out.append(p)
    seen: dict = {}
    for p in out:
        key = fs.normalize(p) if fs.is_remote(p) else p.resolve()
        if key in seen:
            raise BadInputError(f"{p}: input given twice")
        seen[key] = p
    if not out:
        raise BadInputError("no inputs given")
    return out


def open_source(path, *, vector_column: str | None = None, id_column: str | None = None,
                raw: bool = False, keep_columns: list[str] | None = None) -> Source:
    if fs.file_type(path) == "dir":
        if raw:
            raise BadInputError(f"{path}: a pool directory holds embeddings, not raw inputs for --encoder")
        return PoolSource(path)
    suffix = _suffix(path)
    if suffix == ".npy":
        return NpySource(path, raw=raw)
    if suffix == ".npz":
        return NpzSource(path, vector_key=vector_column, id_key=id_column, raw=raw)
    if suffix in (".parquet", ".pq"):
        if raw:
            raise BadInputError(f"{path}: --encoder reads raw inputs from .npy or .npz files")
        return ParquetSource(path, vector_column=vector_column, id_column=id_column, keep_columns=keep_columns)
    raise BadInputError(f"{path}: unsupported input type {suffix or '(no suffix)'} (use .npy, .npz, .parquet)")


# -- a separate ids file ------------------------------------------------------
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
                raise BadInputError(f"{self.path}: not a readable Parquet file ({_first_line(exc)})") from None
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
