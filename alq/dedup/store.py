"""The dedup directory: near-duplicate groups of a pool, aligned with its shards.

Layout::

    DUPS/_dedup.parquet                summary + provenance (a no-row Parquet, record in its metadata) (written last; the whole directory is swapped in)
    DUPS/shard-000000.dedup.parquet    columns id, group (int64), representative (an id), distance (float32),
    ...                                one file per pool shard, same rows in the same order

``group`` is 0..G-1, numbered by the first pool row of each group; a row
without a near duplicate is a group of its own (its own representative, at
distance 0). ``distance`` is the row's distance to its group's
representative (which may exceed the threshold: groups are connected
components of the "closer than T" graph). ``_dedup.parquet`` records the pool
fingerprint and shard checksums (as ``alq cluster`` does), so ``alq select
--dedup`` refuses groups of another pool, or of a pool rows were appended to.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq import __version__
from alq.cluster.knn import prepare
from alq.cluster.store import coverage, pool_label, publish, shard_records
from alq.errors import BadInputError, StaleError
from alq.io import read_parquet, sha256_file, write_parquet

FORMAT = "alq-dedup"
VERSION = 1
SUMMARY = "_dedup.parquet"  # a no-row Parquet sidecar (alq.store.sidecar): the directory scans as a dataset
LEGACY = "_dedup.json"
DESCRIPTION = ("Near-duplicate groups of the pool's embeddings (`alq dedup`): every pair of rows at distance <= "
               "threshold is in one group (connected components). One Parquet per pool shard (columns id, group, "
               "representative, distance; same rows, same order). Used by `alq select --dedup DIR`.")


def shard_file(shard_name: str) -> str:
    return f"{shard_name}.dedup.parquet"


def _summary_path(directory: Path) -> Path:
    """The directory's record: ``_dedup.parquet``, or ``_dedup.json`` in directories written before."""
    path = Path(directory) / SUMMARY
    return path if path.is_file() or not (Path(directory) / LEGACY).is_file() else Path(directory) / LEGACY


def is_dedup_dir(path) -> bool:
    return _summary_path(Path(path)).is_file()


def check_out_dir(out: Path) -> None:
    """Refuse an --out that exists and is something other than a dedup directory (never delete user data)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not is_dedup_dir(out):
        raise BadInputError(f"--out {out}: exists, is not empty and holds no {SUMMARY}; refusing to replace it",
                            hint="choose another --out, or remove that directory")


def _shard_table(pool, s: int, groups, normalize) -> pa.Table:
    lo, hi = int(pool.offsets[s]), int(pool.offsets[s + 1])
    rows = np.arange(lo, hi, dtype=np.int64)
    gid = groups.group_of(rows)
    rep = groups.rep_of(rows)
    dist = np.zeros(len(rows), dtype=np.float32)
    other = np.flatnonzero(rep != rows)
    for c in range(0, len(other), 16_384):
        part = other[c:c + 16_384]
        x = prepare(pool.take(rows[part], dtype=np.float32), normalize).astype(np.float64)
        y = prepare(pool.take(rep[part], dtype=np.float32), normalize).astype(np.float64)
        dist[part] = np.sqrt(((x - y) ** 2).sum(1))
    ids = pool.shard_ids(s)
    rep_ids = ids[rep - lo] if not len(other) else pool.ids(rep)
    id_type = pa.int64() if pool.id_type == "int64" else pa.string()
    return pa.table({"id": pa.array(list(ids) if id_type == pa.string() else ids, type=id_type),
                     "group": pa.array(gid.astype(np.int64)),
                     "representative": pa.array(list(rep_ids) if id_type == pa.string() else rep_ids.astype(np.int64),
                                                type=id_type),
                     "distance": pa.array(dist)})


def _shard_schema(pool) -> pa.Schema:
    id_type = pa.int64() if pool.id_type == "int64" else pa.string()
    return pa.schema([("id", id_type), ("group", pa.int64()), ("representative", id_type),
                      ("distance", pa.float32())])


def write_dedup(pool, out, groups, info: dict, *, normalize_requested, normalize_applied) -> dict:
    """Write the dedup directory atomically (the previous one survives a crash); return its summary."""
    out = Path(out)
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    try:
        shards = []
        for s, rec in enumerate(shard_records(pool)):
            path = build / shard_file(rec["name"])
            write_parquet(path, _shard_table(pool, s, groups, normalize_applied),
                          {"kind": "dedup-shard", "shard": rec["name"], "threshold": info.get("threshold")})
            rec.update(file=path.name, file_sha256=sha256_file(path))
            shards.append(rec)
        summary = {"format": FORMAT, "version": VERSION, "alq_version": __version__,
                   "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   "description": DESCRIPTION, "pool": pool_label(pool), "pool_fingerprint": pool.fingerprint,
                   "pool_rows": int(pool.count), "dim": int(pool.dim), "normalize": normalize_requested,
                   "normalize_applied": normalize_applied, **info, "shards": shards}
        summary["headline"] = headline(summary)
        from alq.store import sidecar

        sidecar.write(build / SUMMARY, summary, _shard_schema(pool))
        publish(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return summary


def headline(s: dict) -> str:
    return (f"{s['duplicate_groups']} near-duplicate groups hold {s['rows_in_duplicate_groups']} of "
            f"{s['pool_rows']} rows ({s['rows_redundant']} redundant, largest group {s['largest_group']}); "
            f"distance <= {s['threshold']:.4g} ({s['threshold_rule']})")


def read_summary(directory) -> dict:
    directory = Path(directory)
    path = _summary_path(directory)
    if not path.is_file():
        raise BadInputError(f"{directory}: no {SUMMARY} (not an alq dedup directory, or `alq dedup` never "
                            f"finished)", hint=f"build it with `alq dedup POOL --out {directory} --auto`")
    from alq.store import sidecar

    summary = sidecar.read(path, what="dedup summary")
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise BadInputError(f"{path}: not an alq dedup summary")
    if summary.get("version") != VERSION:
        raise BadInputError(f"{path}: dedup format version {summary.get('version')} is not supported "
                            f"(this alq reads {VERSION})", hint="re-run `alq dedup`")
    return summary


def load_groups(directory, pool) -> np.ndarray:
    """Group id of every pool row: int64 (pool.count,). Stale or foreign groups are errors naming the fix."""
    directory = Path(directory)
    summary = read_summary(directory)
    state, detail = coverage(summary, pool)
    if state != "current":
        raise StaleError(f"{directory}: near-duplicate groups are stale: {detail}",
                         hint=f"re-run `alq dedup {pool_label(pool)} --out {directory}`")
    parts = []
    for rec in summary["shards"]:
        f = directory / rec["file"]
        if not f.is_file() or sha256_file(f) != rec.get("file_sha256"):
            raise StaleError(f"{f}: missing, or changed since `alq dedup` wrote it",
                             hint=f"re-run `alq dedup {pool_label(pool)} --out {directory}`")
        col = read_parquet(f, columns=["group"]).column("group")
        if len(col) != int(rec["rows"]) or col.null_count:
            raise BadInputError(f"{f}: {len(col)} group ids (or nulls) for shard {rec['name']} of {rec['rows']} rows")
        parts.append(col.to_numpy().astype(np.int64, copy=False))
    return np.concatenate(parts) if parts else np.empty(0, np.int64)
