"""``alq dedup`` and ``alq select --dedup / --min-distance`` against brute-force references.

Groups must equal the connected components of the "distance <= T" graph
computed from all pairwise distances (a plain union-find written here);
exact duplicates always group; ``--min-distance`` is never violated and is
the greedy filter of the strategy's own ranking; ``--dedup`` never picks two
rows of one group nor a row whose group has a labeled or pending row.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alq.dedup.auto import threshold_from_nn
from alq.dedup.components import components
from alq.dedup.groups import DedupOptions, compute_groups
from alq.dedup.store import load_groups, write_dedup
from alq.io import parquet_metadata, write_parquet
from alq.store import PoolWriter, open_pool
from alq.store.labels import LabelSet


# -- references ----------------------------------------------------------------------------------
def reference_groups(x: np.ndarray, t: float) -> np.ndarray:
    """Plain union-find over every pair at float64 distance <= t; label = smallest row of the group."""
    x = x.astype(np.float64)
    n = len(x)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        d = np.sqrt(((x[i + 1:] - x[i]) ** 2).sum(1))
        for j in np.flatnonzero(d <= t) + i + 1:
            ri, rj = find(i), find(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)])


def canonical(labels: np.ndarray) -> np.ndarray:
    """Group labels renumbered by first occurrence (two partitions are equal iff these are)."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inv.reshape(-1)]


def make_pool_vectors(seed=0, n=900, d=12):
    """Mixture + noisy copies at several scales + exact duplicates (one set larger than any k below)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, d)) * 3
    x = centres[rng.integers(0, 6, n)] + rng.normal(size=(n, d))
    src = rng.choice(n, 160, replace=False)
    copies = [x[src[:60]] + rng.normal(scale=0.02, size=(60, d)),
              x[src[60:120]] + rng.normal(scale=0.2, size=(60, d)),
              x[src[120:150]].copy(),  # exact duplicates
              np.repeat(x[src[150:151]], 25, axis=0)]  # 26 identical rows: more than --knn
    allx = np.concatenate([x, *copies]).astype(np.float32)
    return allx[rng.permutation(len(allx))]


def write_pool(path, x, shard_rows=200):
    w = PoolWriter(path, shard_rows=shard_rows, dtype="float32")
    w.add(x)
    w.close()
    return open_pool(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("dedup")
    x = make_pool_vectors()
    return {"x": x, "pool": write_pool(d / "pool", x), "dir": d}


# -- groups vs brute force -----------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.0, 0.1, 0.5, 1.2])
@pytest.mark.parametrize("knn", [1, 3, 10])
def test_groups_equal_brute_force_union_find(world, t, knn):
    groups, info = compute_groups(world["pool"], DedupOptions(threshold=t, knn=knn, index="flat"))
    got = groups.group_of(np.arange(len(world["x"])))
    ref = reference_groups(world["x"], t)
    assert np.array_equal(canonical(got), canonical(ref))
    # numbered 0..G-1 by first pool row
    assert np.array_equal(got, canonical(ref)) and info["n_groups"] == len(np.unique(ref))


def test_ivf_index_finds_the_near_duplicates(world):
    groups, info = compute_groups(world["pool"], DedupOptions(threshold=0.1, index="ivf"))
    assert info["index"]["index"] == "ivf"
    got = groups.group_of(np.arange(len(world["x"])))
    assert np.array_equal(canonical(got), canonical(reference_groups(world["x"], 0.1)))


def test_exact_duplicates_always_group_at_threshold_zero_and_under_l2(world, tmp_path):
    x = world["x"]
    _, inv = np.unique(x, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    for opts in (DedupOptions(threshold=0.0), DedupOptions(threshold=0.0, normalize="l2"),
                 DedupOptions(threshold=0.0, index="ivf"), DedupOptions(auto=True)):
        g = compute_groups(world["pool"], opts)[0].group_of(np.arange(len(x)))
        for v in np.unique(inv[np.bincount(inv)[inv] > 1]):
            assert len(set(g[inv == v].tolist())) == 1, opts
    # at threshold 0: exactly the exact-duplicate sets
    g0 = compute_groups(world["pool"], DedupOptions(threshold=0.0))[0].group_of(np.arange(len(x)))
    assert np.array_equal(canonical(g0), canonical(inv))


def test_normalize_l2_is_cosine_distance(world):
    x = world["x"] / np.linalg.norm(world["x"], axis=1, keepdims=True)
    g = compute_groups(world["pool"], DedupOptions(threshold=0.05, normalize="l2"))[0]
    assert np.array_equal(canonical(g.group_of(np.arange(len(x)))), canonical(reference_groups(x, 0.05)))


def test_components_match_plain_union_find():
    rng = np.random.default_rng(3)
    for n_edges in (0, 1, 50, 400):
        a = rng.integers(0, 300, n_edges)
        b = rng.integers(0, 300, n_edges)
        nodes, root = components(a, b)
        parent = list(range(300))
        for i, j in zip(a.tolist(), b.tolist()):
            ri, rj = _find(parent, i), _find(parent, j)
            parent[max(ri, rj)] = min(ri, rj)
        assert [_find(parent, int(v)) for v in nodes] == root.tolist()


def _find(parent, i):
    while parent[i] != i:
        i = parent[i]
    return i


def test_auto_threshold_rule():
    rng = np.random.default_rng(0)
    bulk = np.exp(rng.normal(np.log(2.0), 0.1, 5000))
    dups = np.exp(rng.normal(np.log(0.02), 0.3, 800))
    t, info = threshold_from_nn(np.concatenate([bulk, dups, np.zeros(50)]))
    assert dups.max() < 0.2 and 0.05 < t < 1.5 and "valley" in info["rule"]
    t, info = threshold_from_nn(bulk)  # one mode: 0.1 x the median
    assert t == pytest.approx(0.1 * np.median(bulk)) and "median" in info["rule"]
    assert threshold_from_nn(np.zeros(100))[0] == 0.0


# -- the directory -------------------------------------------------------------------------------
def test_directory_columns_representative_and_distance(world, tmp_path):
    pool, x = world["pool"], world["x"]
    groups, info = compute_groups(pool, DedupOptions(threshold=0.5))
    s = write_dedup(pool, tmp_path / "dups", groups, info, normalize_requested=None, normalize_applied=None)
    assert s["format"] == "alq-dedup" and s["pool_fingerprint"] == pool.fingerprint
    t = pa.concat_tables([pq.read_table(tmp_path / "dups" / r["file"]) for r in s["shards"]])
    assert t.column_names == ["id", "group", "representative", "distance"]
    d = t.to_pydict()
    assert d["id"] == pool.ids().tolist()
    rep = pool.lookup(np.array(d["representative"]))
    g = np.array(d["group"])
    assert np.array_equal(g[rep], g)  # the representative is in its own group
    assert np.allclose(d["distance"], np.linalg.norm(x.astype(np.float64) - x[rep].astype(np.float64), axis=1),
                       atol=1e-5)
    assert np.array_equal(load_groups(tmp_path / "dups", pool), g)
    assert parquet_metadata(tmp_path / "dups" / s["shards"][0]["file"])["kind"] == "dedup-shard"


def test_reuses_the_graph_alq_cluster_saved(world, cli, tmp_path):
    pool = world["pool"]
    assert cli("cluster", pool.path, "--out", tmp_path / "cl", "--method", "graph", "-q")[0] == 0
    fresh = compute_groups(pool, DedupOptions(threshold=0.5))[0]
    reused, info = compute_groups(pool, DedupOptions(threshold=0.5), clusters=tmp_path / "cl")
    assert "reused" in info["index"]
    n = len(world["x"])
    assert np.array_equal(fresh.group_of(np.arange(n)), reused.group_of(np.arange(n)))
    # normalize differs from the saved graph's: a note, then a fresh index
    notes = []
    compute_groups(pool, DedupOptions(threshold=0.05, normalize="l2"), clusters=tmp_path / "cl", log=notes.append)
    assert any("normalize" in m for m in notes)


# -- the command ---------------------------------------------------------------------------------
def test_cli_dedup_json_and_errors(world, cli, tmp_path):
    pool = world["pool"]
    code, out, err = cli("dedup", pool.path, "--out", tmp_path / "dups", "--threshold", "0.1", "--json", "-q")
    assert code == 0, err
    s = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    for key in ("headline", "threshold", "threshold_rule", "n_groups", "duplicate_groups", "rows_in_duplicate_groups",
                "rows_redundant", "largest_group", "edges", "seconds", "index", "output"):
        assert key in s, key
    assert s["threshold"] == 0.1 and s["largest_group"] == 26
    code, out, _ = cli("dedup", pool.path, "--out", tmp_path / "dups", "--auto", "--json", "-q")  # replaces its own kind
    assert code == 0 and json.loads(out)["auto"]["sample_rows"] == len(world["x"])
    for args, needle in ((("--threshold", "-1"), "--threshold=-1.0 must be"), ((), "give --threshold"),
                         (("--threshold", "1", "--auto"), "not both"), (("--auto", "--knn", "0"), "--knn=0"),
                         (("--auto", "--normalize", "l1"), "--normalize")):
        code, out, err = cli("dedup", pool.path, "--out", tmp_path / "d2", *args)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (args, err)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, _, err = cli("dedup", pool.path, "--out", tmp_path / "mine", "--auto")
    assert code == 2 and (tmp_path / "mine" / "notes.txt").exists()
    code, out, _ = cli("dedup", "--help")
    assert code == 0 and "Example" in out and "--min-distance" not in out


# -- select --dedup / --min-distance ---------------------------------------------------------------
@pytest.fixture(scope="module")
def job(world, tmp_path_factory):
    """Labels (with a class per row from the mixture), pending ids, a head, and groups at T = 0.5."""
    from alq.cli import run

    tmp = tmp_path_factory.mktemp("sel")
    pool, x = world["pool"], world["x"]
    rng = np.random.default_rng(5)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    labeled = np.sort(rng.choice(len(x), 60, replace=False))
    LabelSet(ids=pool.ids(labeled).astype(np.int64), labels=y[labeled].tolist()).write(tmp / "labels.parquet")
    pending = np.setdiff1d(rng.choice(len(x), 20, replace=False), labeled)
    write_parquet(tmp / "sent.parquet", pa.table({"id": pa.array(pool.ids(pending).astype(np.int64))}))
    assert run(["train", str(pool.path), str(tmp / "labels.parquet"), "--out", str(tmp / "head.pt"), "-q"]) == 0
    assert run(["dedup", str(pool.path), "--out", str(tmp / "dups"), "--threshold", "0.5", "-q"]) == 0
    return {"tmp": tmp, "labeled": labeled, "pending": pending, "groups": load_groups(tmp / "dups", pool)}


def _select(cli, world, job, *args, budget=40, strategy="margin"):
    tmp = job["tmp"]
    out = tmp / "batch.parquet"
    code, so, err = cli("select", world["pool"].path, "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
                        "--pending", tmp / "sent.parquet", "--strategy", strategy, "--budget", str(budget),
                        "--out", out, "--json", *args)
    assert code == 0, err
    return world["pool"].lookup(np.array(pq.read_table(out).column("id").to_pylist())), json.loads(so)


@pytest.mark.parametrize("strategy", ["margin", "random", "coreset", "badge"])
def test_select_dedup_one_per_group_and_none_near_labeled_or_pending(cli, world, job, strategy):
    rows, s = _select(cli, world, job, "--dedup", job["tmp"] / "dups", strategy=strategy)
    g = job["groups"]
    assert len(rows) == 40 and len(np.unique(g[rows])) == 40
    blocked = np.union1d(g[job["labeled"]], g[job["pending"]])
    assert not np.isin(g[rows], blocked).any()
    assert s["constraints"]["dedup"]["groups_blocked"] == len(blocked)


def test_select_dedup_keeps_the_ranking_order(cli, world, job):
    plain, _ = _select(cli, world, job, budget=600)
    rows, _ = _select(cli, world, job, "--dedup", job["tmp"] / "dups", budget=40)
    g = job["groups"]
    blocked = np.union1d(g[job["labeled"]], g[job["pending"]])
    want, seen = [], set()
    for r in plain:
        if g[r] not in seen and g[r] not in blocked:
            seen.add(g[r])
            want.append(r)
    assert rows.tolist() == want[:40]


@pytest.mark.parametrize("d", [0.0, 1.0, 2.5])
def test_min_distance_never_violated_and_greedy_on_the_ranking(cli, world, job, d):
    x = world["x"].astype(np.float64)
    rows, s = _select(cli, world, job, "--min-distance", str(d), budget=30)
    anchors = np.union1d(job["labeled"], job["pending"])
    pair = np.sqrt(((x[rows][:, None] - x[rows][None]) ** 2).sum(2))
    assert (pair[~np.eye(len(rows), dtype=bool)] >= d).all()
    assert (np.sqrt(((x[rows][:, None] - x[anchors][None]) ** 2).sum(2)) >= d).all()
    plain, _ = _select(cli, world, job, budget=900 - 80)  # the strategy's whole ranking
    want: list[int] = []
    for r in plain:
        if all(np.linalg.norm(x[r] - x[a]) >= d for a in [*anchors, *want]):
            want.append(int(r))
        if len(want) == 30:
            break
    assert rows.tolist() == want
    assert s["constraints"]["min_distance"]["distance"] == d


def test_min_distance_with_dedup_and_batch_strategy(cli, world, job):
    x = world["x"].astype(np.float64)
    rows, _ = _select(cli, world, job, "--min-distance", "1.5", "--dedup", job["tmp"] / "dups", strategy="kcenter")
    assert len(np.unique(job["groups"][rows])) == len(rows) == 40
    pair = np.sqrt(((x[rows][:, None] - x[rows][None]) ** 2).sum(2))
    assert (pair[~np.eye(len(rows), dtype=bool)] >= 1.5).all()


def test_select_constraint_errors(cli, world, job):
    tmp = job["tmp"]
    base = ("select", world["pool"].path, "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
            "--strategy", "margin", "--out", tmp / "b.parquet")
    code, _, err = cli(*base, "--budget", "5", "--min-distance", "-1")
    assert code == 2 and "--min-distance=-1.0 must be" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(*base, "--budget", "5", "--dedup", tmp / "nothere")
    assert code == 2 and "no _dedup.parquet" in err
    g = job["groups"]
    free = np.ones(len(g), bool)
    free[job["labeled"]] = False
    free &= ~np.isin(g, g[job["labeled"]])
    cap = len(np.unique(g[free]))
    code, _, err = cli(*base, "--budget", str(cap + 1), "--dedup", tmp / "dups")
    assert code == 2 and f"exceeds the {cap} rows selectable under --dedup" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli(*base, "--budget", "300", "--min-distance", "6")
    assert code == 2 and "--min-distance=6" in err
    code, out, err = cli(*base, "--budget", "300", "--min-distance", "6", "--allow-smaller", "--json")
    assert code == 0, err
    assert 0 < json.loads(out)["selected"] < 300


def test_select_dedup_refuses_groups_of_another_pool(cli, world, job, tmp_path):
    other = write_pool(tmp_path / "other", world["x"][:500])
    code, _, err = cli("select", other.path, "--strategy", "random", "--budget", "5", "--dedup", job["tmp"] / "dups",
                       "--out", tmp_path / "b.parquet")
    assert code == 2 and "stale" in err and "alq dedup" in err


def test_a_large_set_of_identical_rows_groups_without_searching_past_it_from_every_member(tmp_path):
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(size=(400, 8)), np.repeat(rng.normal(size=(1, 8)), 600, axis=0),
                        rng.normal(size=(1, 8)).repeat(2, 0) + [[0.0] * 7 + [0.01], [0.0] * 8]])
    x = x.astype(np.float32)
    pool = write_pool(tmp_path / "pool", x[rng.permutation(len(x))], shard_rows=250)
    xs = np.concatenate([s for s in (pool.take(np.arange(pool.count)),)])
    g = compute_groups(pool, DedupOptions(threshold=0.05, knn=2))[0].group_of(np.arange(pool.count))
    assert np.array_equal(canonical(g), canonical(reference_groups(xs, 0.05)))


def test_info_describes_a_dedup_directory(world, cli, tmp_path):
    assert cli("dedup", world["pool"].path, "--out", tmp_path / "dups", "--threshold", "0.1", "-q")[0] == 0
    code, out, err = cli("info", tmp_path / "dups", "--verify", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["kind"] == "dedup" and d["verified"] and d["summary"]["threshold"] == 0.1


def test_min_distance_counts_add_up(cli, world, job):
    rows, s = _select(cli, world, job, "--min-distance", "2.5", budget=30)
    c = s["constraints"]
    assert c["ranked_rows_skipped"] == (c["min_distance"]["rejected_near_labeled_or_pending"]
                                        + c["min_distance"]["rejected_near_a_pick"])


def test_dedup_dir_scans_as_one_parquet_dataset(world, cli, tmp_path):
    """The record is a no-row Parquet file: DuckDB reads DUPS/*.parquet as the pool's rows and nothing else."""
    duckdb = pytest.importorskip("duckdb")
    code, _, err = cli("dedup", world["pool"].path, "--out", tmp_path / "dups", "--threshold", "0.1", "-q")
    assert code == 0, err
    assert sorted(p.suffix for p in (tmp_path / "dups").iterdir()) == [".parquet"] * len(
        list((tmp_path / "dups").iterdir()))
    [(n, groups)] = duckdb.sql(f"SELECT count(*), count(DISTINCT \"group\") "
                               f"FROM read_parquet('{tmp_path}/dups/*.parquet')").fetchall()
    assert n == len(world["x"])
    from alq.dedup.store import load_groups

    assert groups == len(np.unique(load_groups(tmp_path / "dups", world["pool"])))
