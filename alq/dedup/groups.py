"""Near-duplicate groups: every pair of pool rows closer than a threshold ends up in one group.

The computation is a map over shards plus a small reduce on the driver:

1. **Index.** The faiss index of :func:`alq.cluster.knn.build_index` (the one
   ``alq cluster`` builds: IVF or exact flat, chosen by measured cost and
   recall). After ``alq cluster POOL --out CLUSTERS/`` the saved index and
   kNN graph in ``CLUSTERS.graph/`` are reused (``--clusters``): no index
   build and no search, except for the re-searches of step 2.
2. **Map (per shard).** Each row's k nearest other rows
   (:func:`alq.cluster.knn.search_partial`). A row whose k-th neighbour is
   still under the threshold is searched again with 4k, 16k, ... neighbours
   until its last one is beyond the threshold (a range search), so the k
   cap never drops a pair. Candidate pairs are re-read and their distances
   recomputed from ``x - y`` in float64 (faiss's float32 expansion is off by
   about 1e-5 |x|^2), and only pairs at distance <= threshold are returned.
   A task returns its edges only: memory is bounded by a shard, not the pool.
3. **Reduce (driver).** Union-find over the edges (single linkage at the
   threshold: the connected components of the "closer than T" graph).
   Exact duplicates are at distance 0 after step 2's recomputation, so they
   always group, even at ``--threshold 0``. The representative of a group is
   its member with the most near-duplicates (ties: the first pool row);
   groups are numbered by their first pool row.

Memory on the driver is proportional to the rows that have a near duplicate
(edges, their rows), not to N. Search recall is that of the index (measured
by ``build_index``); near duplicates are the easiest pairs for an IVF index
(they share a list), and exact duplicates always share one.

``--auto``: :mod:`alq.dedup.auto`. The map task is :mod:`alq.dedup.edges`,
the reduce :mod:`alq.dedup.components`; this module runs them in order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alq.cluster.knn import TARGET_RECALL, IndexRef, build_index
from alq.dedup.auto import auto_threshold
from alq.dedup.components import Groups, components, representatives
from alq.dedup.edges import edges_partial
from alq.errors import BadInputError

DEFAULT_KNN = 10  # as `alq cluster`, so the index planner makes the same choice


@dataclass
class DedupOptions:
    threshold: float | None = None
    auto: bool = False
    normalize: str | None = None
    knn: int = DEFAULT_KNN
    seed: int = 0
    recall: float = TARGET_RECALL
    index: str = "auto"

    def validate(self) -> None:
        if self.threshold is None and not self.auto:
            raise BadInputError("give --threshold T (a distance) or --auto",
                                hint="--threshold 0 groups exact duplicates only; --auto reads the pool's "
                                     "nearest-neighbour distances")
        if self.threshold is not None and self.auto:
            raise BadInputError("give --threshold or --auto, not both")
        if self.threshold is not None and not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise BadInputError(f"--threshold={self.threshold} must be a finite distance >= 0")
        if self.normalize not in (None, "l2"):
            raise BadInputError(f"--normalize={self.normalize!r} must be 'l2' or omitted")
        if self.knn < 1:
            raise BadInputError(f"--knn={self.knn} must be >= 1")
        if not (math.isfinite(self.recall) and 0 < self.recall <= 1):
            raise BadInputError(f"--recall={self.recall} must be in (0, 1]")
        if self.index not in ("auto", "flat", "ivf"):
            raise BadInputError(f"--index={self.index!r} must be auto, flat or ivf")


# -- the whole computation ------------------------------------------------------------------------
def _saved_graph(clusters, pool, normalize) -> tuple[IndexRef, Path, int] | str:
    """(index, graph directory, k) saved by `alq cluster` for this pool, or why it cannot be used."""
    from alq.cluster.knngraph import graph_dir, load_graph_index, shard_file

    saved = load_graph_index(Path(clusters))
    if saved is None:
        return f"{clusters} holds no saved kNN graph (clustered by the exact method, or by an older alq)"
    ref, plan = saved
    wanted = plan.get("wanted", {})
    if wanted.get("pool_fingerprint") != pool.fingerprint or int(wanted.get("rows", -1)) != pool.count:
        return f"{clusters}: its kNN graph was built for another pool (or before rows were appended)"
    if wanted.get("normalize") != normalize:
        return f"{clusters}: its kNN graph was built with normalize={wanted.get('normalize')}, not {normalize}"
    work = graph_dir(clusters)
    if not all((work / shard_file(s)).exists() for s in range(pool.n_shards)) or ref.ntotal != pool.count:
        return f"{clusters}: its saved kNN graph is incomplete"
    return ref, work, int(wanted["k"])


def compute_groups(pool, opts: DedupOptions, *, engine=None, progress=None, log=None,
                   clusters=None) -> tuple[Groups, dict]:
    """Near-duplicate groups of every pool row (module docstring). Returns (groups, info for the _dedup.parquet record)."""
    from alq.cluster.api import effective_normalize
    from alq.cluster.knngraph import shard_file
    from alq.engine import LocalEngine

    opts.validate()
    n = int(pool.count)
    if n == 0:
        raise BadInputError("the pool has no rows to deduplicate")
    say = log or (lambda msg: None)
    normalize = effective_normalize(pool, opts.normalize)
    engine = engine or LocalEngine()
    seconds: dict = {}
    t0 = time.perf_counter()
    info: dict = {"parameters": {"knn": opts.knn, "seed": opts.seed, "index_requested": opts.index,
                                 "recall_target": opts.recall, "auto": opts.auto}}
    if n == 1:
        info.update(threshold=float(opts.threshold or 0.0), threshold_rule="single row", edges=0,
                    seconds={"total": 0.0})
        empty = np.empty(0, np.int64)
        return Groups(1, empty, empty, empty), info
    k = max(1, min(opts.knn, n - 1))
    graph = None
    if clusters is not None:
        got = _saved_graph(clusters, pool, normalize)
        if isinstance(got, str):
            say(f"note: --clusters: {got}; building the index")
        else:
            graph = got
    if graph is not None:
        ref, gdir, k = graph
        info["index"] = {"reused": str(gdir), "k": k, "kind": type(ref.index).__name__}
        say(f"reusing the kNN graph of {clusters} (k={k})")
    else:
        say(f"faiss index over {n} rows")
        ref, index_info = build_index(pool, normalize=normalize, kind=opts.index, seed=opts.seed, k_for_recall=k,
                                      target_recall=opts.recall, progress=progress)
        if not index_info.get("recall_target_met", True):
            say(f"warning: the index's measured recall@{k} is {index_info['recall_at_k']:.3f}, below the target "
                f"{opts.recall:g}; some near-duplicate pairs may be missed")
        info["index"] = index_info
    seconds["index"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    if opts.threshold is not None:
        threshold, rule = float(opts.threshold), "given (--threshold)"
    else:
        threshold, auto_info = auto_threshold(pool, ref, normalize, opts.seed)
        rule = auto_info.pop("rule")
        info["auto"] = auto_info
        seconds["auto"] = time.perf_counter() - t1
    say(f"near-duplicate pairs at distance <= {threshold:.4g} ({rule})")
    t2 = time.perf_counter()
    offsets = np.asarray(pool.offsets)
    tasks = []
    for s in range(pool.n_shards):
        lo, hi = int(offsets[s]), int(offsets[s + 1])
        if hi > lo:
            gfile = str(graph[1] / shard_file(s)) if graph is not None else None
            tasks.append((lo, hi, gfile))
    state = {"rows": 0}

    def tick(rows: int) -> None:
        state["rows"] += rows
        if progress is not None:
            progress("dedup|near-duplicate search", state["rows"], n)

    if engine.in_process():
        parts = [edges_partial(pool, lo, hi, ref, k, threshold, normalize, g, tick) for lo, hi, g in tasks]
    else:
        shared = engine.share(ref)
        parts = engine.map(edges_partial, [(pool, lo, hi, shared, k, threshold, normalize, g) for lo, hi, g in tasks],
                           on_done=lambda i: tick(tasks[i][1] - tasks[i][0]))
    a = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
    b = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    if len(a):  # a pair found from both ends comes from two tasks
        pair = np.unique(np.stack([a, b], 1), axis=0)
        a, b = pair[:, 0], pair[:, 1]
    seconds["search"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    nodes, root = components(a, b)
    rep = representatives(nodes, root, a, b)
    groups = Groups(n, nodes, root, rep, n_edges=int(len(a)))
    seconds["union_find"] = time.perf_counter() - t3
    seconds["total"] = time.perf_counter() - t0
    sizes = groups.sizes()
    info.update(threshold=threshold, threshold_rule=rule, metric="euclidean", edges=int(len(a)),
                n_groups=groups.n_groups, duplicate_groups=int(len(sizes)), rows_in_duplicate_groups=int(len(nodes)),
                rows_redundant=int(len(nodes) - len(sizes)), largest_group=int(sizes.max()) if len(sizes) else 1,
                seconds={key: round(v, 3) for key, v in seconds.items()})
    return groups, info
