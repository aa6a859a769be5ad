"""`alq cluster` at scale: the measured kNN plan, the checkpointed graph, --resume, SIGTERM, --update reuse.

References are brute force written here (numpy distances), and the old
full-recompute RNN rounds are pinned by scipy in tests/test_cluster.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import gaussian_pool

from alq.cluster import knn as knn_mod
from alq.cluster.api import ClusterOptions, cluster_pool, compute_clusters, work_dir_for
from alq.cluster.graph import edges_from_knn, graph_average_linkage
from alq.cluster.knn import build_index, search_partial
from alq.cluster.knngraph import graph_dir, read_knn_shard
from alq.cluster.update import update_clusters
from alq.errors import BadInputError
from alq.store import MemoryPool, PoolWriter, open_pool

REPO = Path(__file__).resolve().parents[1]


def _brute_knn(x: np.ndarray, k: int) -> np.ndarray:
    d2 = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    return np.argsort(d2, axis=1, kind="stable")[:, :k]


def _recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got.tolist(), truth.tolist())]))


def _disk_pool(path, x, shard_rows):
    w = PoolWriter(path, shard_rows=shard_rows, dtype="float32")
    w.add(x)
    w.close()
    return open_pool(path)


def test_ivf_plan_meets_its_recall_target_against_brute_force(monkeypatch):
    monkeypatch.setattr(knn_mod, "FLAT_MAX_ROWS", 100)  # plan by measurement even on a small pool
    monkeypatch.setattr(knn_mod, "FLAT_MAX_BYTES", 0)  # keep the IVF index whatever an exact one would cost
    x, _ = gaussian_pool(3000, d=16, c=12, seed=3, sep=5.0)
    pool = MemoryPool(x, shard_rows=1000)
    ref, info = build_index(pool, kind="auto", k_for_recall=5, target_recall=0.95)
    assert info["index"] == "ivf" and info["recall_target_met"]
    assert info["recall_at_k"] >= 0.95
    trials = info["nprobe_trials"]
    assert trials and all(t["nprobe"] >= 1 for t in trials)
    nbr, _ = search_partial(pool, 0, pool.count, ref, 5, None, True)
    # the sample's recall estimates the whole graph's: measured here on every row against brute force
    assert _recall(nbr, _brute_knn(x, 5)) >= 0.93
    assert not (nbr == np.arange(len(x))[:, None]).any()  # never a row's own neighbour


def test_choice_between_ivf_and_exact_search():
    cheap = {"nprobe": 8, "recall": 0.97, "seconds_estimate": 10.0}
    dear = {"nprobe": 256, "recall": 0.96, "seconds_estimate": 900.0}
    low = {"nprobe": 4, "recall": 0.5, "seconds_estimate": 5.0}
    assert knn_mod.choose([low, cheap], cheap, flat_seconds=100.0, flat_ok=True) is cheap
    assert knn_mod.choose([low, dear], dear, flat_seconds=100.0, flat_ok=True) is None  # exact is cheaper
    assert knn_mod.choose([low, dear], dear, flat_seconds=100.0, flat_ok=False) is dear  # exact too big
    assert knn_mod.choose([low], None, flat_seconds=100.0, flat_ok=True) is None  # target missed: exact
    assert knn_mod.choose([low, cheap], None, flat_seconds=1.0, flat_ok=False) is cheap  # best recall kept


def test_measured_plan_meets_the_target_on_data_without_neighbourhoods(monkeypatch):
    monkeypatch.setattr(knn_mod, "FLAT_MAX_ROWS", 100)  # plan by measurement even on a small pool
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2500, 48)).astype(np.float32)  # no neighbourhoods: IVF needs most lists
    pool = MemoryPool(x, shard_rows=1000)
    ref, info = build_index(pool, k_for_recall=10, target_recall=0.99)
    assert info["recall_target_met"] and info["recall_at_k"] >= 0.99 and info["nprobe_trials"]
    nbr, _ = search_partial(pool, 0, pool.count, ref, 10, None, True)
    assert _recall(nbr, _brute_knn(x, 10)) >= 0.97
    if info["index"] == "flat":
        assert "why" in info and _recall(nbr, _brute_knn(x, 10)) == 1.0


def test_missed_recall_target_is_one_warning_line(monkeypatch):
    monkeypatch.setattr(knn_mod, "FLAT_MAX_ROWS", 100)
    monkeypatch.setattr(knn_mod, "FLAT_MAX_BYTES", 0)  # no exact fallback: the target cannot be met
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 48)).astype(np.float32)
    lines: list[str] = []
    opts = ClusterOptions(method="graph", index="ivf", recall=1.0, threshold=1.0)
    _, info = compute_clusters(MemoryPool(x, shard_rows=500), opts, log=lines.append)
    warnings = [ln for ln in lines if ln.startswith("warning:") and "recall" in ln]
    got = info["parameters"]["index"]
    if got["recall_target_met"]:  # every list probed reached recall 1: nothing to warn about
        assert not warnings
    else:
        assert len(warnings) == 1 and "recall@10" in warnings[0] and "below the target 1" in warnings[0]


def test_bad_recall_and_index_options_are_refused():
    with pytest.raises(BadInputError, match="--recall"):
        ClusterOptions(recall=1.5).validate()
    with pytest.raises(BadInputError, match="--index"):
        ClusterOptions(index="hnsw").validate()


def _random_edges(n, m, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, size=m)
    b = rng.integers(0, n, size=m)
    keep = a != b
    a, b = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    key = np.unique(a * n + b)
    return key // n, key % n


def test_graph_linkage_equals_greedy_sequential_hac_on_a_sparse_graph():
    """The RNN rounds give sequential greedy average linkage (constant mode: exactly reducible).

    Reference: plain sequential HAC over a dict of linkages, merging the globally
    closest pair each step (the textbook algorithm), on a random sparse graph.
    """
    n = 60
    a, b = _random_edges(n, 150, seed=4)
    rng = np.random.default_rng(5)
    w = rng.uniform(1.0, 5.0, size=len(a)).round(3)  # distinct enough that ties do not decide
    big = 6.0
    den, _ = graph_average_linkage(n, a, b, w, missing=big)
    # reference
    members = {i: {i} for i in range(n)}
    dist = {(int(i), int(j)): float(d) for i, j, d in zip(a, b, w)}

    def linkage(p, q):
        tot, cnt = 0.0, 0
        for i in members[p]:
            for j in members[q]:
                key = (min(i, j), max(i, j))
                if key in dist:
                    tot += dist[key]
                    cnt += 1
        if cnt == 0:
            return None
        return (tot + (len(members[p]) * len(members[q]) - cnt) * big) / (len(members[p]) * len(members[q]))

    heights = []
    while True:
        best = None
        keys = sorted(members)
        for ii, p in enumerate(keys):
            for q in keys[ii + 1:]:
                d = linkage(p, q)
                if d is not None and (best is None or d < best[0]):
                    best = (d, p, q)
        if best is None:
            break
        heights.append(best[0])
        members[best[1]] |= members.pop(best[2])
    np.testing.assert_allclose(np.sort(den.height), np.sort(heights), rtol=1e-9)


def test_resume_after_a_kill_gives_identical_bytes(tmp_path, monkeypatch):
    x, _ = gaussian_pool(900, d=8, c=5, seed=7)
    pool = _disk_pool(tmp_path / "pool", x, shard_rows=200)  # 5 shards
    opts = ClusterOptions(method="graph", knn=5)
    full = cluster_pool(pool, tmp_path / "full", opts)
    assert (graph_dir(tmp_path / "full") / "knn-000004.parquet").exists()
    assert not work_dir_for(tmp_path / "full").exists()  # the checkpoint moved into the output

    import alq.cluster.knngraph as kg

    real = kg.search_partial
    calls = {"n": 0}

    def dies_on_third_shard(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(kg, "search_partial", dies_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        cluster_pool(pool, tmp_path / "again", opts)
    work = work_dir_for(tmp_path / "again")
    assert sorted(p.name for p in work.glob("knn-*.parquet")) == ["knn-000000.parquet", "knn-000001.parquet"]
    assert not (tmp_path / "again").exists()  # nothing published
    monkeypatch.setattr(kg, "search_partial", real)
    calls["n"] = 0
    # a plain rerun would start over: it says what it discards and how to keep it (checked, not run)
    notes: list[str] = []
    assert kg._load_plan(work, kg._wanted(pool, 10, None, 0, "auto", opts.recall)) is not None
    resumed = cluster_pool(pool, tmp_path / "again", opts, resume=True, log=notes.append)
    assert not any("discarding" in n for n in notes) and any("reusing the saved index" in n for n in notes)
    assert resumed["parameters"]["index"]["resumed_shards"] == 2
    for f in sorted((tmp_path / "full").glob("*.parquet")):
        assert pq.read_table(f).equals(pq.read_table(tmp_path / "again" / f.name)), f.name
    for f in sorted((graph_dir(tmp_path / "full")).glob("knn-*.parquet")):
        a1, d1 = read_knn_shard(f)
        a2, d2 = read_knn_shard(graph_dir(tmp_path / "again") / f.name)
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(d1, d2)
    assert full["n_clusters"] == resumed["n_clusters"]


def test_a_plain_rerun_says_it_discards_a_checkpoint(tmp_path, monkeypatch):
    x, _ = gaussian_pool(600, d=8, c=4, seed=9)
    pool = _disk_pool(tmp_path / "pool", x, shard_rows=200)
    import alq.cluster.knngraph as kg

    real = kg.search_partial
    calls = {"n": 0}

    def dies_on_second_shard(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(kg, "search_partial", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        cluster_pool(pool, tmp_path / "c", ClusterOptions(method="graph"))
    monkeypatch.setattr(kg, "search_partial", real)
    notes: list[str] = []
    cluster_pool(pool, tmp_path / "c", ClusterOptions(method="graph"), log=notes.append)
    assert sum("discarding a killed run's kNN checkpoint (1 shards done; pass --resume" in n for n in notes) == 1


def test_resume_with_other_options_starts_over(tmp_path):
    x, _ = gaussian_pool(400, d=8, c=4, seed=8)
    pool = _disk_pool(tmp_path / "pool", x, shard_rows=200)
    work = work_dir_for(tmp_path / "c")
    work.mkdir(parents=True)
    (work / "plan.json").write_text(json.dumps({"wanted": {"k": 99}, "index": {}, "query_rows": 10}))
    (work / "knn-000000.parquet").write_text("not a graph")
    notes: list[str] = []
    out = cluster_pool(pool, tmp_path / "c", ClusterOptions(method="graph"), resume=True, log=notes.append)
    assert out["parameters"]["index"]["resumed_shards"] == 0
    assert any("starting over" in ln for ln in notes)


def test_update_reuses_the_saved_index_and_reports_recall(tmp_path, monkeypatch):
    monkeypatch.setattr(knn_mod, "FLAT_MAX_ROWS", 100)
    x, _ = gaussian_pool(1200, d=8, c=6, seed=12, sep=5.0)
    pool = _disk_pool(tmp_path / "pool", x[:1000], shard_rows=250)
    cluster_pool(pool, tmp_path / "c", ClusterOptions(method="graph"))
    w = PoolWriter(tmp_path / "pool", append=True)
    w.add(x[1000:])
    w.close()
    pool = open_pool(tmp_path / "pool")
    import alq.cluster.knn as k2

    def no_rebuild(*a, **kw):
        raise AssertionError("--update rebuilt the index")

    monkeypatch.setattr(k2, "build_index", no_rebuild)
    out = update_clusters(pool, tmp_path / "c")
    info = out["updates"][-1]["index"]
    assert info["reused"] is True
    assert 0.9 <= info["recall_at_1_new_rows"] <= 1.0
    from alq.cluster.knngraph import load_graph_index

    ref, _ = load_graph_index(tmp_path / "c")
    assert ref.ntotal == 1200  # the new rows joined the saved index for the next --update


def test_sigterm_stops_a_long_knn_search_within_seconds_and_resume_finishes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40_000, 64)).astype(np.float32)  # no neighbourhoods: exact search, tens of seconds
    _disk_pool(tmp_path / "pool", x, shard_rows=5_000)
    env = dict(os.environ, PYTHONPATH=str(REPO), ALQ_DEVICE="cpu")
    argv = [sys.executable, "-m", "alq", "cluster", str(tmp_path / "pool"), "--out", str(tmp_path / "c"),
            "--index", "flat", "-q"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    work = work_dir_for(tmp_path / "c")
    deadline = time.monotonic() + 120
    while not list(work.glob("knn-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    if proc.poll() is not None:
        pytest.skip("the search finished before it could be interrupted (a fast machine)")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    waited = time.monotonic() - t0
    assert proc.returncode == 143, err
    assert waited < 10, f"SIGTERM took {waited:.1f} s to stop the search"
    assert "terminated" in err
    assert not (tmp_path / "c").exists()
    done = len(list(work.glob("knn-*.parquet")))
    assert 1 <= done < 8
    res = subprocess.run(argv[:-1] + ["--resume", "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["pool_rows"] == 40_000
    assert len(list((graph_dir(tmp_path / "c")).glob("knn-*.parquet"))) == 8


def test_edges_from_knn_matches_a_plain_dedup():
    rng = np.random.default_rng(3)
    n, k = 300, 6
    nbr = rng.integers(-1, n, size=(n, k))
    dist = rng.uniform(0, 2, size=(n, k)).astype(np.float32)
    a, b, w = edges_from_knn(nbr, dist)
    ref: dict = {}
    for i in range(n):
        for j in range(k):
            t = int(nbr[i, j])
            if t < 0 or t == i:
                continue
            key = (min(i, t), max(i, t))
            ref[key] = min(ref.get(key, np.inf), float(dist[i, j]))
    got = {(int(p), int(q)): float(d) for p, q, d in zip(a, b, w)}
    assert got == ref


def test_a_cut_that_leaves_most_rows_alone_warns_once():
    x, _ = gaussian_pool(600, d=8, c=3, seed=2)
    lines: list[str] = []
    labels, info = compute_clusters(MemoryPool(x), ClusterOptions(method="graph", threshold=0.0), log=lines.append)
    assert info["singleton_share"] == round(float((np.bincount(labels) == 1).sum()) / 600, 4) > 0.5
    assert sum(ln.startswith("warning:") and "clusters of their own" in ln for ln in lines) == 1
    lines.clear()
    _, info = compute_clusters(MemoryPool(x), ClusterOptions(method="graph", n_clusters=3), log=lines.append)
    assert info["singleton_share"] < 0.5 and not any("clusters of their own" in ln for ln in lines)


def test_a_workers_last_search_forgets_its_cached_index():
    """Ray workers cache the deserialised index per digest; the last tasks of a search drop it (issue 18: 5.6 GiB
    per idle worker at 5M rows), and the search result is the same as without the release."""
    import pickle

    knn = knn_mod
    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    pool = MemoryPool(x, shard_rows=100)
    ref, _ = build_index(pool, seed=0)
    knn._LOADED.clear()
    copy = pickle.loads(pickle.dumps(ref))  # what a worker receives
    assert copy._digest in knn._LOADED
    want = search_partial(pool, 0, 100, copy, 5, None, True)
    got = knn.search_and_release(pool, 0, 100, copy, 5, None, True)
    assert copy._digest not in knn._LOADED
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    again = pickle.loads(pickle.dumps(ref))  # a later task loads it again
    np.testing.assert_array_equal(search_partial(pool, 0, 100, again, 5, None, True)[0], want[0])


def test_a_saved_index_travels_as_its_file_bytes(tmp_path):
    """The Ray driver shares the index saved in the work directory, not its own copy (which it frees):
    the reference pickles as the file's bytes and a worker gets the same index and the same answers."""
    import pickle

    from alq.cluster.knngraph import saved_index
    from alq.engine import LocalEngine

    x = np.random.default_rng(1).standard_normal((400, 8)).astype(np.float32)
    pool = MemoryPool(x, shard_rows=100)
    ref, _ = build_index(pool, seed=0)
    ref.save(tmp_path / "index.faiss")
    lazy = LocalEngine().share_result(saved_index, tmp_path / "index.faiss", ref.nprobe, ref.query_rows)
    assert lazy.index is None  # nothing is built on the driver
    state = lazy.__getstate__()
    assert bytes(state["bytes"]) == (tmp_path / "index.faiss").read_bytes()
    knn_mod._LOADED.clear()
    worker = pickle.loads(pickle.dumps(lazy))
    want = search_partial(pool, 0, 400, ref, 5, None, True)
    got = search_partial(pool, 0, 400, worker, 5, None, True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_two_level_quantizer_index_finds_the_neighbours_and_pickles(monkeypatch):
    """From TWO_LEVEL_FROM rows the IVF's quantizer is an IVF over two-level k-means centroids. At a fixed nprobe
    (no timing involved) its kNN matches brute force, and the index survives the trip to a worker."""
    import pickle

    from alq.cluster import ivf
    from alq.cluster.knn import IndexRef

    monkeypatch.setattr(ivf, "TWO_LEVEL_FROM", 10_000)
    monkeypatch.setattr(ivf, "ROWS_PER_LIST", 64)
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(60, 16)) * 4
    x = (centres[rng.integers(0, 60, 12_000)] + rng.normal(size=(12_000, 16))).astype(np.float32)
    pool = MemoryPool(x, shard_rows=3000)
    plan = ivf.plan_index(len(x), flat_max_rows=100)
    assert plan["quantizer"] == "two-level" and plan["nlist"] == ivf.ivf_lists(len(x))
    index = ivf.ivf_index(pool, len(x), plan, None, 0, None)
    assert index.ntotal == len(x) and index.nlist == plan["nlist"]
    ref = IndexRef(index, nprobe=16)
    nbr, _ = search_partial(pool, 0, 2000, ref, 5, None, True)
    x64 = x.astype(np.float64)
    d2 = (x64[:2000] ** 2).sum(1)[:, None] + (x64 ** 2).sum(1)[None, :] - 2 * x64[:2000] @ x64.T
    d2[np.arange(2000), np.arange(2000)] = np.inf
    truth = np.argsort(d2, axis=1)[:, :5]
    found = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(nbr, truth)])
    assert found >= 0.95, found  # measured 1.000 (0.9996 at nprobe 8, 0.968 at 4)
    knn_mod._LOADED.clear()
    worker = pickle.loads(pickle.dumps(ref))
    np.testing.assert_array_equal(search_partial(pool, 0, 2000, worker, 5, None, True)[0], nbr)
