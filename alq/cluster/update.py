"""``alq cluster --update``: rows appended since clustering join their nearest clustered neighbour's cluster.

The clustering is not recomputed and existing ids never change. The kNN index
kept beside the clusters (``OUT.graph/``) is reused, so the cost is a search
of the new rows only; their recall@1 against exact search is measured on a
sample and reported, and they are added to the saved index for the next update.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from alq.cluster.api import _now, headline
from alq.cluster.ivf import add_rows_range
from alq.cluster.knn import RECALL_QUERIES, build_index, exact_knn, prepare, search_partial
from alq.cluster.knngraph import INDEX, graph_dir, load_graph_index
from alq.cluster.linkage import size_summary
from alq.cluster.store import coverage, pool_label, read_summary, shard_file, shard_records, write_shard, write_summary
from alq.errors import BadInputError, StaleError


def _read_labels(out, summary: dict) -> np.ndarray:
    from alq.io import read_parquet

    parts = []
    for rec in summary["shards"]:
        f = out / rec.get("file", shard_file(rec["name"]))
        col = read_parquet(f, columns=["cluster"]).column("cluster")
        if len(col) != int(rec["rows"]):
            raise BadInputError(f"{f}: {len(col)} cluster ids but shard {rec['name']} has {rec['rows']} rows")
        parts.append(col.to_numpy().astype(np.int64, copy=False))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _update_recall(pool, ref, covered: int, nearest: np.ndarray, normalize, seed: int) -> float:
    """recall@1 of the new rows' nearest clustered neighbours, on a seeded sample of up to 1,000 new rows."""
    n_new = pool.count - covered
    rng = np.random.default_rng([seed, 13])
    pick = np.sort(rng.choice(n_new, size=min(RECALL_QUERIES, n_new), replace=False))
    truth = exact_knn(pool, pool.take(pick + covered, dtype=np.float32), 1, hi=covered, normalize=normalize)[:, 0]
    # a tie at the same distance is as good a neighbour: compare distances, not ids
    x = prepare(pool.take(pick + covered, dtype=np.float32), normalize).astype(np.float64)
    got = prepare(pool.take(nearest[pick], dtype=np.float32), normalize).astype(np.float64)
    best = prepare(pool.take(truth, dtype=np.float32), normalize).astype(np.float64)
    d_got = ((x - got) ** 2).sum(1)
    d_best = ((x - best) ** 2).sum(1)
    return round(float(np.mean(d_got <= d_best * (1 + 1e-6) + 1e-12)), 4)


def _extend_saved_index(out: Path, ref, pool, covered: int, normalize) -> None:
    """Add the newly assigned rows to the saved index, so the next --update finds them too."""
    add_rows_range(ref.index, pool, covered, pool.count, normalize)
    tmp = graph_dir(out) / f".{INDEX}.tmp"
    ref.save(tmp)
    os.replace(tmp, graph_dir(out) / INDEX)


def update_clusters(pool, out, *, engine=None, progress=None, log=None) -> dict:
    """Assign rows appended since clustering to their nearest clustered neighbour's cluster.

    The clustering itself is not recomputed; existing ids never change. New
    shard files are written first, ``clusters.json`` last, so a crash leaves
    the previous (stale but consistent) directory.
    """
    from alq.engine import LocalEngine

    out = Path(out)
    summary = read_summary(out)
    state, detail = coverage(summary, pool)
    if state == "changed":
        raise StaleError(f"{out}: cannot --update: {detail}; re-cluster with "
                         f"`alq cluster {pool_label(pool)} --out {out}` (without --update)")
    if state == "current":
        return {**summary, "rows_updated": 0}
    say = log or (lambda msg: None)
    t0 = time.perf_counter()
    covered = sum(int(r["rows"]) for r in summary["shards"])
    old = _read_labels(out, summary)
    normalize = summary.get("normalize_applied")
    seed = int(summary.get("parameters", {}).get("seed", 0))
    say(f"assigning {pool.count - covered} new rows to the clusters of their nearest neighbours among {covered}")
    saved = load_graph_index(out)
    if saved is not None and saved[0].ntotal == covered:
        ref, plan = saved
        index_info = {k: plan["index"].get(k) for k in ("index", "nlist", "nprobe", "recall_at_k")}
        index_info["reused"] = True
    else:  # clustered by an alq that kept no index (or the exact method): index the clustered rows now
        ref, index_info = build_index(pool, hi=covered, normalize=normalize, seed=seed, k_for_recall=1,
                                      progress=progress)
        index_info["reused"] = False
    engine = engine or LocalEngine()
    parts = engine.map_pool(search_partial, pool, ref, 1, normalize, False, covered)
    nearest = np.concatenate([p[0][:, 0] for p in parts])
    if (nearest < 0).any():  # pragma: no cover - faiss always finds one neighbour in a non-empty index
        raise BadInputError(f"{out}: no clustered neighbour found for some appended rows")
    index_info["recall_at_1_new_rows"] = _update_recall(pool, ref, covered, nearest, normalize, seed)
    if index_info.get("reused"):
        _extend_saved_index(out, ref, pool, covered, normalize)
    new_labels = old[nearest]
    labels = np.concatenate([old, new_labels])
    recs = shard_records(pool)
    offsets = pool.offsets
    shards = list(summary["shards"])
    for s in range(len(shards), len(recs)):
        rec = dict(recs[s])
        lab = labels[offsets[s]:offsets[s + 1]]
        rec.update(write_shard(out, rec["name"], pool.shard_ids(s), lab, id_type=pool.id_type,
                               how="nearest-neighbour"))
        shards.append(rec)
    n_new = int(pool.count - covered)
    new = dict(summary)
    new.update(updated=_now(), pool_fingerprint=pool.fingerprint, pool_rows=int(pool.count), shards=shards,
               rows_assigned_by_update=int(summary.get("rows_assigned_by_update", 0)) + n_new,
               n_clusters=int(labels.max()) + 1, sizes=size_summary(labels),
               headline=None,
               updates=list(summary.get("updates", [])) + [{
                   "at": _now(), "rows": n_new, "shards": [r["name"] for r in shards[len(summary["shards"]):]],
                   "index": index_info, "seconds": round(time.perf_counter() - t0, 3)}])
    new["headline"] = headline(new)
    write_summary(out, new)
    result = {**new, "rows_updated": n_new}
    if new["rows_assigned_by_update"] > 0.25 * max(1, int(new.get("rows_clustered", covered))):
        result["note"] = (f"{new['rows_assigned_by_update']} of {new['pool_rows']} rows were assigned by --update "
                          "and never form clusters of their own; re-cluster (without --update) when convenient")
        say(f"note: {result['note']}")
    return result
