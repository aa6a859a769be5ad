"""Synthetic pools: Gaussian-mixture embeddings with known labels, at any scale.

``N`` rows in ``d`` dimensions from ``C`` classes. Each class owns ``modes``
Gaussian components; component centres are i.i.d. normal with scale
``separation / sqrt(2 d)``, so two centres lie about ``separation`` noise
standard deviations apart whatever ``d`` is (unit-variance isotropic noise).
Class priors fall geometrically from the first class to the last with
``max/min = imbalance_ratio``. ``redundancy = K`` makes every distinct point
appear K times (exact duplicates, shuffled within their group of rows),
the setting in which diversity-aware batch selection matters.

Rows are generated in fixed groups, each from its own generator seeded by
``(seed, group)``: output is identical for a given spec whatever the block
size or memory setting, and a pool is written group by group straight into
a :class:`~alq.store.PoolWriter` without ever being whole in memory.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alq.errors import BadInputError
from alq.io import atomic_path
from alq.store.labels import KIND as LABELS_KIND
from alq.store.npyfile import NpyStreamWriter

_GROUP_FLOATS = 1 << 20  # floats generated per group (4 MiB of float32)


@dataclass(frozen=True)
class SynthSpec:
    n: int
    dim: int
    classes: int
    seed: int = 0
    imbalance_ratio: float = 1.0
    redundancy: int = 1
    separation: float = 4.0
    modes: int = 1

    def validate(self) -> None:
        for name, v, lo in (("-n", self.n, 1), ("-d", self.dim, 1), ("-c", self.classes, 1),
                            ("--redundancy", self.redundancy, 1), ("--modes", self.modes, 1)):
            if v < lo:
                raise BadInputError(f"{name}={v} must be >= {lo}")
        if not self.imbalance_ratio >= 1.0:
            raise BadInputError(f"--imbalance-ratio={self.imbalance_ratio} must be >= 1 (max/min class prior)")
        if not self.separation >= 0:
            raise BadInputError(f"--separation={self.separation} must be >= 0")

    @property
    def unique(self) -> int:
        """Distinct points: ceil(n / redundancy)."""
        return -(-self.n // self.redundancy)

    @property
    def group_unique(self) -> int:
        """Distinct points per generation group (depends only on the spec)."""
        return max(1, min(4096, _GROUP_FLOATS // (self.redundancy * self.dim)))


def class_priors(classes: int, imbalance_ratio: float) -> np.ndarray:
    """p_k proportional to R^(-k/(C-1)), so p_0 / p_{C-1} = R; shape (C,), sums to 1."""
    if classes == 1:
        return np.ones(1)
    w = float(imbalance_ratio) ** (-np.arange(classes) / (classes - 1))
    return w / w.sum()


def centres(spec: SynthSpec) -> np.ndarray:
    """Component centres, shape (C * modes, d), float32; class k owns rows k*modes .. k*modes+modes-1."""
    rng = np.random.default_rng([spec.seed, 0])
    scale = spec.separation / math.sqrt(2 * spec.dim)
    return (rng.standard_normal((spec.classes * spec.modes, spec.dim)) * scale).astype(np.float32)


def iter_groups(spec: SynthSpec) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(row0, vectors (m, d) float32, labels (m,) int64)`` in row order, covering all n rows."""
    spec.validate()
    mu = centres(spec)
    cdf = np.cumsum(class_priors(spec.classes, spec.imbalance_ratio))
    cdf[-1] = 1.0
    G, K = spec.group_unique, spec.redundancy
    n_groups = -(-spec.unique // G)
    for g in range(n_groups):
        rng = np.random.default_rng([spec.seed, 1, g])
        u0, u1 = g * G, min((g + 1) * G, spec.unique)
        m = u1 - u0
        row0 = u0 * K
        rows = min(m * K, spec.n - row0)
        y = np.searchsorted(cdf, rng.random(m), side="right").astype(np.int64)
        mode = np.minimum((rng.random(m) * spec.modes).astype(np.int64), spec.modes - 1)
        x = mu[y * spec.modes + mode] + rng.standard_normal((m, spec.dim), dtype=np.float32)
        if K > 1:
            src = np.repeat(np.arange(m), K)[:rows]
            src = src[rng.permutation(rows)]
            x, y = x[src], y[src]
        yield row0, x, y


def synth_arrays(spec: SynthSpec) -> tuple[np.ndarray, np.ndarray]:
    """The whole synthetic set in memory, (x (n, d) float32, y (n,) int64): small specs and tests only."""
    parts = list(iter_groups(spec))
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def _ids(row0: int, rows: int, id_prefix: str | None):
    if id_prefix is None:
        return np.arange(row0, row0 + rows, dtype=np.int64)
    return np.array([f"{id_prefix}{i}" for i in range(row0, row0 + rows)], dtype=object)


def _labels_schema(spec: SynthSpec, id_prefix: str | None) -> pa.Schema:
    meta = {"kind": LABELS_KIND, "multilabel": False, "classes": spec.classes, "synth": asdict(spec)}
    return pa.schema([("id", pa.string() if id_prefix is not None else pa.int64()), ("label", pa.int64())],
                     metadata={f"alq.{k}".encode(): json.dumps(v).encode() for k, v in meta.items()})


def synth_pool(spec: SynthSpec, out: str | Path, *, labels_out: str | Path | None = None, shard_rows: int | None = None,
               dtype: str = "float16", id_prefix: str | None = None, overwrite: bool = False,
               progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Write the synthetic pool (and its true labels) group by group; return a summary."""
    from alq.store.writer import DEFAULT_SHARD_ROWS, PoolWriter

    spec.validate()
    progress = progress or (lambda task, done, total: None)
    with contextlib.ExitStack() as stack:
        lw = None
        if labels_out is not None:
            ltmp = stack.enter_context(atomic_path(labels_out, suffix=".parquet"))
            lw = stack.enter_context(pq.ParquetWriter(ltmp, _labels_schema(spec, id_prefix)))
        writer = stack.enter_context(PoolWriter(out, dtype=dtype, shard_rows=shard_rows or DEFAULT_SHARD_ROWS,
                                                overwrite=overwrite, extra={"synth": asdict(spec)}))
        counts = np.zeros(spec.classes, dtype=np.int64)
        for row0, x, y in iter_groups(spec):
            ids = _ids(row0, len(x), id_prefix)
            writer.add(x, ids, source="synth", source_row0=row0)
            counts += np.bincount(y, minlength=spec.classes)
            if lw is not None:
                lw.write_table(pa.table({"id": pa.array(ids.tolist() if id_prefix is not None else ids),
                                         "label": pa.array(y)}, schema=lw.schema))
            progress("synth", row0 + len(x), spec.n)
        if lw is not None:
            lw.close()
        manifest = writer.close()
    return {"pool": str(out), "labels": str(labels_out) if labels_out else None, "count": manifest.count,
            "dim": manifest.dim, "dtype": manifest.dtype, "shards": len(manifest.shards), **asdict(spec),
            "class_counts": {int(k): int(v) for k, v in enumerate(counts)}, "fingerprint": manifest.fingerprint}


def write_synth_npy(spec: SynthSpec, path: str | Path, *, dtype: str = "float32",
                    labels_path: str | Path | None = None) -> None:
    """The synthetic vectors as one plain .npy (benchmark inputs for alq and peer libraries), streamed."""
    with atomic_path(path, suffix=".npy") as tmp:
        w = NpyStreamWriter(tmp, np.dtype(dtype), spec.dim, spec.n)
        labels = []
        for _, x, y in iter_groups(spec):
            w.write(x.astype(dtype, copy=False))
            if labels_path is not None:
                labels.append(y)
        w.close(sync=True)
    if labels_path is not None:
        with atomic_path(labels_path, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.concatenate(labels))
