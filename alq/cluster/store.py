"""The cluster directory: one cluster id per pool row, aligned with the pool's shards.

Layout::

    DIR/_clusters.parquet                summary + provenance (written last, atomically): no rows, the
                                         summary JSON in its metadata (alq.store.sidecar; older runs:
                                         _clusters.json or clusters.json, still read)
    DIR/shard-000000.clusters.parquet    columns ``id`` (the pool id) and ``cluster`` (int64),
    DIR/shard-000001.clusters.parquet    one file per pool shard, same rows in the same order
    ...

The summary records the pool fingerprint and every covered pool shard
(name, rows, checksums), so :func:`load_clusters` can tell "rows were
appended since" (run ``alq cluster POOL --update --out DIR``) from "the pool
changed under the clustering" (re-cluster). Cluster ids are 0..K-1,
numbered by the first pool row of each cluster; rows added by ``--update``
take their nearest clustered neighbour's id, so ids never change.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq import fs
from alq.errors import BadInputError, StaleError
from alq.io import (
    read_parquet,
    read_parquet_schema,
    replace_dir,
    restore_moved_aside,
    sha256_file,
    write_parquet,
)

FORMAT = "alq-clusters"
VERSION = 1
SUMMARY = "_clusters.parquet"  # no rows of the shards' columns: polars/duckdb read the directory, pyarrow skips it
LEGACY_SUMMARIES = ("_clusters.json", "clusters.json")  # written before; still read, replaced on the next write
LEGACY_SUMMARY = LEGACY_SUMMARIES[-1]


def shard_file(shard_name: str) -> str:
    return f"{shard_name}.clusters.parquet"


def shard_records(pool) -> list[dict]:
    """What identifies each pool shard: name, rows, checksums (from the manifest when on disk)."""
    manifest = getattr(pool, "manifest", None)
    if manifest is not None:
        return [{"name": s.name, "rows": s.rows, "sha256": s.sha256, "ids_sha256": s.ids_sha256}
                for s in manifest.shards]
    out = []
    for s in range(pool.n_shards):  # in-memory pools: hash the virtual shards
        v = np.ascontiguousarray(pool.shard_vectors(s))
        ids = pool.shard_ids(s)
        out.append({"name": f"shard-{s:06d}", "rows": int(len(v)), "sha256": hashlib.sha256(v.tobytes()).hexdigest(),
                    "ids_sha256": hashlib.sha256(repr(ids.tolist()).encode()).hexdigest()})
    return out


def pool_label(pool) -> str:
    path = getattr(pool, "path", None)
    return str(path) if path is not None else "POOL"


def write_shard(directory: Path, shard_name: str, ids: np.ndarray, labels: np.ndarray, *, id_type: str,
                how: str) -> dict:
    """Write one shard's cluster ids atomically; return its record for the summary."""
    id_arr = pa.array(ids, type=pa.int64()) if id_type == "int64" else pa.array(list(ids), type=pa.string())
    table = pa.table({"id": id_arr, "cluster": pa.array(np.asarray(labels, dtype=np.int64))})
    path = Path(directory) / shard_file(shard_name)
    write_parquet(path, table, {"kind": "clusters-shard", "shard": shard_name, "assigned_by": how})
    return {"file": path.name, "file_sha256": sha256_file(path), "assigned_by": how}


def _remote_summary(uri: str) -> tuple[dict, str]:
    """(summary, the generation prefix holding the shard files) of a clusters directory on a store."""
    if fs.file_type(uri) != "dir":
        raise BadInputError(f"{uri}: cluster directory not found; build it with `alq cluster POOL --out {uri}`")
    from alq.store import sidecar

    base = fs.current_generation(uri)
    for name in (SUMMARY, *LEGACY_SUMMARIES):
        try:
            data = fs.read_bytes(fs.join(base, name))
        except FileNotFoundError:
            continue
        summary = sidecar.decode(data, fs.join(base, name), what="cluster summary")
        break
    else:
        raise BadInputError(f"{uri}: no {SUMMARY} (not an alq cluster directory, or `alq cluster` never "
                            f"finished); build it with `alq cluster POOL --out {uri}`")
    return _check_summary(summary, fs.join(base, name)), base


def _check_summary(summary, path) -> dict:
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise BadInputError(f"{path}: not an alq cluster summary (format is "
                            f"{summary.get('format') if isinstance(summary, dict) else None!r})")
    if summary.get("version") != VERSION:
        raise BadInputError(f"{path}: cluster format version {summary.get('version')} is not supported "
                            f"(this alq reads {VERSION})", hint="upgrade alq, or re-run `alq cluster`")
    if not isinstance(summary.get("shards"), list):
        raise BadInputError(f"{path}: malformed cluster summary (no shard list)")
    return summary


def read_summary(directory: str | Path) -> dict:
    if fs.is_remote(directory):
        return _remote_summary(fs.normalize(directory))[0]
    directory = Path(directory)
    path = summary_path(directory)
    if not directory.exists() and restore_moved_aside(directory) is None:  # a swap killed between its renames
        raise BadInputError(f"{directory}: cluster directory not found; build it with `alq cluster POOL --out {directory}`")
    if not path.exists():
        raise BadInputError(f"{directory}: no {SUMMARY} (not an alq cluster directory, or `alq cluster` never "
                            f"finished); build it with `alq cluster POOL --out {directory}`")
    from alq.store import sidecar

    return _check_summary(sidecar.read(path, what="cluster summary"), path)


def coverage(summary: dict, pool) -> tuple[str, str]:
    """("current" | "appended" | "changed", detail) of a clustering against the pool as it is now."""
    have = summary["shards"]
    now = shard_records(pool)
    for i, rec in enumerate(have):
        if i >= len(now):
            return "changed", f"the clustering covers shard {rec.get('name')!r}, which the pool no longer has"
        cur = now[i]
        for key in ("name", "rows", "sha256", "ids_sha256"):
            if rec.get(key) != cur[key]:
                return "changed", f"pool shard {cur['name']!r} differs from the one clustered ({key} changed)"
    if len(now) > len(have):
        covered = sum(int(r["rows"]) for r in have)
        return "appended", (f"the clustering covers {covered} of the pool's {pool.count} rows "
                            f"({pool.count - covered} rows were appended since)")
    return "current", ""


def load_clusters(path: str | Path, pool) -> np.ndarray:
    """Cluster id of every pool row: int64 array of shape (pool.count,).

    Raises StaleError (exit 2) naming the command to run when rows were
    appended since clustering (``alq cluster POOL --update --out DIR``) or
    the clustered shards no longer match the pool (re-cluster).
    """
    if fs.is_remote(path):  # read in place on the store: one GET per shard file, checksummed from its bytes
        directory = fs.normalize(path)
        summary, base = _remote_summary(directory)
    else:
        directory = Path(path)
        summary, base = read_summary(directory), directory
    state, detail = coverage(summary, pool)
    where = pool_label(pool)
    if state == "appended":
        raise StaleError(f"{directory}: clusters are stale: {detail}; "
                         f"run `alq cluster {where} --update --out {directory}` to assign the new rows")
    if state == "changed":
        raise StaleError(f"{directory}: clusters were computed for a different pool: {detail}; "
                         f"re-cluster with `alq cluster {where} --out {directory}`")
    parts = []
    for rec in summary["shards"]:
        f = fs.join(base, rec.get("file", shard_file(rec["name"])))
        table, digest = _read_shard_file(f)
        if isinstance(rec.get("file_sha256"), str) and digest is not None and digest != rec["file_sha256"]:
            raise StaleError(f"{f}: changed since `alq cluster` wrote it (sha256 mismatch: copied over another "
                             "shard's file, or edited)", hint=f"re-cluster with `alq cluster {where} --out {directory}`")
        col = table.column("cluster")
        if len(col) != int(rec["rows"]):
            raise BadInputError(f"{f}: {len(col)} cluster ids but shard {rec['name']} has {rec['rows']} rows",
                                hint=f"re-cluster with `alq cluster {where} --out {directory}`")
        if col.null_count:
            raise BadInputError(f"{f}: cluster column has nulls")
        parts.append(col.to_numpy().astype(np.int64, copy=False))
    labels = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    if len(labels) != pool.count:  # pragma: no cover - coverage() guarantees it
        raise StaleError(f"{directory}: {len(labels)} cluster ids for {pool.count} pool rows")
    if labels.size and labels.min() < 0:
        raise BadInputError(f"{directory}: negative cluster id in the cluster files")
    return labels


def _read_shard_file(f) -> tuple[pa.Table, str | None]:
    """A cluster shard's table and the sha256 of its file (None when the file is missing: the read names it)."""
    if not fs.is_remote(f):
        digest = sha256_file(f) if Path(f).is_file() else None
        return read_parquet(f, columns=["cluster"]), digest
    import pyarrow.parquet as pq

    try:
        data = fs.read_bytes(f)
    except FileNotFoundError:
        raise BadInputError(f"{f}: file not found", hint="re-run `alq cluster`") from None
    try:
        table = pq.read_table(pa.BufferReader(data), columns=["cluster"])
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(f"{f}: not a readable Parquet file ({str(exc).splitlines()[0][:160]})") from None
    return table, hashlib.sha256(data).hexdigest()


def write_summary(directory: str | Path, summary: dict) -> None:
    """The summary as ``_clusters.parquet``: no rows of the shard files' columns (see :mod:`alq.store.sidecar`)."""
    from alq.store import sidecar

    directory = Path(directory)
    shards = sorted(directory.glob(shard_file("*")))
    schema = read_parquet_schema(shards[0]) if shards else pa.schema([("id", pa.int64()), ("cluster", pa.int64())])
    sidecar.write(directory / SUMMARY, summary, schema)
    for old in LEGACY_SUMMARIES:  # the new name is now the one in force
        (directory / old).unlink(missing_ok=True)


def summary_path(directory: str | Path) -> Path:
    """The summary file of a cluster directory (a legacy name when only that one exists)."""
    for name in (SUMMARY, *LEGACY_SUMMARIES):
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    return Path(directory) / SUMMARY


def is_cluster_dir(path: str | Path) -> bool:
    return summary_path(path).is_file()


def check_out_dir(out: Path) -> None:
    """Refuse an --out that exists and is something other than a cluster directory (never delete user data)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not is_cluster_dir(out):
        raise BadInputError(f"--out {out}: exists, is not empty and holds no {SUMMARY}; refusing to replace it",
                            hint="choose another --out, or remove that directory")


def new_build_dir(out: Path) -> Path:
    """A temporary sibling directory to build a fresh clustering in (published by :func:`publish`)."""
    out = Path(out)
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))


def publish(build: Path, out: Path) -> None:
    """Swap the finished build directory into place; the previous clustering survives any crash before."""
    replace_dir(build, out)
