"""What an alq file or directory holds: ``alq info`` as a library call.

``describe(path, verify=...)`` recognises a pool directory (manifest.json),
a clusters or scores directory (``clusters.json`` / ``scores.json`` with
their ``format``), a head (``.pt``), a labels / selection / pending /
results Parquet (``alq.kind`` metadata), any other Parquet, and ``.npy``
arrays, and returns a JSON-able summary with ``kind`` and, when verifying,
``problems`` (empty when everything checks out, first bad item first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alq.errors import BadInputError, StoreError
from alq.io import parquet_metadata, read_json, read_parquet, read_parquet_schema, sha256_file

DIR_FORMATS = {"_clusters.parquet": "alq-clusters", "_scores.parquet": "alq-scores",  # the others: legacy
               "_dedup.parquet": "alq-dedup", "_dedup.json": "alq-dedup",
               "_clusters.json": "alq-clusters", "_scores.json": "alq-scores",
               "clusters.json": "alq-clusters", "scores.json": "alq-scores"}


def describe(path: str | Path, *, verify: bool = False) -> dict:
    from alq import fs

    if fs.is_remote(path):
        from alq.store.manifest import MANIFEST, is_pool

        uri = fs.normalize(path)
        if fs.name_of(uri) == MANIFEST:
            uri = fs.parent_of(uri)
        if is_pool(uri):
            return _remote_pool(uri, verify)
        if fs.file_type(uri) == "dir" and not fs.exists(fs.join(uri, fs.POINTER)):
            from alq.store.debris import SHARD_FILE

            shards = [n for n in fs.listdir(uri) if SHARD_FILE.fullmatch(n)]
            if shards:  # never download a would-be pool to look at it
                raise BadInputError(f"{uri}: not an alq pool: {len(shards)} shard objects but no {MANIFEST} (a first "
                                    "build that never finished)", hint="the next `alq embed --out` to it clears them")
        from alq.staging import stage_input

        # small files, alq directories: a copy, registered so errors and summaries name the URI, not the copy
        with stage_input(uri, what="input") as local_copy:
            out = describe(local_copy, verify=verify)
        out["path"] = str(path)
        return out
    p = Path(path)
    restored = None
    if not p.exists():
        from alq.io import moved_aside, restore_moved_aside

        restored = restore_moved_aside(p)  # a replace killed between its two renames: put the old output back
        if restored is None:
            olds = moved_aside(p)
            if olds:
                raise BadInputError(f"{p}: not found; the previous copy is at {olds[-1]} (moved aside by a replace "
                                    "that is running or was killed)",
                                    hint="rerun when no alq command writes it: the next run puts it back")
            raise BadInputError(f"{p}: not found")
        out = describe(p, verify=verify)
        out["restored_from"] = restored  # named, so a cron log shows what happened
        return out
    if p.is_dir():
        from alq.store.manifest import is_pool

        if is_pool(p):
            return _pool(p, verify)
        for name, fmt in DIR_FORMATS.items():
            if (p / name).is_file():
                return _json_dir(p, p / name, fmt, verify)
        raise BadInputError(f"{p}: not an alq directory (no manifest.json, _clusters.parquet or _scores.parquet)")
    if p.name == "manifest.json":
        return _pool(p.parent, verify)
    if p.name in DIR_FORMATS:
        return _json_dir(p.parent, p, DIR_FORMATS[p.name], verify)
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _parquet(p, verify)
    if suffix == ".pt":
        return _head(p)
    if suffix == ".npy":
        return _npy(p, verify)
    if suffix == ".json":
        data = read_json(p)
        return {"path": str(p), "kind": "json", "format": data.get("format") if isinstance(data, dict) else None,
                "content": data}
    raise BadInputError(f"{p}: not a file alq knows (pool dir, .parquet, .pt, .npy, clusters/ or scores/)")


def _pool(p: Path, verify: bool) -> dict:
    from alq.store.pool import ShardedPool

    pool = ShardedPool(p)
    m = pool.manifest
    size = 0
    for s in m.shards:
        for f in (s.npy, s.parquet):
            fp = p / f
            size += fp.stat().st_size if fp.exists() else 0
    rows = [s.rows for s in m.shards]
    out = {"path": str(p), "kind": "pool", "format": f"{m.format} v{m.version}", "count": m.count, "dim": m.dim,
           "dtype": m.dtype, "id_type": m.id_type, "normalize": m.normalize, "shards": len(m.shards),
           "shard_rows": {"min": min(rows, default=0), "max": max(rows, default=0)},
           "bytes": size, "fingerprint": m.fingerprint, "alq_version": m.alq_version, "extra": m.extra}
    listed = {f for s in m.shards for f in (s.npy, s.parquet)} | {"manifest.json"}
    stray = sorted(f.name for f in p.iterdir() if f.name not in listed)
    if stray:
        out["unlisted_files"] = stray[:20]  # e.g. left by a killed --append; not part of the pool
    debris = sorted(f.name for f in p.parent.iterdir() if f.name.startswith(f".{p.name}.")
                    and f.name.endswith((".building", ".old", ".trash", ".tmp")))
    if debris:
        out["stale_temp"] = debris[:20]  # left by a killed build; the next `alq embed` to this pool clears them
    if m.shards:
        try:
            first, last = pool.ids([0]), pool.ids([m.count - 1])
            out["first_id"], out["last_id"] = _py(first[0]), _py(last[0])
        except BadInputError as exc:
            out["first_id"] = f"unreadable ({exc})"
        from alq.store.writer import metadata_schema

        meta = metadata_schema(p / m.shards[0].parquet)
        out["metadata_columns"] = {f.name: str(f.type) for f in meta} if meta is not None else {}
    if verify:
        out["problems"] = pool.verify()
        out["verified"] = not out["problems"]
    return out


def _remote_pool(uri: str, verify: bool) -> dict:
    """``alq info`` of a pool on object storage: what the manifest lists, what else lies under its prefix."""
    import json
    import time

    from alq import fs
    from alq.fs.lock import REMOTE_LOCK
    from alq.store.remote import RemotePool

    pool = RemotePool(uri)
    m = pool.manifest
    have = fs.listdir(uri)
    rows = [s.rows for s in m.shards]
    out = {"path": uri, "kind": "pool", "format": f"{m.format} v{m.version}", "count": m.count, "dim": m.dim,
           "dtype": m.dtype, "id_type": m.id_type, "normalize": m.normalize, "shards": len(m.shards),
           "shard_rows": {"min": min(rows, default=0), "max": max(rows, default=0)},
           "bytes": sum(have.get(f, 0) for s in m.shards for f in (s.npy, s.parquet)),
           "fingerprint": m.fingerprint, "alq_version": m.alq_version, "extra": m.extra}
    stray = pool.unlisted()
    if stray:
        out["unlisted_files"] = stray[:20]  # a killed writer's uploads: the next writer of the pool deletes them
    if REMOTE_LOCK in have:
        try:
            lock = json.loads(fs.read_bytes(fs.join(uri, REMOTE_LOCK)))
            left = float(lock.get("expires", 0)) - time.time()
            out["writer_lock"] = {"owner": lock.get("owner"), "expires_in_s": round(left, 1),
                                  "state": "held" if left > 0 else "expired (a dead writer's; the next one takes it)"}
        except (ValueError, FileNotFoundError, TypeError):
            out["writer_lock"] = {"state": "unreadable"}
    if m.shards:
        try:
            first, last = pool.ids([0]), pool.ids([m.count - 1])
            out["first_id"], out["last_id"] = _py(first[0]), _py(last[0])
        except (BadInputError, StoreError) as exc:
            out["first_id"] = f"unreadable ({exc})"
        out["metadata_columns"] = {f.name: str(f.type) for f in pool.shard_schema(0) if f.name != "id"}
    if verify:
        out["problems"] = pool.verify()
        out["verified"] = not out["problems"]
    return out


def _json_dir(p: Path, f: Path, fmt: str, verify: bool) -> dict:
    from alq.store import sidecar

    data = sidecar.read(f, what="summary")
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise BadInputError(f"{f}: format is {data.get('format') if isinstance(data, dict) else None!r}, "
                            f"expected {fmt!r}")
    out = {"path": str(p), "kind": fmt.removeprefix("alq-"), "summary": data}
    if verify:
        out["problems"] = _verify_listed_files(p, data)
        out["verified"] = not out["problems"]
    return out


def _verify_listed_files(root: Path, data) -> list[str]:
    """Check files a summary JSON lists (dicts with a file/name/path and optionally sha256)."""
    problems: list[str] = []

    def walk(node) -> None:
        if problems:
            return
        if isinstance(node, dict):
            name = next((node[k] for k in ("file", "path", "name") if isinstance(node.get(k), str)), None)
            if name is not None and ("sha256" in node or "rows" in node):
                cands = [root / name] + [root / f"{name}{sfx}" for sfx in (".parquet", ".npy")]
                f = next((c for c in cands if c.exists()), None)
                if f is None:
                    problems.append(f"{root / name}: missing")
                    return
                # clusters.json entries carry the pool shard's sha256 and their own file's file_sha256
                want = node.get("file_sha256") if "file_sha256" in node else node.get("sha256")
                if isinstance(want, str) and f.is_file() and sha256_file(f) != want:
                    problems.append(f"{f}: checksum mismatch (file changed or truncated)")
                    return
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    return problems


def _parquet(p: Path, verify: bool) -> dict:
    schema = read_parquet_schema(p)
    meta = parquet_metadata(schema)
    import pyarrow.parquet as pq

    md = pq.ParquetFile(p).metadata
    kind = meta.get("kind")
    out: dict = {"path": str(p), "kind": kind or "parquet", "rows": md.num_rows,
                 "columns": {f.name: str(f.type) for f in schema}, "metadata": meta}
    if kind == "labels" or (kind is None and {"id", "label"} <= set(schema.names)):
        from alq.store.labels import read_labels

        labels = read_labels(p)
        counts = labels.class_counts()
        imports = meta.get("imports") or []
        out.update(kind="labels", multilabel=labels.multilabel, classes=len(counts), class_counts=counts,
                   pool_fingerprint=meta.get("pool_fingerprint"), imports=len(imports),
                   last_import=imports[-1].get("file") if imports else None)
        if verify:
            out["problems"] = _duplicate_ids(p, labels.ids)
    elif kind == "selection":
        table = read_parquet(p)
        ids = table.column("id").to_numpy(zero_copy_only=False) if "id" in table.column_names else np.empty(0)
        out["selected"] = table.num_rows
        for k in ("strategy", "budget", "seed", "round", "pool", "pool_fingerprint", "head_fingerprint"):
            if k in meta:
                out[k] = meta[k]
        if verify:
            out["problems"] = _duplicate_ids(p, ids)
    elif verify:
        try:
            read_parquet(p)
            out["problems"] = []
        except BadInputError as exc:
            out["problems"] = [str(exc)]
    if verify:
        out["verified"] = not out["problems"]
    return out


def _duplicate_ids(p: Path, ids) -> list[str]:
    ids = np.asarray(ids)
    if ids.size == 0:
        return []
    key = ids if ids.dtype.kind in "iu" else ids.astype(str)
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    if same.size:
        a, b = sorted((int(order[same[0]]), int(order[same[0] + 1])))
        return [f"{p}: id {_py(ids[a])!r} appears at rows {a} and {b}"]
    return []


def _head(p: Path) -> dict:
    from alq.model.head import load_head

    head = load_head(p)
    meta = {k: v for k, v in head.meta.items() if k not in ("classes",)}
    return {"path": str(p), "kind": "head", "dim": head.dim, "classes": head.classes, "n_classes": head.n_classes,
            "multilabel": head.multilabel, "ensemble": len(head.nets), "hidden": head.net.hidden,
            "fingerprint": head.fingerprint, "metrics": head.meta.get("metrics"), "meta": meta}


def _npy(p: Path, verify: bool) -> dict:
    from alq.store.npyfile import npy_info

    info = npy_info(p)
    out = {"path": str(p), "kind": "npy", "shape": list(info.shape), "dtype": str(info.dtype)}
    if verify:
        out["problems"] = []
        out["verified"] = True
    return out


def _py(v):
    return v.item() if hasattr(v, "item") else v
