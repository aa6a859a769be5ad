"""The scores store: a pool streamed through a head once, saved per shard (``alq score``).

A scores directory is::

    SCORES/_scores.parquet        {"format": "alq-scores", pool_fingerprint, head_fingerprint, ...} in the
                                  metadata of no rows of the shards' columns (alq.store.sidecar; older
                                  directories: _scores.json or scores.json, still read)
    SCORES/shard-000000.parquet   one per pool shard, same rows in the same order

Each shard table has ``id``, ``predicted_class`` (class name), ``top_classes``
and ``top_probs`` (the k most probable classes, most probable first),
``margin``, ``entropy`` and ``least_confidence`` (float64, exactly the values
a streamed selection ranks by; multi-label: aggregated binary margins,
``(1 + margin) / 2`` and summed binary entropies, see ALGORITHMS.md).

``alq select --scores DIR`` reads the measure from here when the store is
fresh (same pool and head fingerprints, and for multi-label heads the same
``--aggregate``); otherwise it says why and recomputes from the head. The
directory is built beside its target and swapped in whole, like a pool.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from alq import __version__, fs
from alq.errors import BadInputError, StaleError
from alq.io import read_parquet, replace_dir, restore_moved_aside, sha256_file
from alq.scoring.stream import Buffers, head_block_rows, iter_logits, resolve_device
from alq.scoring.uncertainty import MEASURES, check_aggregate, measures_from_logits
from alq.store import sidecar

FORMAT = "alq-scores"
VERSION = 1
META = "_scores.parquet"  # no rows of the shards' columns: polars/duckdb read the directory, pyarrow skips it
LEGACY_METAS = ("_scores.json", "scores.json")  # written before; still read
LEGACY_META = LEGACY_METAS[-1]
META_NAMES = (META, *LEGACY_METAS)


def shard_names(pool) -> list[str]:
    manifest = getattr(pool, "manifest", None)
    if manifest is not None:
        return [s.name for s in manifest.shards]
    return [f"shard-{s:06d}" for s in range(pool.n_shards)]


def meta_path(path) -> Path:
    """The metadata file of a scores directory (a legacy name when only that one exists)."""
    for name in META_NAMES:
        if (Path(path) / name).is_file():
            return Path(path) / name
    return Path(path) / META


def _shard_schema(work: str, stats: list) -> pa.Schema:
    """The columns of the shard files just written (the sidecar has no rows of the same columns)."""
    f = fs.join(work, f"{stats[0]['name']}.parquet")
    return pq.read_schema(fs.open_input(f) if fs.is_remote(f) else f)


def is_scores(path) -> bool:
    return meta_path(path).is_file()


def _class_array(classes: list) -> pa.Array:
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return pa.array(classes, type=pa.int64())
    return pa.array([str(c) for c in classes], type=pa.string())


def score_partial(pool, lo: int, hi: int, head, workdir: str, names: list[str], top_k: int, aggregate: str,
                  device: str | None, block_rows: int | None) -> list[dict]:
    """Map task: write the scores table of every shard in [lo, hi) into ``workdir``; return per-shard stats."""
    dev = resolve_device(device)
    classes = _class_array(head.classes)
    kk = min(top_k, head.n_classes)
    rows = block_rows or head_block_rows(pool, head)
    offsets = pool.offsets
    stats = []
    for s in range(pool.n_shards):
        s0, s1 = int(offsets[s]), int(offsets[s + 1])
        if s1 <= lo or s0 >= hi:
            continue
        parts: dict[str, list] = {k: [] for k in ("pred", "topi", "topp", *MEASURES)}
        buffers = Buffers(dev)
        for _, _, z in iter_logits(pool, head, lo=s0, hi=s1, block_rows=rows, device=dev, buffers=buffers):
            tz, ti = torch.topk(z, kk, dim=1)  # top logits = top probabilities
            parts["pred"].append(z.argmax(dim=1).cpu().numpy())
            m = measures_from_logits(z, multilabel=head.multilabel, aggregate=aggregate, inplace=True,
                                     work=buffers.get("work", len(z), tuple(z.shape[1:])))
            # softmax: p_j = exp(z_j - z_max) / s and least-confidence = 1 / s
            tp = torch.sigmoid(tz) if head.multilabel else torch.exp(tz - tz[:, :1]) * m["least_confidence"][:, None]
            parts["topi"].append(ti.cpu().numpy())
            parts["topp"].append(tp.float().cpu().numpy())
            for name in MEASURES:
                parts[name].append(m[name].cpu().numpy())
        n = s1 - s0
        pred = np.concatenate(parts["pred"]) if n else np.empty(0, np.int64)
        topi = np.concatenate(parts["topi"]) if n else np.empty((0, kk), np.int64)
        topp = np.concatenate(parts["topp"]) if n else np.empty((0, kk), np.float32)
        off = pa.array(np.arange(0, n * kk + 1, kk, dtype=np.int32))
        ids = pool.shard_ids(s)
        table = pa.table({
            "id": pa.array(ids, type=pa.int64()) if pool.id_type == "int64" else pa.array(ids.tolist(), type=pa.string()),
            "predicted_class": classes.take(pa.array(pred.astype(np.int64))),
            "top_classes": pa.ListArray.from_arrays(off, classes.take(pa.array(topi.reshape(-1).astype(np.int64)))),
            "top_probs": pa.ListArray.from_arrays(off, pa.array(topp.reshape(-1))),
            **{name: pa.array(np.concatenate(parts[name]) if n else np.empty(0)) for name in MEASURES},
        })
        stats.append({"shard": s, "name": names[s], "rows": n, "sha256": _write_table(table, workdir, names[s]),
                      "histogram": np.bincount(pred, minlength=head.n_classes).tolist()})
    return stats


def _write_table(table: pa.Table, workdir: str, name: str) -> str:
    """Write one shard's scores where the task runs (a local build dir, or the store directly); its sha256."""
    import hashlib

    target = fs.join(workdir, f"{name}.parquet")
    if not fs.is_remote(target):
        pq.write_table(table, target)
        return sha256_file(target)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    fs.write_bytes(target, data)  # one whole object: a retried task replaces it
    return hashlib.sha256(data).hexdigest()


def write_scores(pool, head, out: str | Path, *, top_k: int = 5, aggregate: str | None = None, engine=None,
                 device=None, progress=None, pool_path: str | None = None) -> dict:
    """Stream ``pool`` through ``head`` and write a scores directory at ``out`` atomically. Returns a summary."""
    t0 = time.perf_counter()
    aggregate = check_aggregate(aggregate)
    if top_k < 1:
        raise BadInputError(f"--top-k={top_k} must be >= 1")
    head.check_pool(pool)
    if fs.is_remote(out):
        return _write_scores_remote(pool, head, fs.normalize(out), top_k=top_k, aggregate=aggregate, engine=engine,
                                    device=device, pool_path=pool_path, t0=t0)
    out = Path(out)
    if out.exists() and not (out.is_dir() and (is_scores(out) or not any(out.iterdir()))):
        raise BadInputError(f"{out}: exists and is not an alq scores directory; refusing to replace it",
                            hint="choose another --out")
    if pool.count == 0:
        raise BadInputError("the pool is empty: nothing to score")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    try:
        stats, hist, meta = _score_into(str(work), pool, head, top_k, aggregate, engine, device, pool_path)
        sidecar.write(work / META, meta, _shard_schema(str(work), stats))
        _publish(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return _summary(out, pool, head, aggregate, stats, hist, t0)


def _write_scores_remote(pool, head, out: str, *, top_k, aggregate, engine, device, pool_path, t0) -> dict:
    """The scores directory on object storage: tasks write their shards under a new generation, then the
    driver writes the meta file and switches the pointer (readers see the old scores or the new, whole)."""
    from alq.fs.lock import REMOTE_LOCK

    kind = fs.file_type(out)
    have = set(fs.listdir(out)) - {REMOTE_LOCK}  # `alq score` holds the writer lock object inside OUT
    if kind == "file" or (kind == "dir" and have and not fs.exists(fs.join(out, fs.POINTER))
                          and not set(META_NAMES) & have):
        raise BadInputError(f"{out}: exists and is not an alq scores directory; refusing to replace it",
                            hint="choose another --out")
    if kind == "dir" and fs.exists(fs.join(out, fs.POINTER)) and \
            not set(META_NAMES) & set(fs.listdir(fs.current_generation(out))):
        raise BadInputError(f"{out}: holds another kind of alq output; refusing to replace it",
                            hint="choose another --out")
    if pool.count == 0:
        raise BadInputError("the pool is empty: nothing to score")
    gen = fs.new_generation()
    work = fs.join(out, gen)
    try:
        stats, hist, meta = _score_into(work, pool, head, top_k, aggregate, engine, device, pool_path)
        fs.write_bytes(fs.join(work, META), sidecar.encode(meta, _shard_schema(work, stats)))
        fs.switch_generation(out, gen)
    except BaseException:
        fs.delete_tree(work)
        raise
    return _summary(out, pool, head, aggregate, stats, hist, t0)


def _score_into(work: str, pool, head, top_k, aggregate, engine, device, pool_path):
    """The map (tasks write their shards into ``work``) and the reduce: (shard stats, class histogram, meta)."""
    if engine is None:
        from alq.engine import LocalEngine

        engine = LocalEngine()
    dev = str(device) if device is not None else None
    results = engine.map_pool(score_partial, pool, head, work, shard_names(pool), int(top_k), aggregate, dev, None)
    stats = sorted((s for part in results for s in part), key=lambda s: s["shard"])
    hist = np.sum([s["histogram"] for s in stats], axis=0) if stats else np.zeros(head.n_classes, np.int64)
    return stats, hist, _meta(pool, head, pool_path, aggregate, top_k, stats)


def _meta(pool, head, pool_path, aggregate, top_k, stats) -> dict:
    """The scores directory's metadata file (local or on a store: the same content)."""
    return {"format": FORMAT, "version": VERSION, "pool": pool_path, "pool_fingerprint": pool.fingerprint,
            "head_fingerprint": head.fingerprint, "multilabel": head.multilabel, "aggregate": aggregate,
            "top_k": int(min(top_k, head.n_classes)), "classes": head.n_classes, "count": pool.count,
            "columns": ["id", "predicted_class", "top_classes", "top_probs", *MEASURES],
            "shards": [{"name": s["name"], "rows": s["rows"], "file": f"{s['name']}.parquet",
                        "sha256": s["sha256"]} for s in stats],
            "alq_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _summary(out, pool, head, aggregate, stats, hist, t0) -> dict:
    order = np.argsort(-hist, kind="stable")
    return {"output": str(out), "rows": pool.count, "shards": len(stats), "pool_fingerprint": pool.fingerprint,
            "head_fingerprint": head.fingerprint, "multilabel": head.multilabel, "aggregate": aggregate,
            "predicted_class_histogram": {str(head.classes[i]): int(hist[i]) for i in order if hist[i] > 0},
            "seconds": round(time.perf_counter() - t0, 4)}


def _publish(work: Path, out: Path) -> None:
    replace_dir(work, out)


class ScoresStore:
    """Read access to a scores directory (picklable: its path and metadata)."""

    def __init__(self, path: str | Path):
        self.remote = fs.is_remote(path)
        if self.remote:  # read in place on the store: the current generation behind the pointer
            self.shown = fs.normalize(path)
            if fs.file_type(self.shown) != "dir":
                raise BadInputError(f"{self.shown}: scores directory not found", hint="write one with `alq score`")
            self.path = fs.current_generation(self.shown)
            for name in META_NAMES:
                mpath = fs.join(self.path, name)
                try:
                    data = fs.read_bytes(mpath)
                except FileNotFoundError:
                    continue
                meta = sidecar.decode(data, mpath, what="scores metadata")
                break
            else:
                raise BadInputError(f"{self.shown}: not an alq scores directory (no {META})") from None
        else:
            self.path = Path(path)
            if not self.path.exists() and restore_moved_aside(self.path) is None:  # a swap killed between renames
                raise BadInputError(f"{self.path}: scores directory not found", hint="write one with `alq score`")
            mpath = meta_path(self.path)
            meta = sidecar.read(mpath, what="scores metadata")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise BadInputError(f"{mpath}: not an alq scores file")
        if meta.get("version") != VERSION:
            raise BadInputError(f"{mpath}: scores format version {meta.get('version')} not supported",
                                hint="rerun `alq score`")
        self.meta = meta

    @property
    def pool_fingerprint(self) -> str:
        return self.meta.get("pool_fingerprint", "")

    @property
    def head_fingerprint(self) -> str:
        return self.meta.get("head_fingerprint", "")

    def stale_reason(self, pool, head, aggregate: str | None = None) -> str | None:
        """Why this store cannot stand in for ``head`` on ``pool`` (None when fresh)."""
        if self.pool_fingerprint != pool.fingerprint:
            return (f"pool changed since `alq score` (fingerprint {self.pool_fingerprint} != {pool.fingerprint})")
        if head is None:
            return "no head given"
        if self.head_fingerprint != head.fingerprint:
            return f"scores were written by another head (fingerprint {self.head_fingerprint} != {head.fingerprint})"
        if head.multilabel and check_aggregate(aggregate) != self.meta.get("aggregate"):
            return f"scores use --aggregate {self.meta.get('aggregate')}, this selection {aggregate}"
        shards = self.meta.get("shards", [])
        if [s.get("rows") for s in shards] != list(pool.shard_rows):
            return "scores shards do not line up with the pool's"
        for s in shards:  # a shard copied over another, or rewritten in place at the same size
            if "sha256" in s and self._sha256(s.get("file", "")) != s["sha256"]:
                return f"{s.get('file')} changed since `alq score` (sha256 mismatch)"
        return None

    def _sha256(self, name: str) -> str | None:
        f = fs.join(self.path, name)
        if fs.file_type(f) != "file":
            return None
        if self.remote:
            from alq.store.remote import sha256_remote

            return sha256_remote(f)
        return sha256_file(f)

    def _read(self, f, columns):
        if not self.remote:
            return read_parquet(f, columns=columns)
        try:
            return fs.read_table(f, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise BadInputError(f"{f}: not a readable scores shard ({str(exc).splitlines()[0][:160]})",
                                hint="rerun `alq score`") from None

    def check_fresh(self, pool, head, aggregate: str | None = None) -> None:
        reason = self.stale_reason(pool, head, aggregate)
        if reason:
            raise StaleError(f"{self.path}: stale scores: {reason}", hint="rerun `alq score`")

    def usable_for(self, measure: str, aggregate: str | None, head) -> bool:
        if measure not in MEASURES or head is None or self.head_fingerprint != head.fingerprint:
            return False
        return not head.multilabel or check_aggregate(aggregate) == self.meta.get("aggregate")

    def read_column(self, shard: int, column: str) -> np.ndarray:
        info = self.meta["shards"][shard]
        f = fs.join(self.path, info["file"])
        col = self._read(f, [column]).column(column)
        if len(col) != info["rows"]:
            raise BadInputError(f"{f}: {len(col)} rows but the scores metadata says {info['rows']}", hint="rerun `alq score`")
        return col.to_numpy().astype(np.float64, copy=False)

    def read_shard(self, shard: int, columns: list[str] | None = None) -> pa.Table:
        return self._read(fs.join(self.path, self.meta["shards"][shard]["file"]), columns)
