"""``alq cluster`` as library calls: cluster a pool once, assign appended rows, write the directory.

:func:`compute_clusters` is the pure computation (any :class:`~alq.store.Pool`,
no files); :func:`cluster_pool` writes a cluster directory atomically;
:func:`alq.cluster.update.update_clusters` gives rows appended since
(``alq embed --append``) the cluster of their nearest clustered neighbour.
Average linkage follows Citovsky et al. 2021 ("Batch Active Learning at
Scale"), which clusters the pool once and reuses the clusters every round.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alq import __version__
from alq.cluster import exact as _exact
from alq.cluster.dense import finish_dense
from alq.cluster.graph import edges_from_knn, graph_average_linkage
from alq.cluster.knn import TARGET_RECALL, prepare
from alq.cluster.knngraph import graph_dir, knn_graph
from alq.cluster.linkage import size_summary
from alq.cluster.store import (
    FORMAT,
    VERSION,
    check_out_dir,
    new_build_dir,
    pool_label,
    publish,
    shard_records,
    write_shard,
    write_summary,
)
from alq.config import return_freed_memory
from alq.errors import BadInputError

METHODS = ("auto", "exact", "graph")
DEFAULT_KNN = 10
# Default cut (no --threshold / --n-clusters): eps = AUTO_SCALE x the median distance from a row
# to its AUTO_NEIGHBOUR-th nearest neighbour. Scale-free, so it means the same for any encoder.
# Chosen at large batch on real embeddings (Fashion-MNIST 60k x 512, `python tests/bench/bench_cluster.py
# default-cut`, 2 seeds): scales 1.0 / 1.5 / 2.0 / 3.0 give 28,061 / 9,378 / 3,210 / 484 clusters with
# 34% / 9% / 2% / 0% of rows in singletons; Cluster-Margin's final top-1 minus margin's was -0.0065 /
# -0.0052 / -0.0045 / -0.0045 at 4 x 2,000 and +0.0001 / +0.0003 / -0.0000 / -0.0001 at 2 x 10,000.
# No cut helped at large batch (differences within 0.2 points at 2k, 0.05 at 10k), and a coarser
# default is not safe on other pools: at 1.5 the bench mixture (20k rows of 2,000 components) collapses
# to 56 exact clusters and the graph path, whose kNN edges do not reach that far, gives 1,036 (ARI 0.017
# vs exact, against 1.000 at 1.0); at 2.0 the 3,000-row test pool's cut passes the graph's longest edge.
# On sklearn's digits (1,297 rows, b = 60) 1.0 gave the best small-batch curve (bench_cluster.py).
# So 1.0 stays; `alq cluster` warns when more than half the rows are singletons.
AUTO_NEIGHBOUR = 10
AUTO_SCALE = 1.0
# The graph HAC keeps one float32 vector sum per cluster (to estimate the distances of pairs
# without an edge): above this many bytes the rows are randomly projected to fewer dimensions.
SUFFICIENT_BYTES_MAX = 2 * 2**30

DESCRIPTION = ("Average-linkage hierarchical agglomerative clustering of the pool's embeddings "
               "(Citovsky et al. 2021, Cluster-Margin). One cluster id per pool row, in one Parquet file per "
               "pool shard (columns id, cluster; same rows, same order). Used by "
               "`alq select --strategy cluster-margin --clusters DIR`.")


@dataclass
class ClusterOptions:
    threshold: float | None = None
    n_clusters: int | None = None
    normalize: str | None = None
    method: str = "auto"
    knn: int = DEFAULT_KNN
    seed: int = 0
    index: str = "auto"  # kNN index: auto | flat | ivf
    recall: float = TARGET_RECALL  # the kNN graph's recall@k target, measured on a sample

    def validate(self) -> None:
        if self.threshold is not None and self.n_clusters is not None:
            raise BadInputError("give --threshold or --n-clusters, not both")
        if self.threshold is not None and not (np.isfinite(self.threshold) and self.threshold >= 0):
            raise BadInputError(f"--threshold={self.threshold} must be a finite distance >= 0")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise BadInputError(f"--n-clusters={self.n_clusters} must be >= 1")
        if self.normalize not in (None, "l2"):
            raise BadInputError(f"--normalize={self.normalize!r} must be 'l2' or omitted")
        if self.method not in METHODS:
            raise BadInputError(f"--method={self.method!r} must be one of {', '.join(METHODS)}")
        if self.knn < 1:
            raise BadInputError(f"--knn={self.knn} must be >= 1")
        if not (np.isfinite(self.recall) and 0 < self.recall <= 1):
            raise BadInputError(f"--recall={self.recall} must be in (0, 1]")
        if self.index not in ("auto", "flat", "ivf"):
            raise BadInputError(f"--index={self.index!r} must be auto, flat or ivf")


@contextlib.contextmanager
def _work_dir(work: Path | None):
    if work is not None:
        yield Path(work)
        return
    with tempfile.TemporaryDirectory(prefix="alq-knn-") as tmp:
        yield Path(tmp) / "graph"


def work_dir_for(out) -> Path:
    """Where a clustering to ``out`` checkpoints its kNN graph (beside it, hidden; kept for --resume)."""
    out = Path(out)
    return out.parent / f".{out.name}.knn-work"


def choose_method(method: str, n: int) -> str:
    if method == "auto":
        return "exact" if n <= _exact.EXACT_AUTO_MAX_ROWS else "graph"
    return method


def effective_normalize(pool, normalize: str | None) -> str | None:
    """l2-normalise only when asked and the pool is not stored normalised already."""
    return "l2" if normalize == "l2" and getattr(pool, "normalize", None) != "l2" else None


def _auto_threshold(kth: np.ndarray) -> tuple[float, str]:
    kth = kth[np.isfinite(kth)]
    if kth.size == 0:
        return 0.0, "auto: no neighbours (every row alone)"
    eps = float(AUTO_SCALE * np.median(kth))
    return eps, f"auto: {AUTO_SCALE:g} x the median distance from a row to its {AUTO_NEIGHBOUR}th nearest neighbour"


def compute_clusters(pool, opts: ClusterOptions, *, engine=None, device=None, progress=None,
                     log=None, work: Path | None = None, resume: bool = False) -> tuple[np.ndarray, dict]:
    """Cluster every row of ``pool``. Returns (labels int64 (N,), info for clusters.json).

    ``work``: where the kNN graph's checkpoint goes (:mod:`alq.cluster.knngraph`;
    a temporary directory when None); ``resume`` reuses one a killed run left.
    """
    opts.validate()
    n = pool.count
    if n == 0:
        raise BadInputError("the pool has no rows to cluster")
    if opts.n_clusters is not None and opts.n_clusters > n:  # it would silently give n singletons
        raise BadInputError(f"--n-clusters={opts.n_clusters} exceeds the {n} pool rows",
                            hint=f"ask for at most {n} clusters")
    method = choose_method(opts.method, n)
    normalize = effective_normalize(pool, opts.normalize)
    k = max(1, min(opts.knn, n - 1))
    k_auto = max(1, min(AUTO_NEIGHBOUR, n - 1))
    say = log or (lambda msg: None)
    info: dict = {"method": method, "parameters": {"method_requested": opts.method, "knn": opts.knn,
                                                    "seed": opts.seed,
                                                    "exact_auto_max_rows": _exact.EXACT_AUTO_MAX_ROWS}}
    seconds: dict = {}
    t0 = time.perf_counter()
    if n == 1:
        labels = np.zeros(1, dtype=np.int64)
        info["cut"] = {"by": "single row", "threshold": opts.threshold, "n_clusters_requested": opts.n_clusters}
        info["threshold"] = opts.threshold
        info["seconds"] = {"total": 0.0}
        return labels, info
    if method == "exact":
        _exact.check_exact_fits(n)
        say(f"exact average linkage on {n} rows ({_exact.matrix_bytes(n) / 2**20:.0f} MiB distance matrix)")
        x = prepare(pool.take(np.arange(n), dtype=np.float32), normalize, 0)
        d = _exact.pairwise_distances(x)
        del x
        kth = np.concatenate([np.partition(d[i:i + 1024], k_auto - 1, axis=1)[:, k_auto - 1]
                              for i in range(0, n, 1024)]).astype(np.float64)  # no N x N copy
        seconds["distances"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        den = _exact.nn_chain_average(d, progress=progress)
        del d
        seconds["linkage"] = time.perf_counter() - t1
        threshold_for_run = None
    else:
        from alq.engine import LocalEngine

        engine = engine or LocalEngine()
        kq = max(k, k_auto)
        say(f"kNN graph (k={kq}) over {n} rows with faiss")
        with _work_dir(work) as wd:
            nbr, dist, index_info = knn_graph(pool, k=kq, normalize=normalize, seed=opts.seed, kind=opts.index,
                                              target_recall=opts.recall, engine=engine, work=wd,
                                              resume=resume, progress=progress, log=say)
        info["parameters"]["index"] = index_info
        if not index_info.get("recall_target_met", True):
            say(f"warning: the kNN graph's measured recall@{kq} is {index_info['recall_at_k']:.3f}, below the "
                f"target {opts.recall:g} ({index_info.get('why', '')}); clusters may split true neighbours")
        seconds.update(index_info.pop("stage_seconds"))
        kth = dist[:, k_auto - 1].astype(np.float64)
        edges = list(edges_from_knn(nbr[:, :k], dist[:, :k]))  # [a, b, w], handed over to the linkage
        del nbr, dist
        return_freed_memory()  # the index's and the search's freed buffers, before the linkage's peak
        missing = float(edges[2].max()) if len(edges[2]) else 0.0
        n_edges = len(edges[0])
        t_vec = time.perf_counter()
        vectors, proj_dim = sufficient_vectors(pool, normalize, seed=opts.seed)
        seconds["vectors"] = time.perf_counter() - t_vec
        threshold_for_run = None
        if opts.n_clusters is None:
            threshold_for_run = opts.threshold if opts.threshold is not None else _auto_threshold(kth)[0]
            if opts.threshold is None and threshold_for_run >= missing:
                # linkages on the graph never exceed its longest edge: stay just under it
                threshold_for_run = 0.95 * missing
                info["auto_threshold_clamped"] = True
            elif threshold_for_run >= missing:
                say(f"warning: --threshold {threshold_for_run:g} is not below the kNN graph's longest edge "
                    f"({missing:.4g}): every connected group merges; raise --knn or lower --threshold")
        t1 = time.perf_counter()
        say(f"graph average linkage over {n_edges} edges")
        from alq.device import serial, torch_device

        device = device or torch_device()
        with serial(device):  # memory-bound passes: one thread is as fast, and far faster on a busy machine
            den, gstats = graph_average_linkage(n, edges=edges, threshold=threshold_for_run, vectors=vectors,
                                                device=device, progress=progress, vectors_scratch=True)
        gstats["longest_edge"] = missing
        gstats["projected_dim"] = proj_dim
        if opts.n_clusters is not None:
            vectors, _ = sufficient_vectors(pool, normalize, seed=opts.seed)  # the linkage summed into the first
            den, dense = finish_dense(den, vectors, opts.n_clusters, seed=opts.seed)
            if dense:
                gstats["dense_finish"] = dense
        del vectors
        seconds["linkage"] = time.perf_counter() - t1
        info["graph"] = gstats
    if opts.n_clusters is not None:
        labels = den.cut(n_clusters=opts.n_clusters)
        applied = min(den.n_merges, max(0, n - opts.n_clusters))
        eps = float(den.height[applied - 1]) if applied else 0.0
        cut = {"by": "n_clusters", "n_clusters_requested": int(opts.n_clusters), "threshold": eps,
               "threshold_rule": "height of the last merge made"}
    else:
        if opts.threshold is not None:
            eps, rule = float(opts.threshold), "given (--threshold)"
        elif threshold_for_run is not None:
            eps, rule = threshold_for_run, _auto_threshold(kth)[1]
            if info.get("auto_threshold_clamped"):
                rule += ", clamped to 0.95 x the longest kNN edge"
        else:
            eps, rule = _auto_threshold(kth)
        labels = den.cut(threshold=eps)
        cut = {"by": "threshold", "threshold": eps, "threshold_rule": rule, "n_clusters_requested": None}
    info["cut"] = cut
    info["threshold"] = cut["threshold"]
    singletons = int((np.bincount(labels) == 1).sum())
    info["singleton_share"] = round(singletons / n, 4)
    if singletons > n / 2:
        say(f"warning: {singletons} of {n} rows ({singletons / n:.0%}) are clusters of their own at this cut: "
            "cluster-margin then mostly takes margin's candidates in another order; a coarser cut "
            "(a larger --threshold, or --n-clusters) gives it groups to spread the batch over")
    info["knn_distance_median"] = float(np.median(kth[np.isfinite(kth)])) if np.isfinite(kth).any() else None
    seconds["total"] = time.perf_counter() - t0
    info["seconds"] = {key: round(v, 3) for key, v in seconds.items()}
    return labels, info


def sufficient_vectors(pool, normalize: str | None, *, seed: int = 0,
                       max_bytes: int = SUFFICIENT_BYTES_MAX) -> tuple[np.ndarray, int | None]:
    """The rows as float32 (N, d') for the graph HAC's cluster sums, streamed from the shards.

    d' = d when N x d x 4 bytes fit in ``max_bytes``; else a seeded Gaussian
    random projection to d' = max(32, max_bytes / 4N) dimensions, which keeps
    squared distances in expectation (Johnson-Lindenstrauss). Returns
    (vectors, d' or None when not projected).
    """
    import torch

    n, d = pool.count, pool.dim
    proj = None
    d_out = d
    if n * d * 4 > max_bytes:
        d_out = max(32, int(max_bytes // (4 * n)))
        if d_out < d:
            gen = torch.Generator().manual_seed(int(seed) + 12345)
            proj = (torch.randn(d, d_out, generator=gen, dtype=torch.float32) / np.sqrt(d_out)).numpy()
        else:
            d_out = d
    out = np.empty((n, d_out), dtype=np.float32)
    for block in pool.iter_blocks():
        x = prepare(block.vectors, normalize, block.start)
        out[block.start:block.stop] = x @ proj if proj is not None else x
    # distances do not change under a shift; centring keeps |x|^2 near d^2, so the float32 sums
    # and dot products of the squared-distance identity lose no precision to a shared offset
    mean = out.mean(axis=0, dtype=np.float64).astype(np.float32)
    for lo in range(0, n, 1 << 16):
        out[lo:lo + (1 << 16)] -= mean
    return out, (d_out if proj is not None else None)


def headline(summary: dict) -> str:
    """One line that says what the directory holds (for `alq info` and logs)."""
    sizes = summary.get("sizes", {})
    line = (f"{summary['n_clusters']} clusters of {summary['pool_rows']} rows (mean size {sizes.get('mean')}, "
            f"largest {sizes.get('max')}, {sizes.get('singletons')} singletons); {summary['method']} average linkage")
    if summary.get("threshold") is not None:
        line += f", cut at distance {summary['threshold']:.4g} ({summary['cut'].get('threshold_rule')})"
    if summary.get("rows_assigned_by_update"):
        line += f"; {summary['rows_assigned_by_update']} appended rows assigned to their nearest neighbour's cluster"
    return line


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def cluster_pool(pool, out, opts: ClusterOptions, *, engine=None, device=None, progress=None, log=None,
                 resume: bool = False) -> dict:
    """Cluster the pool and write ``out`` atomically (the previous directory survives a crash).

    The kNN graph is checkpointed beside ``out`` (:func:`work_dir_for`) while
    it is built, so ``resume`` after a kill searches only the shards left;
    the finished graph and its index end up beside ``out`` (:func:`~alq.cluster.knngraph.graph_dir`).
    """
    opts.validate()
    out = Path(out)
    check_out_dir(out)  # refuse a foreign --out before spending the time
    work = work_dir_for(out)
    labels, info = compute_clusters(pool, opts, engine=engine, device=device, progress=progress, log=log,
                                    work=work, resume=resume)
    build = new_build_dir(out)
    try:
        if work.exists():  # the graph of the clustering about to be published replaces the last one's
            shutil.rmtree(graph_dir(out), ignore_errors=True)
            os.replace(work, graph_dir(out))
        shards = []
        offsets = pool.offsets
        for s, rec in enumerate(shard_records(pool)):
            lab = labels[offsets[s]:offsets[s + 1]]
            rec.update(write_shard(build, rec["name"], pool.shard_ids(s), lab, id_type=pool.id_type, how="hac"))
            shards.append(rec)
        summary = {
            "format": FORMAT, "version": VERSION, "alq_version": __version__, "created": _now(), "updated": None,
            "description": DESCRIPTION,
            "pool": pool_label(pool), "pool_fingerprint": pool.fingerprint, "pool_rows": int(pool.count),
            "dim": int(pool.dim), "rows_clustered": int(pool.count), "rows_assigned_by_update": 0,
            "n_clusters": int(labels.max()) + 1, "sizes": size_summary(labels),
            "linkage": "average", "metric": "euclidean",
            "normalize": opts.normalize, "normalize_applied": effective_normalize(pool, opts.normalize),
            **info, "shards": shards, "updates": [],
        }
        summary["headline"] = headline(summary)
        write_summary(build, summary)
        publish(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return summary
