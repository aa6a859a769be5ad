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

``--auto`` (:func:`auto_threshold`): nearest-neighbour distances of a seeded
sample of up to ``AUTO_SAMPLE`` rows. When their log-distances show a
separate low mode (near-duplicates) below the bulk (Otsu split in log space,
the two modes at least ``AUTO_GAP`` x apart and separated by a valley at
most half as dense as the smaller peak), the threshold is that valley.
Otherwise ``AUTO_FRACTION`` x the median nearest-neighbour distance: pairs
ten times closer than a typical neighbour pair.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alq.cluster.knn import TARGET_RECALL, IndexRef, _exact_near, build_index, prepare, search_partial
from alq.errors import BadInputError

DEFAULT_KNN = 10  # as `alq cluster`, so the index planner makes the same choice
AUTO_SAMPLE = 10_000
AUTO_FRACTION = 0.1
AUTO_GAP = 4.0
GROW = 4  # k multiplier of the range-style re-search
EDGE_BATCH = 16_384  # candidate pairs recomputed exactly per batch (bounded memory)
SEARCH_ROWS = 65_536  # rows searched per step within a shard (bounded (rows, k) arrays)
_TOL = 4e-5  # slack on squared distances, times |x|^2, before the exact recomputation


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


@dataclass
class Groups:
    """The near-duplicate structure, stored for the rows that have a near duplicate only.

    ``nodes``: sorted pool rows with at least one near duplicate; ``root``:
    the first pool row of each one's group; ``rep``: its group's
    representative. Every other row is a group of its own.
    """

    n: int
    nodes: np.ndarray
    root: np.ndarray
    rep: np.ndarray
    n_edges: int = 0

    def __post_init__(self):
        self._nonroot = np.sort(self.nodes[self.root != self.nodes])

    def _lookup(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        pos = np.searchsorted(self.nodes, rows)
        pos_c = np.minimum(pos, max(0, len(self.nodes) - 1))
        hit = (pos < len(self.nodes)) & (self.nodes[pos_c] == rows) if len(self.nodes) else np.zeros(len(rows), bool)
        out = rows.copy()
        out[hit] = values[pos_c[hit]]
        return out

    def group_of(self, rows) -> np.ndarray:
        """Group id (0..G-1, numbered by first pool row) of each row."""
        r = self._lookup(rows, self.root)
        return r - np.searchsorted(self._nonroot, r)

    def rep_of(self, rows) -> np.ndarray:
        return self._lookup(rows, self.rep)

    @property
    def n_groups(self) -> int:
        return int(self.n - len(self._nonroot))

    def sizes(self) -> np.ndarray:
        """Sizes of the groups with two or more rows."""
        _, counts = np.unique(self.root, return_counts=True)
        return counts


def components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union-find over edges (a[i], b[i]): (nodes sorted, smallest row of each node's component).

    Vectorised hooking of the larger root under the smaller, then pointer
    jumping, until every edge has one root: O(E log E) in numpy.
    """
    nodes = np.unique(np.concatenate([a, b]).astype(np.int64))
    if len(nodes) == 0:
        return nodes, nodes.copy()
    ia = np.searchsorted(nodes, a)
    ib = np.searchsorted(nodes, b)
    parent = np.arange(len(nodes), dtype=np.int64)
    while True:
        ra, rb = parent[ia], parent[ib]
        differ = ra != rb
        if not differ.any():
            break
        lo, hi = np.minimum(ra[differ], rb[differ]), np.maximum(ra[differ], rb[differ])
        np.minimum.at(parent, hi, lo)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return nodes, nodes[parent]


def representatives(nodes: np.ndarray, root: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each node's group representative: the member with the most edges, ties the smallest row."""
    if len(nodes) == 0:
        return nodes.copy()
    deg = np.bincount(np.searchsorted(nodes, a), minlength=len(nodes)) + \
        np.bincount(np.searchsorted(nodes, b), minlength=len(nodes))
    order = np.lexsort((nodes, -deg, root))  # by group, then most edges, then row
    first = np.ones(len(order), bool)
    first[1:] = root[order][1:] != root[order][:-1]
    rep_of_root = dict(zip(root[order][first].tolist(), nodes[order][first].tolist()))
    return np.array([rep_of_root[r] for r in root.tolist()], dtype=np.int64)


# -- the map task ---------------------------------------------------------------------------------
def _search_rows(pool, rows: np.ndarray, ref: IndexRef, k: int,
                 normalize) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k nearest other rows of the given pool rows.

    Returns (neighbours (m, k), distances (m, k) float64, squared norms of the rows (m,)).
    """
    x = prepare(pool.take(rows, dtype=np.float32), normalize)
    qn = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    kk = min(k + 1, ref.ntotal)
    d2, idx = ref.search(x, kk)
    own = idx == rows[:, None]
    drop = np.where(own.any(1), own.argmax(1), kk - 1)
    keep = np.ones_like(own)
    keep[np.arange(len(idx)), drop] = False
    idx = idx[keep].reshape(len(idx), kk - 1)
    d2 = d2[keep].reshape(len(idx), kk - 1)
    d2 = _exact_near(pool, x, idx, d2, normalize)
    return idx, np.sqrt(np.maximum(np.asarray(d2, dtype=np.float64), 0)), qn


def _exact_pairs(pool, a: np.ndarray, b: np.ndarray, normalize) -> np.ndarray:
    """Distances of pairs (a[i], b[i]) from x - y in float64, in bounded batches."""
    out = np.empty(len(a), dtype=np.float64)
    for s in range(0, len(a), EDGE_BATCH):
        xa = prepare(pool.take(a[s:s + EDGE_BATCH], dtype=np.float32), normalize).astype(np.float64)
        xb = prepare(pool.take(b[s:s + EDGE_BATCH], dtype=np.float32), normalize).astype(np.float64)
        out[s:s + EDGE_BATCH] = np.sqrt(((xa - xb) ** 2).sum(1))
    return out


def edges_partial(pool, lo: int, hi: int, ref: IndexRef, k: int, threshold: float, normalize,
                  graph_file: str | None = None, progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map task: the near-duplicate pairs of rows [lo, hi): (a, b, distance), a < b, each pair once.

    ``graph_file``: this shard's saved kNN graph (``alq cluster``'s
    ``knn-SHARD.parquet``) read instead of searching. ``progress(rows)``
    after each step (in-process runs).
    """
    from alq.cluster.knngraph import read_knn_shard

    saved = read_knn_shard(Path(graph_file)) if graph_file else None
    ntotal = ref.ntotal
    pa, pb = [], []
    for s in range(lo, hi, SEARCH_ROWS):
        e = min(hi, s + SEARCH_ROWS)
        if saved is not None:
            nbr, dist = saved[0][s - lo:e - lo], saved[1][s - lo:e - lo].astype(np.float64)
        else:
            nbr, dist = search_partial(pool, s, e, ref, k, normalize, True)
            dist = dist.astype(np.float64)
        x = prepare(pool.take(np.arange(s, e), dtype=np.float32), normalize)
        qn = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        del x
        slack = threshold ** 2 + _TOL * qn  # squared: faiss's rounding, before the exact check
        cand = (nbr >= 0) & (dist ** 2 <= slack[:, None])
        rows = np.arange(s, e, dtype=np.int64)
        kk = nbr.shape[1]
        full = cand[:, -1] if kk else np.zeros(len(rows), bool)  # the k-th neighbour is still close
        qi, col = np.nonzero(cand & ~full[:, None])
        pa.append(rows[qi])
        pb.append(nbr[qi, col])
        more = rows[full]
        if len(more) > 1:  # identical rows: one of each set searches on, the others join it (edge at 0)
            first, same_as = _identical(prepare(pool.take(more, dtype=np.float32), normalize))
            pa.append(more[same_as])
            pb.append(more)
            more = more[first]
        k_more = kk
        while len(more) and k_more < ntotal - 1:
            k_more = min(ntotal - 1, k_more * GROW)
            n2, d2, qn2 = _search_rows(pool, more, ref, k_more, normalize)
            sl = threshold ** 2 + _TOL * qn2
            c2 = (n2 >= 0) & (d2 ** 2 <= sl[:, None])
            again = c2[:, -1] & (k_more < ntotal - 1)
            qi, col = np.nonzero(c2 & ~again[:, None])
            pa.append(more[qi])
            pb.append(n2[qi, col])
            more = more[again]
        if progress is not None:
            progress(e - s)
    a = np.concatenate(pa) if pa else np.empty(0, np.int64)
    b = np.concatenate(pb) if pb else np.empty(0, np.int64)
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = a != b
    pair = np.unique(np.stack([a[keep], b[keep]], 1), axis=0) if keep.any() else np.empty((0, 2), np.int64)
    d = _exact_pairs(pool, pair[:, 0], pair[:, 1], normalize)
    ok = d <= threshold
    return pair[ok, 0].astype(np.int64), pair[ok, 1].astype(np.int64), d[ok]


def _identical(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the first row of each set of identical rows, sorted; that first position for every row).

    A large set of identical rows (blank images, a repeated frame) would
    otherwise make every member search past the whole set.
    """
    v = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inv = np.unique(v, return_index=True, return_inverse=True)
    return np.sort(first), first[inv.reshape(-1)]


# -- --auto ---------------------------------------------------------------------------------------
def auto_threshold(pool, ref: IndexRef, normalize, seed: int) -> tuple[float, dict]:
    """The threshold ``--auto`` chooses (module docstring), and what it saw."""
    n = pool.count
    rng = np.random.default_rng([seed, 19])
    rows = np.sort(rng.choice(n, size=min(AUTO_SAMPLE, n), replace=False)).astype(np.int64)
    _, dist, _ = _search_rows(pool, rows, ref, 1, normalize)
    return threshold_from_nn(dist[:, 0])


def threshold_from_nn(d: np.ndarray) -> tuple[float, dict]:
    """The ``--auto`` rule on a sample of nearest-neighbour distances (pure, for tests)."""
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    z = d[d > 0]
    info = {"sample_rows": int(len(d)), "sample_exact_duplicates": int((d == 0).sum())}
    if len(z) < 20:
        info["rule"] = "auto: too few distinct neighbour distances in the sample; exact duplicates only"
        return 0.0, info
    med = float(np.median(z))
    info["nn_distance_quantiles"] = {q: float(np.quantile(z, float(q))) for q in ("0.01", "0.1", "0.5", "0.9")}
    logz = np.log(z)
    hist, edges = np.histogram(logz, bins=64)
    hist_s = np.convolve(hist, np.ones(3) / 3, mode="same")
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)[:-1].astype(np.float64)
    w1 = len(z) - w0
    s0 = np.cumsum(hist * centers)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = ((hist * centers).sum() - s0) / np.maximum(w1, 1)
    between = np.where((w0 > 0) & (w1 > 0), w0 * w1 * (m0 - m1) ** 2, -1)
    split = int(np.argmax(between))
    gap = float(m1[split] - m0[split])
    p_lo = int(np.argmax(hist_s[:split + 1]))
    p_hi = split + 1 + int(np.argmax(hist_s[split + 1:]))
    v = p_lo + int(np.argmin(hist_s[p_lo:p_hi + 1]))
    valley_ok = hist_s[v] <= 0.5 * min(hist_s[p_lo], hist_s[p_hi])
    if gap >= math.log(AUTO_GAP) and valley_ok and p_hi > p_lo:
        t = float(math.exp(edges[v + 1]))
        info.update(rule=("auto: the valley between the near-duplicate mode and the bulk of the sample's "
                          "nearest-neighbour distances (log scale)"), modes_ratio=round(math.exp(gap), 2),
                    below_threshold_share=round(float((d <= t).mean()), 4))
        return t, info
    t = AUTO_FRACTION * med
    info.update(rule=f"auto: {AUTO_FRACTION:g} x the median nearest-neighbour distance of the sample "
                     "(no separate near-duplicate mode)",
                below_threshold_share=round(float((d <= t).mean()), 4))
    return t, info


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
