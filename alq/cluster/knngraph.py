"""The pool's kNN graph as a map over shards, checkpointed shard by shard.

:func:`knn_graph` builds (or, with ``resume``, reloads) the faiss index on
the driver, then searches every shard's rows as engine tasks, in waves of
as many tasks as the engine runs at once. Each finished shard is written
at once to the work directory as ``knn-SHARD.parquet`` (columns
``neighbours`` and ``distances``, fixed-size lists of k per pool row, same
rows and order as the pool shard), beside ``plan.json`` (what was asked
and chosen) and ``index.faiss``. A killed run restarted with ``resume``
reuses the saved index and the finished shards and searches only the rest,
so it gives the same graph, hence the same clusters.

The work directory becomes ``CLUSTERS.graph/`` beside the cluster directory
when clustering finishes (beside, not inside: a dataset reader such as
polars or DuckDB given the cluster directory must find only its Parquet
files): ``alq cluster --update`` searches the new rows against the saved
index (cost proportional to the new rows), and ``alq dedup --clusters``
reuses the graph.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alq.cluster.knn import IndexRef, build_index, search_and_release, search_partial
from alq.config import return_freed_memory

PLAN = "plan.json"
INDEX = "index.faiss"


def graph_dir(cluster_dir) -> Path:
    """Where the kNN graph and index of the clustering in ``cluster_dir`` are kept: ``CLUSTERS.graph/``."""
    cluster_dir = Path(cluster_dir)
    return cluster_dir.parent / f"{cluster_dir.name}.graph"


def shard_file(shard: int) -> str:
    return f"knn-{shard:06d}.parquet"


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def write_knn_shard(path: Path, nbr: np.ndarray, dist: np.ndarray) -> None:
    k = nbr.shape[1]
    table = pa.table({
        "neighbours": pa.FixedSizeListArray.from_arrays(pa.array(nbr.reshape(-1), pa.int64()), k),
        "distances": pa.FixedSizeListArray.from_arrays(pa.array(dist.reshape(-1), pa.float32()), k),
    })
    _atomic_write_table(table, path)


def read_knn_shard(path: Path) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(path)
    k = t.schema.field("neighbours").type.list_size
    nbr = t.column("neighbours").combine_chunks().values.to_numpy().reshape(-1, k)
    dist = t.column("distances").combine_chunks().values.to_numpy().reshape(-1, k)
    return nbr.astype(np.int64, copy=False), dist.astype(np.float32, copy=False)


def _wanted(pool, k: int, normalize, seed: int, kind: str, target_recall: float) -> dict:
    return {"pool_fingerprint": pool.fingerprint, "rows": int(pool.count), "k": int(k), "normalize": normalize,
            "seed": int(seed), "index_requested": kind, "recall_target": float(target_recall)}


def _load_plan(work: Path, wanted: dict) -> tuple[IndexRef, dict] | None:
    try:
        plan = json.loads((work / PLAN).read_text())
    except (OSError, ValueError):
        return None
    if plan.get("wanted") != wanted or not (work / INDEX).exists():
        return None
    info = plan["index"]
    return IndexRef.load(work / INDEX, nprobe=info.get("nprobe"), query_rows=int(plan["query_rows"])), info


def knn_graph(pool, *, k: int, normalize, seed: int, kind: str, target_recall: float, engine, work: Path,
              resume: bool = False, progress=None, log=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The k nearest other rows of every pool row: (neighbours (N, k) int64, distances (N, k) float32, info).

    ``work`` holds the checkpoint (module docstring); without ``resume`` an
    existing one is discarded first. ``info`` is the index's measured
    description plus ``resumed_shards``.
    """
    say = log or (lambda msg: None)
    wanted = _wanted(pool, k, normalize, seed, kind, target_recall)
    loaded = _load_plan(work, wanted) if resume else None
    if resume and loaded is None and work.exists():
        say("note: --resume: the saved kNN work does not match this pool and these options; starting over")
    elif not resume and _load_plan(work, wanted) is not None:
        done = len(list(work.glob("knn-*.parquet")))
        say(f"note: discarding a killed run's kNN checkpoint ({done} shards done; pass --resume to continue it)")
    t0 = time.perf_counter()
    if loaded is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        ref, info = build_index(pool, normalize=normalize, kind=kind, seed=seed, k_for_recall=k,
                                target_recall=target_recall, progress=progress)
        ref.save(work / f".{INDEX}.tmp")
        os.replace(work / f".{INDEX}.tmp", work / INDEX)
        tmp = work / f".{PLAN}.tmp"
        tmp.write_text(json.dumps({"wanted": wanted, "index": info, "query_rows": ref.query_rows}, indent=1))
        os.replace(tmp, work / PLAN)
    else:
        ref, info = loaded
    t_index = time.perf_counter() - t0
    offsets = np.asarray(pool.offsets)
    n_shards = len(offsets) - 1
    done = [s for s in range(n_shards) if (work / shard_file(s)).exists()]
    todo = [s for s in range(n_shards) if s not in set(done)]
    if resume and loaded is not None:
        say(f"--resume: reusing the saved index and {len(done)} of {n_shards} finished kNN shards")
    n = int(pool.count)
    rows_done = int(sum(offsets[s + 1] - offsets[s] for s in done))
    state = {"rows": rows_done}

    def tick(rows: int) -> None:
        state["rows"] += rows
        if progress is not None:
            progress("kNN search", state["rows"], n)

    tick(0)
    if engine.in_process():
        for s in todo:
            nbr, dist = search_partial(pool, int(offsets[s]), int(offsets[s + 1]), ref, k, normalize, True, 0, tick)
            write_knn_shard(work / shard_file(s), nbr, dist)
    else:
        # the workers get the saved index through the object store; the driver lets go of its own copy
        shared = engine.share_result(saved_index, work / INDEX, ref.nprobe, ref.query_rows)
        ref.index = None
        return_freed_memory()
        wave = max(1, engine.slots())
        for w in range(0, len(todo), wave):
            part = todo[w:w + wave]
            # the last `wave` tasks drop the worker's cached index when done (a worker that runs another
            # after it loads the index again): idle workers must not hold N x d floats through the linkage
            task = search_and_release if w + wave > len(todo) - wave else search_partial
            results = engine.map(task, [(pool, int(offsets[s]), int(offsets[s + 1]), shared, k, normalize, True)
                                        for s in part])
            for s, (nbr, dist) in zip(part, results):
                write_knn_shard(work / shard_file(s), nbr, dist)
                tick(int(offsets[s + 1] - offsets[s]))
    nbr = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float32)
    for s in range(n_shards):
        a, b = read_knn_shard(work / shard_file(s))
        if len(a) != offsets[s + 1] - offsets[s]:
            raise RuntimeError(f"{work / shard_file(s)}: {len(a)} rows, shard {s} has {offsets[s + 1] - offsets[s]}")
        nbr[offsets[s]:offsets[s + 1]] = a
        dist[offsets[s]:offsets[s + 1]] = b
    return nbr, dist, {**info, "resumed_shards": len(done) if (resume and loaded is not None) else 0,
                       "stage_seconds": {"index": round(t_index, 3),
                                         "knn": round(time.perf_counter() - t0 - t_index, 3)}}


def saved_index(path: Path, nprobe: int | None, query_rows: int) -> IndexRef:
    """The index saved at ``path``, as a reference that pickles as the file's bytes (a Ray task's result)."""
    return IndexRef.from_file(path, nprobe, query_rows)


def load_graph_index(cluster_dir: Path) -> tuple[IndexRef, dict] | None:
    """The index a full clustering saved beside its clusters (:func:`graph_dir`), or None."""
    work = graph_dir(cluster_dir)
    try:
        plan = json.loads((work / PLAN).read_text())
    except (OSError, ValueError):
        return None
    if not (work / INDEX).exists():
        return None
    info = plan["index"]
    return IndexRef.load(work / INDEX, nprobe=info.get("nprobe"), query_rows=int(plan["query_rows"])), plan
