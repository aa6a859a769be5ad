"""k-nearest-neighbour search over a pool with faiss: the graph for large-pool HAC.

The index is built on the driver by streaming the pool's blocks into it;
the queries are a map over shards (:func:`search_partial`) so an engine can
run them in parallel. faiss uses the GPU build's devices when present
(``alq.device.faiss_gpu_count``). The exact answers it is measured
against come from :mod:`alq.cluster.exactknn`.

How the index is chosen (:func:`build_index`), by measurement, once:

1. A seeded sample of ``RECALL_QUERIES`` rows gets its exact k nearest
   neighbours from one streamed brute-force pass (:func:`exact_knn`); its
   time, scaled to N queries, is the cost of an exact (flat) graph.
2. Up to ``FLAT_MAX_ROWS`` rows the flat index is used outright (brute
   force costs seconds there). Above, an inverted-file index
   ``IndexIVFFlat`` with about 4 sqrt(N) lists is trained on a seeded
   sample of 39 rows per list and filled by streaming the pool.
3. The sample queries are searched at nprobe 1, 2, 4, ... (only the sample:
   a few milliseconds each), each timed and scored against the exact
   answer; the first nprobe whose recall@k reaches the target is refined
   downwards once (3/4 of it). Its time scaled to N is the IVF graph's cost.
4. The cheaper of the two that reaches the target is kept. An IVF index
   that cannot reach the target before costing more than the exact graph
   gives way to the flat index (exact: recall 1), unless a flat index of
   the pool would not fit in ``FLAT_MAX_BYTES``; then the IVF index is kept
   at the best recall it reached, and the info says the target was missed.

Why IVF-Flat and not IVF-PQ or HNSW (``tests/bench/bench_cluster.py``
prints the comparison): on data with real neighbourhoods (image
embeddings, mixtures) IVF-Flat reaches recall@10 >= 0.99 at nprobe 8-16
of 4 sqrt(N) lists, its distances are exact (no re-ranking pass), it is
built in one k-means on a sample plus one assignment pass, and its build
and search are deterministic for a seed. HNSW builds 5-15x slower on 2
cores, and IVF-PQ needs the raw vectors again to re-rank. On data without
neighbourhoods (an isotropic Gaussian in 128-d: every method needs most of
the pool per query) the planner picks the exact flat search, which is then
the floor itself.

Every native search call handles at most about ``CALL_SECONDS`` of work
(the block size comes from the measured per-query time), so SIGTERM and
Ctrl-C stop a search within seconds.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from alq.cluster.exactknn import _faiss, exact_knn, exact_near, prepare, recall
from alq.cluster.ivf import block_rows_for, flat_index, ivf_index, plan_index
from alq.config import return_freed_memory
from alq.device import faiss_gpu_count, faiss_set_nprobe, faiss_to_gpu
from alq.errors import BadInputError

FLAT_MAX_ROWS = 20_000
FLAT_MAX_BYTES = 4 * 2**30  # the largest flat (exact) index the planner falls back to
TARGET_RECALL = 0.95
RECALL_QUERIES = 1000
CALL_SECONDS = 1.0  # target duration of one native search call (how soon a signal is seen)
# deserialised indexes of this process, by content digest: a Ray worker loads an index once, not per task
_LOADED: dict[str, object] = {}


class IndexRef:
    """A faiss index that pickles (as its serialized bytes), so map tasks can receive it.

    ``query_rows``: how many queries one native search call takes (about
    ``CALL_SECONDS`` of work), so a signal is seen within seconds.
    """

    def __init__(self, index, *, nprobe: int | None = None, query_rows: int = 4096):
        self.index = index
        self.nprobe = nprobe
        self.query_rows = int(query_rows)
        self._digest: str | None = None
        self._apply_nprobe()

    def _apply_nprobe(self):
        if self.nprobe is not None:
            faiss_set_nprobe(self.index, self.nprobe)

    def set_nprobe(self, nprobe: int | None) -> None:
        self.nprobe = nprobe
        self._apply_nprobe()

    def cpu_index(self):
        faiss = _faiss()
        index = self.index
        if faiss_gpu_count() > 0 and hasattr(faiss, "index_gpu_to_cpu"):
            try:
                index = faiss.index_gpu_to_cpu(index)
            except (RuntimeError, AttributeError):
                pass
        return index

    @classmethod
    def from_file(cls, path, nprobe: int | None, query_rows: int) -> IndexRef:
        """A reference that pickles as the bytes of the saved index at ``path``, never building it here."""
        ref = cls.__new__(cls)
        ref.index, ref.nprobe, ref.query_rows, ref._digest, ref._path = None, nprobe, int(query_rows), None, path
        return ref

    def __getstate__(self):
        path = getattr(self, "_path", None)
        data = np.fromfile(path, dtype=np.uint8) if self.index is None and path else \
            _faiss().serialize_index(self.cpu_index())
        if self._digest is None:
            self._digest = hashlib.sha256(memoryview(data)).hexdigest()
        return {"bytes": data, "digest": self._digest, "nprobe": self.nprobe, "query_rows": self.query_rows}

    def __setstate__(self, state):
        digest = state.get("digest")
        index = _LOADED.get(digest) if digest else None
        if index is None:
            index = _to_gpu(_faiss().deserialize_index(state["bytes"]))
            if digest:
                _LOADED.clear()  # one index per worker at a time: a new clustering replaces the last
                _LOADED[digest] = index
        self.index = index
        self._digest = digest
        self.nprobe = state["nprobe"]
        self.query_rows = int(state.get("query_rows", 4096))
        self._apply_nprobe()

    def save(self, path) -> None:
        _faiss().write_index(self.cpu_index(), str(path))

    @classmethod
    def load(cls, path, *, nprobe: int | None, query_rows: int) -> IndexRef:
        return cls(_to_gpu(_faiss().read_index(str(path))), nprobe=nprobe, query_rows=query_rows)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(squared L2 distances (n, k) float32, labels (n, k) int64; -1 where fewer than k found).

        In calls of at most ``query_rows`` queries, so signals are handled between them.
        """
        if len(x) <= self.query_rows:
            return self.index.search(x, int(k))
        parts = [self.index.search(x[i:i + self.query_rows], int(k)) for i in range(0, len(x), self.query_rows)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def search_and_release(pool, lo: int, hi: int, ref: IndexRef, k: int, normalize: str | None,
                       exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """:func:`search_partial`, then this process forgets its cached copy of the index.

    A Ray worker keeps a deserialised index for its later tasks (``_LOADED``); once its last
    task of a search has run, that copy (N x d float32 for IVF-Flat: 2.6 GB at 5M x 128) would
    otherwise stay resident while the driver links the graph.
    """
    try:
        return search_partial(pool, lo, hi, ref, k, normalize, exclude_self)
    finally:
        if ref._digest:
            _LOADED.pop(ref._digest, None)
        ref.index = None
        return_freed_memory()


def _to_gpu(index):
    return faiss_to_gpu(index)


def _query_rows(seconds_per_query: float) -> int:
    """Queries per native call for about CALL_SECONDS of work (64 .. 16384)."""
    if not seconds_per_query > 0:
        return 16384
    return int(min(16384, max(64, CALL_SECONDS / seconds_per_query)))


def build_index(pool, *, hi: int | None = None, normalize: str | None = None, kind: str = "auto",
                seed: int = 0, k_for_recall: int = 10, target_recall: float = TARGET_RECALL,
                progress=None) -> tuple[IndexRef, dict]:
    """Index rows [0, hi) of the pool (all by default), chosen by measured cost and recall (module docstring).

    Returns (index, info for clusters.json): the index kind, its parameters,
    the measured recall@k on the sample and the estimated seconds of each
    candidate. ``info["recall_target_met"]`` is False when no affordable
    index reached ``target_recall`` (the caller warns).
    """
    n = pool.count if hi is None else int(hi)
    if n < 1:
        raise BadInputError("cannot index an empty pool")
    if not 0 < target_recall <= 1:
        raise BadInputError(f"--recall={target_recall} must be in (0, 1]")
    plan = plan_index(n, kind, flat_max_rows=FLAT_MAX_ROWS)
    info: dict = {"gpu": faiss_gpu_count() > 0, "recall_target": target_recall}
    k = max(1, min(int(k_for_recall), n - 1))
    if plan["kind"] == "flat" and (kind == "flat" or n <= FLAT_MAX_ROWS):
        t0 = time.perf_counter()
        index = flat_index(pool, n, normalize, progress)
        per_query = 2.0 * n * pool.dim / 2e10  # a flat search: about 2 n d flops per query at ~20 GFLOP/s
        info.update(index="flat", recall_at_k=1.0, recall_target_met=True,
                    build_seconds=round(time.perf_counter() - t0, 3))
        return IndexRef(index, query_rows=_query_rows(per_query)), info

    # 1. the exact answer for a seeded sample of queries, and what an exact graph would cost
    rng = np.random.default_rng([seed, 11])
    rows = np.sort(rng.choice(n, size=min(RECALL_QUERIES, n), replace=False))
    queries = prepare(pool.take(rows, dtype=np.float32), normalize)
    t0 = time.perf_counter()
    if progress is not None:
        progress("index|index: exact neighbours of the recall sample", 0, 1)
    truth = exact_knn(pool, queries, k, hi=n, normalize=None, query_rows=rows, prepared=True)
    flat_per_query = (time.perf_counter() - t0) / len(rows)
    flat_bytes = n * pool.dim * 4
    info.update(recall_queries=int(len(rows)), flat_seconds_estimate=round(flat_per_query * n, 1))

    # 2. the IVF index
    t0 = time.perf_counter()
    index = ivf_index(pool, n, plan, normalize, seed, progress)
    info.update(nlist=plan["nlist"], train_rows=plan["train_rows"], build_seconds=round(time.perf_counter() - t0, 3))
    ref = IndexRef(index)

    # 3. nprobe by measurement on the sample only
    tried: list[dict] = []

    def trial(p: int) -> dict:
        ref.set_nprobe(p)
        t = time.perf_counter()
        _, got = ref.index.search(queries, k + 1)
        per_query = (time.perf_counter() - t) / len(rows)
        rec = {"nprobe": int(p), "recall": recall(got, truth, rows), "seconds_estimate": per_query * n,
               "per_query": per_query}
        tried.append(rec)
        return rec

    best = None
    p = 1
    while True:
        rec = trial(min(p, plan["nlist"]))
        if rec["recall"] >= target_recall:
            best = rec
            lower = (3 * rec["nprobe"]) // 4
            if rec["nprobe"] >= 4 and lower > rec["nprobe"] // 2:
                rec2 = trial(lower)
                if rec2["recall"] >= target_recall:
                    best = rec2
            break
        if rec["nprobe"] >= plan["nlist"] or rec["seconds_estimate"] > flat_per_query * n:
            break
        p *= 2
    info["nprobe_trials"] = [{"nprobe": r["nprobe"], "recall": round(r["recall"], 4),
                              "seconds_estimate": round(r["seconds_estimate"], 1)} for r in tried]

    # 4. keep the cheaper index that reaches the target
    flat_ok = kind != "ivf" and flat_bytes <= FLAT_MAX_BYTES  # --index ivf: never the exact index
    chosen = choose(tried, best, flat_per_query * n, flat_ok)
    if chosen is not None:
        ref.set_nprobe(chosen["nprobe"])
        ref.query_rows = _query_rows(chosen["per_query"])
        info.update(index="ivf", nprobe=chosen["nprobe"], recall_at_k=round(chosen["recall"], 4),
                    recall_target_met=best is not None, seconds_estimate=round(chosen["seconds_estimate"], 1))
        if best is None:
            info["why"] = (f"no nprobe reached recall {target_recall:g}, and an exact index "
                           + ("was not asked for (--index ivf)" if kind == "ivf" else
                              f"of {flat_bytes / 2**30:.1f} GiB exceeds {FLAT_MAX_BYTES / 2**30:.0f} GiB"))
        return ref, info
    ref = index = None  # free the IVF index before the exact one is built
    t0 = time.perf_counter()
    flat = flat_index(pool, n, normalize, progress)
    info.update(index="flat", recall_at_k=1.0, recall_target_met=True, nprobe=None,
                seconds_estimate=round(flat_per_query * n, 1),
                build_seconds=round(info["build_seconds"] + time.perf_counter() - t0, 3),
                why=("exact search is cheaper than IVF at recall "
                     f"{target_recall:g}" if best is not None else
                     f"IVF reached recall {max(r['recall'] for r in tried):.3f} < {target_recall:g} before costing "
                     "more than an exact search"))
    return IndexRef(flat, query_rows=_query_rows(flat_per_query)), info


def choose(tried: list[dict], best: dict | None, flat_seconds: float, flat_ok: bool) -> dict | None:
    """The IVF trial to keep, or None for the exact (flat) index.

    ``best``: the cheapest trial that reached the recall target (None if
    none did). IVF is kept when it reached the target no dearer than exact
    search, or when exact search is not allowed (then at its best recall).
    """
    if best is not None and (best["seconds_estimate"] <= flat_seconds or not flat_ok):
        return best
    if best is None and not flat_ok:
        return max(tried, key=lambda r: (r["recall"], -r["nprobe"]))
    return None


def search_partial(pool, lo: int, hi: int, ref: IndexRef, k: int, normalize: str | None,
                   exclude_self: bool, start: int = 0, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Map task: the k nearest indexed rows of pool rows [max(lo, start), hi).

    Returns (neighbours (n, k) int64, Euclidean distances (n, k) float32);
    -1 / +inf where fewer than k were found. With ``exclude_self`` a row is
    never its own neighbour (it asks for k + 1 and drops itself).
    ``progress(rows_done)`` is called after each block (in-process runs).
    """
    lo = max(lo, start)
    n = max(0, hi - lo)
    nbr = np.full((n, k), -1, dtype=np.int64)
    dist = np.full((n, k), np.inf, dtype=np.float32)
    if n == 0:
        return nbr, dist
    kk = k + 1 if exclude_self else k
    kk = min(kk, ref.ntotal)
    for block in pool.iter_blocks(block_rows=block_rows_for(pool, kk), lo=lo, hi=hi):
        x = prepare(block.vectors, normalize)
        d2, idx = ref.search(x, kk)
        r0 = block.start - lo
        if exclude_self:
            own = idx == np.arange(block.start, block.stop, dtype=np.int64)[:, None]
            # drop the row itself if found, else the farthest candidate
            drop = np.where(own.any(1), own.argmax(1), kk - 1)
            keep = np.ones_like(own)
            keep[np.arange(len(idx)), drop] = False
            idx = idx[keep].reshape(len(idx), kk - 1)
            d2 = d2[keep].reshape(len(idx), kk - 1)
        d2 = exact_near(pool, x, idx, d2, normalize)
        m = min(k, idx.shape[1])
        nbr[r0:r0 + len(idx), :m] = idx[:, :m]
        dist[r0:r0 + len(idx), :m] = np.sqrt(np.maximum(d2[:, :m], 0))
        if progress is not None:
            progress(len(idx))
    dist[nbr < 0] = np.inf
    return nbr, dist


_exact_near = exact_near  # the name alq.dedup.groups imports
