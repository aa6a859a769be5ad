"""Pool transforms for experiments: per-class caps, imbalance, redundancy.

Each transform decides, from the labels alone, how many times every input
row appears in the output (0 = dropped, 1 = kept, K = kept plus K-1
copies); one streamed pass over the input then writes a NEW pool store and
a new labels file. The input pool and labels are never modified.

Applied in this order when combined:

1. ``per_class_cap`` N: each class keeps at most N random rows (DISTIL P6).
2. ``imbalance_ratio`` R: class sizes decay exponentially from the largest
   class to the smallest, n_j = round(M * R^(-j/(C-1))) for the class of
   rank j (BASE setting B; the long-tailed CIFAR construction). M defaults
   to the largest size every class can supply (a multiple of R for integer R).
3. ``redundancy`` K: a fixed, class-stratified set of ``unique_rows`` rows
   is kept once; a disjoint stratified set of floor((n_c - u_c)/K) rows per
   class appears K times each (DISTIL Sec. 4.4: the pool keeps about its
   size and its class ratios while its information shrinks). Copies may
   get Gaussian noise of ``noise`` x the pool's per-coordinate standard
   deviation (DISTIL App. D's near-duplicates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq import fs
from alq.errors import BadInputError, MissingFeatureError
from alq.io import write_parquet
from alq.simulate.oracle import RowLabels, row_labels
from alq.simulate.rundir import derive_seed
from alq.staging import shown
from alq.store import Pool, open_pool
from alq.store.labels import read_labels
from alq.store.writer import PoolWriter

CLASS_ORDERS = ("sorted", "random", "size")
NOISE_BLOCK = 4096  # fixed block so copies' noise does not depend on ALQ_WORKING_MEMORY


@dataclass
class TransformSpec:
    per_class_cap: int | None = None
    imbalance_ratio: float | None = None
    max_class_size: int | None = None  # M of the imbalance decay (default: the largest feasible)
    class_order: str = "sorted"  # which class is largest: sorted class order, random, or by current size
    redundancy: int | None = None  # K: copies of each duplicated row
    unique_rows: int | None = None  # rows kept once (default: 10% of the rows)
    noise: float = 0.0  # std of the noise on copies, relative to the pool's per-coordinate std
    seed: int = 0

    def check(self) -> None:
        if (self.unique_rows is not None or self.noise) and self.redundancy is None:
            raise BadInputError("--unique-rows and --noise need --redundancy")
        if self.per_class_cap is None and self.imbalance_ratio is None and self.redundancy is None:
            raise BadInputError("nothing to do: give --per-class-cap, --imbalance-ratio and/or --redundancy")
        if self.per_class_cap is not None and self.per_class_cap < 1:
            raise BadInputError(f"--per-class-cap={self.per_class_cap} must be >= 1")
        if self.imbalance_ratio is not None and not self.imbalance_ratio >= 1:
            raise BadInputError(f"--imbalance-ratio={self.imbalance_ratio} must be >= 1")
        if self.max_class_size is not None and (self.imbalance_ratio is None or self.max_class_size < 1):
            raise BadInputError("--max-class-size needs --imbalance-ratio and must be >= 1")
        if self.class_order not in CLASS_ORDERS:
            raise BadInputError(f"--class-order={self.class_order!r} must be one of {', '.join(CLASS_ORDERS)}")
        if self.redundancy is not None and self.redundancy < 2:
            raise BadInputError(f"--redundancy={self.redundancy} must be >= 2 (copies of each duplicated row)")
        if self.unique_rows is not None and self.unique_rows < 0:
            raise BadInputError(f"--unique-rows={self.unique_rows} must be >= 0")
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise BadInputError(f"--noise={self.noise} must be a finite number >= 0")


# -- planning (labels only) ----------------------------------------------------------------------
def imbalance_sizes(available: np.ndarray, ratio: float, order: np.ndarray, max_size: int | None = None) -> np.ndarray:
    """Target size per class: round(M * ratio^(-rank/(C-1))), rank = position of the class in ``order``.

    available : int (C,) rows per class; order : class indices, largest first.
    M defaults to the largest value every class can supply (rounded down to
    a multiple of R when R is an integer, so that max/min is exactly R).
    """
    c = len(available)
    rank = np.empty(c, dtype=np.int64)
    rank[order] = np.arange(c)
    decay = ratio ** (-rank / max(c - 1, 1))
    if max_size is None:
        max_size = int(math.floor(float(np.min(available / decay)) + 1e-9))
        if float(ratio).is_integer() and max_size >= ratio:  # a multiple of R: max/min is then exactly R
            max_size -= max_size % int(ratio)
    sizes = np.floor(max_size * decay + 0.5).astype(np.int64)
    short = np.flatnonzero(sizes > available)
    if short.size:
        k = int(short[0])
        raise BadInputError(f"--max-class-size={max_size} with --imbalance-ratio={ratio:g} needs {sizes[k]} rows of "
                            f"class index {k} but the pool has {available[k]}")
    if (sizes < 1).any():
        raise BadInputError(f"--imbalance-ratio={ratio:g} leaves the smallest class with no row "
                            f"(largest class {max_size} rows)", hint="lower the ratio or raise --max-class-size")
    return sizes


def _sample(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.permutation(rows)[:n]) if n < len(rows) else rows


def _stratified(total: int, sizes: np.ndarray) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``sizes`` (largest remainders; ties to lower index)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.sum() == 0:
        return np.zeros_like(sizes)
    exact = total * sizes / sizes.sum()
    base = np.floor(exact).astype(np.int64)
    rest = total - int(base.sum())
    if rest > 0:
        extra = np.lexsort((np.arange(len(sizes)), -(exact - base)))[:rest]
        base[extra] += 1
    return np.minimum(base, sizes)


def plan_copies(truth: RowLabels, spec: TransformSpec) -> tuple[np.ndarray, dict]:
    """How many times each input row appears in the output, int64 (N,), plus a summary."""
    spec.check()
    n = len(truth)
    rng = np.random.default_rng(derive_seed(spec.seed, "transform"))
    keep = np.ones(n, dtype=bool)
    info: dict = {}
    if truth.multilabel and (spec.per_class_cap is not None or spec.imbalance_ratio is not None):
        raise MissingFeatureError("--per-class-cap and --imbalance-ratio need single-label pools "
                                  "(class sizes are not defined for multi-label rows)")
    if spec.per_class_cap is not None:
        for rows in truth.class_members():
            if len(rows) > spec.per_class_cap:
                keep[rows] = False
                keep[_sample(rows, spec.per_class_cap, rng)] = True
    if spec.imbalance_ratio is not None:
        members = [rows[keep[rows]] for rows in truth.class_members()]
        available = np.array([len(r) for r in members], dtype=np.int64)
        present = np.flatnonzero(available > 0)
        if len(present) < 2:
            raise BadInputError("--imbalance-ratio needs at least 2 classes with rows")
        if spec.class_order == "random":
            order = rng.permutation(present)
        elif spec.class_order == "size":
            order = present[np.lexsort((present, -available[present]))]
        else:
            order = present
        sizes = np.zeros(len(available), dtype=np.int64)
        sizes[present] = imbalance_sizes(available[present], spec.imbalance_ratio,
                                         np.searchsorted(present, order), spec.max_class_size)
        for c, rows in enumerate(members):
            if len(rows) > sizes[c]:
                keep[rows] = False
                keep[_sample(rows, int(sizes[c]), rng)] = True
        info["imbalance_order"] = [truth.classes[c] for c in order.tolist()]
    copies = keep.astype(np.int64)
    if spec.redundancy is not None:
        k = int(spec.redundancy)
        groups = [rows[keep[rows]] for rows in truth.class_members()] if not truth.multilabel \
            else [np.flatnonzero(keep)]
        sizes = np.array([len(g) for g in groups], dtype=np.int64)
        n_unique = int(round(0.1 * sizes.sum())) if spec.unique_rows is None else int(spec.unique_rows)
        if n_unique > sizes.sum():
            raise BadInputError(f"--unique-rows={n_unique} exceeds the {int(sizes.sum())} rows available")
        unique = _stratified(n_unique, sizes)
        copies[:] = 0
        for g, u in zip(groups, unique):
            perm = rng.permutation(g)
            m = (len(g) - int(u)) // k
            copies[perm[:u]] = 1
            copies[perm[u:u + m]] = k
        if not (copies == k).any():  # a pool without one duplicated row is not the experiment asked for
            room = int(max((len(g) - int(u) for g, u in zip(groups, unique)), default=0))
            raise BadInputError(f"--redundancy={k} duplicates no row: a class needs at least {k} rows beyond its "
                                f"--unique-rows share, and the largest has {room}",
                                hint=f"use --redundancy {max(2, room)} or less, or lower --unique-rows")
        info.update(unique_rows=int((copies == 1).sum()), duplicated_rows=int((copies == k).sum()), copies=k)
    return copies, info


# -- writing (one streamed pass) -----------------------------------------------------------------
def _coordinate_std(pool: Pool) -> float:
    """sqrt(mean over coordinates of the per-coordinate variance), streamed."""
    s = np.zeros(pool.dim)
    ss = np.zeros(pool.dim)
    for block in pool.iter_blocks():
        v = block.vectors.astype(np.float64)
        s += v.sum(axis=0)
        ss += (v * v).sum(axis=0)
    mean = s / max(pool.count, 1)
    var = np.maximum(ss / max(pool.count, 1) - mean * mean, 0.0)
    return float(math.sqrt(var.mean()))


def transform_pool(pool_path: str | Path, labels_path: str | Path, out: str | Path, labels_out: str | Path,
                   spec: TransformSpec, *, shard_rows: int | None = None, overwrite: bool = False,
                   progress=None) -> dict:
    """Write the transformed pool to ``out`` and its labels to ``labels_out``; return a summary."""
    spec.check()
    # pools may be URIs (read and written by the store directly); the labels files are local (staged)
    pool_path, out = fs.normalize(pool_path), fs.normalize(out)
    labels_path, labels_out = Path(labels_path), Path(labels_out)
    if _same(out, pool_path):
        raise BadInputError(f"--out {out} is the input pool; transforms never modify their input")
    if labels_out.resolve() == labels_path.resolve():
        raise BadInputError(f"--labels-out {labels_out} is the input labels file; transforms never modify their input")
    if labels_out.exists() and not overwrite:
        raise BadInputError(f"{labels_out}: already exists", hint="pass --overwrite to replace it")
    pool = open_pool(pool_path)
    lab = read_labels(labels_path)
    classes = lab.classes
    truth, _ = row_labels(pool, lab, classes, source=str(labels_path), require_all=True)
    copies, info = plan_copies(truth, spec)
    if copies.sum() == 0:
        raise BadInputError("the transform leaves no rows")
    sigma = spec.noise * _coordinate_std(pool) if spec.noise else 0.0
    next_id = None
    if pool.id_type == "int64":
        next_id = max(int(pool.shard_ids(s).max()) for s in range(pool.n_shards) if pool.shard_rows[s]) + 1
    writer = PoolWriter(out, dim=pool.dim, dtype=str(pool.dtype), normalize=pool.normalize,
                        shard_rows=shard_rows or max(pool.shard_rows), overwrite=overwrite, id_type=pool.id_type)
    out_ids, out_src, out_rows = [], [], []
    total, done = int(copies.sum()), 0
    with writer:
        for block in pool.iter_blocks(block_rows=NOISE_BLOCK):
            c = copies[block.start:block.stop]
            sel = np.flatnonzero(c > 0)
            if sel.size == 0:
                continue
            reps = c[sel]
            vec = np.repeat(np.asarray(block.vectors[sel], dtype=np.float32), reps, axis=0)
            src_rows = np.repeat(block.start + sel, reps)
            first = np.r_[0, np.cumsum(reps)[:-1]]
            copy_no = np.arange(len(vec)) - np.repeat(first, reps)  # 0 = the original row
            is_copy = copy_no > 0
            src_ids = pool.ids(src_rows)
            if pool.id_type == "int64":
                ids = src_ids.astype(np.int64).copy()
                n_new = int(is_copy.sum())
                ids[is_copy] = np.arange(next_id, next_id + n_new, dtype=np.int64)
                next_id += n_new
            else:
                ids = np.array([s if j == 0 else f"{s}~dup{j}" for s, j in zip(src_ids.tolist(), copy_no.tolist())],
                               dtype=object)
            if sigma and is_copy.any():
                rng = np.random.default_rng(derive_seed(spec.seed, "noise", block.start))
                vec[is_copy] += rng.normal(scale=sigma, size=(int(is_copy.sum()), pool.dim)).astype(np.float32)
            writer.add(vec, ids, source=str(pool_path), source_row0=block.start)
            out_ids.append(ids)
            out_src.append(src_ids)
            out_rows.append(src_rows)
            done += len(vec)
            if progress is not None:
                progress("transform", done, total)
        manifest = writer.close()
    rows = np.concatenate(out_rows)
    ids = np.concatenate(out_ids)
    src = np.concatenate(out_src)
    table = _labels_table(ids, src, truth, rows, pool.id_type)
    before = truth.counts(np.arange(len(truth)))
    after = truth.counts(rows)
    meta = {"kind": "labels", "multilabel": truth.multilabel, "classes": len(classes),
            "transform": {k: v for k, v in vars(spec).items() if v is not None}, "source_pool": str(pool_path),
            "source_pool_fingerprint": pool.fingerprint, "source_labels": shown(labels_path)}
    write_parquet(labels_out, table, meta)
    return {"pool": str(out), "labels": str(labels_out), "rows_in": pool.count, "rows_out": int(manifest.count),
            "distinct_source_rows": int((copies > 0).sum()),
            "class_sizes_in": {str(c): int(n) for c, n in zip(classes, before)},
            "class_sizes_out": {str(c): int(n) for c, n in zip(classes, after)},
            "noise_std": sigma, **info, "spec": {k: v for k, v in vars(spec).items() if v is not None}}


def _same(a, b) -> bool:
    """One location, two spellings? (URIs compare as normalised strings)."""
    if fs.is_remote(a) or fs.is_remote(b):
        return str(a) == str(b)
    return Path(a).resolve() == Path(b).resolve()


def _labels_table(ids: np.ndarray, src: np.ndarray, truth: RowLabels, rows: np.ndarray, id_type: str) -> pa.Table:
    id_t = pa.int64() if id_type == "int64" else pa.string()
    labels = truth.labels_of(rows)
    if truth.multilabel:
        flat = [c for r in labels for c in r]
        scalar = pa.int64() if flat and all(isinstance(c, int) for c in flat) else pa.string()
        lab = pa.array([list(r) for r in labels], type=pa.list_(scalar))
    else:
        scalar = pa.int64() if all(isinstance(c, int) for c in labels) else pa.string()
        lab = pa.array(labels, type=scalar)
    return pa.table({"id": pa.array(ids.tolist(), type=id_t), "label": lab,
                     "source_id": pa.array(src.tolist(), type=id_t)})
