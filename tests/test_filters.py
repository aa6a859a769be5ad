"""``--where`` (SQL over the pool's kept metadata) and ``--balance-by`` (even quotas per value), select and simulate."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import gaussian_pool

from alq.filters import balance_quotas, where_mask
from alq.scoring.passes import block_measures
from alq.store import PoolWriter, open_pool
from alq.store.labels import LabelSet

CAMERAS = np.array(["front", "back", "side"], dtype=object)


def _meta(n: int) -> pa.Table:
    i = np.arange(n)
    return pa.table({
        "camera": pa.array([None if k % 50 == 7 else CAMERAS[k % 3] for k in i], pa.string()),
        "captured_at": pa.array([dt.datetime(2026, 10, 1) + dt.timedelta(days=int(k) % 90) for k in i],
                                pa.timestamp("us")),
        "width": pa.array((i * 7 % 11).astype(np.int32)),
    })


@pytest.fixture
def meta_job(cli, tmp_path):
    """700 rows in 7 shards with camera / captured_at / width columns, 70 labels and a head."""
    x, y = gaussian_pool(700, d=12, c=4, seed=3, sep=1.5)
    w = PoolWriter(tmp_path / "pool", shard_rows=100, dtype="float32")
    w.add(x, columns=_meta(700))
    w.close()
    labeled = np.arange(0, 700, 10)
    LabelSet(ids=labeled.astype(np.int64), labels=y[labeled].tolist()).write(tmp_path / "labels.parquet")
    code, _, err = cli("train", tmp_path / "pool", tmp_path / "labels.parquet", "--out", tmp_path / "head.pt",
                       "--weight-decay", "1e-3", "-q")
    assert code == 0, err
    return tmp_path, x, y, labeled


def _pool_table(path) -> pa.Table:
    pool = open_pool(path)
    return pa.concat_tables([pq.read_table(path / s.parquet) for s in pool.manifest.shards])


def _ts(*args):
    return pa.scalar(dt.datetime(*args), pa.timestamp("us"))


PREDICATES = [
    ("camera = 'front' AND captured_at >= '2026-11-01'",
     (pc.field("camera") == "front") & (pc.field("captured_at") >= _ts(2026, 11, 1))),
    ("width BETWEEN 2 AND 4 OR camera IS NULL",
     ((pc.field("width") >= 2) & (pc.field("width") <= 4)) | pc.field("camera").is_null()),
    ("camera <> 'side' AND id < 450", (pc.field("camera") != "side") & (pc.field("id") < 450)),
    ("camera IN ('back', 'side') AND NOT (width > 8)",
     pc.field("camera").isin(["back", "side"]) & ~(pc.field("width") > 8)),
]


@pytest.mark.parametrize("sql,expr", PREDICATES, ids=[p[0] for p in PREDICATES])
def test_where_equals_filtering_the_pool_parquet_with_pyarrow(meta_job, sql, expr):
    tmp = meta_job[0]
    mask = where_mask(open_pool(tmp / "pool"), sql)
    want = _pool_table(tmp / "pool").filter(expr).column("id").to_numpy()
    ids = open_pool(tmp / "pool").ids()
    assert mask.dtype == bool and len(mask) == 700
    assert ids[mask].tolist() == want.tolist() and 0 < len(want) < 700


def test_select_where_is_the_strategy_on_the_matching_unlabeled_rows(cli, meta_job):
    tmp, x, _, labeled = meta_job
    sql = "camera = 'front' AND captured_at >= '2026-11-01'"
    code, out, err = cli("select", tmp / "pool", "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
                         "--strategy", "margin", "--budget", "15", "--where", sql, "--out", tmp / "b.parquet",
                         "--with-columns", "camera,captured_at", "--json")
    assert code == 0, err
    s = json.loads(out)
    table = _pool_table(tmp / "pool")
    match = np.zeros(700, bool)
    match[table.filter(PREDICATES[0][1]).column("id").to_numpy()] = True
    unl = match.copy()
    unl[labeled] = False
    assert s["where"] == sql and s["where_matched"] == int(match.sum())
    assert s["unlabeled"] == int(unl.sum()) and s["where_excluded"] == 700 - len(labeled) - int(unl.sum())
    from alq.model.head import load_head

    m = block_measures(load_head(tmp / "head.pt"), x, measures=("margin",))["margin"]
    rows = np.flatnonzero(unl)
    want = rows[np.lexsort((rows, m[rows]))][:15]
    got = pq.read_table(tmp / "b.parquet").to_pydict()
    assert got["id"] == want.tolist()
    assert set(got["camera"]) == {"front"} and min(got["captured_at"]) >= dt.datetime(2026, 11, 1)


BAD = [
    ("cam = 'front'", "cam"),  # unknown column
    ("camera > 5", "VARCHAR"),  # wrong type
    ("captured_at >= 'yesterday'", "timestamp"),  # a literal of the wrong type
    ("width + 1", "not a true/false condition"),  # not boolean
    ("camera = 'front') OR (1 = 1", "syntax error"),  # not one expression
    ("count(*) > 1", "aggregate"),
    ("1; DROP TABLE x", "more than one statement"),
    ("  ", "empty"),
]


@pytest.mark.parametrize("sql,word", BAD, ids=[b[0] for b in BAD])
def test_bad_where_is_one_line_exit_2_and_outputs_unchanged(cli, meta_job, sql, word):
    tmp = meta_job[0]
    assert cli("select", tmp / "pool", "--strategy", "random", "--budget", "5", "--out", tmp / "b.parquet")[0] == 0
    before = (tmp / "b.parquet").read_bytes()
    code, out, err = cli("select", tmp / "pool", "--strategy", "random", "--budget", "5", "--where", sql,
                         "--out", tmp / "b.parquet")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --where") and word.lower() in lines[0].lower(), err
    assert (tmp / "b.parquet").read_bytes() == before


def test_balance_quotas_water_fill():
    rng = np.random.default_rng(0)
    assert balance_quotas(np.array([50, 50, 50]), 30, rng).tolist() == [10, 10, 10]
    q = balance_quotas(np.array([100, 3, 100, 0]), 30, rng)
    assert q[1] == 3 and q[3] == 0 and sorted(q[[0, 2]].tolist()) == [13, 14] and q.sum() == 30
    q = balance_quotas(np.array([5, 6, 7, 100]), 40, rng)
    assert q.tolist() == [5, 6, 7, 22]
    q = balance_quotas(np.array([9, 9, 9, 9]), 2, rng)  # fewer rows than values: two values get one each
    assert sorted(q.tolist()) == [0, 0, 1, 1]
    with pytest.raises(ValueError):
        balance_quotas(np.array([1, 2]), 4, rng)


def test_balance_by_column_gives_exact_quotas_filled_by_the_strategy_ranking(cli, meta_job):
    tmp, x, _, labeled = meta_job
    code, out, err = cli("select", tmp / "pool", "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
                         "--strategy", "margin", "--budget", "40", "--balance-by", "camera",
                         "--out", tmp / "b.parquet", "--with-columns", "camera", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["balance_histogram"] == {"back": 10, "front": 10, "side": 10, "null": 10} and s["balance_passes"] == 1
    got = pq.read_table(tmp / "b.parquet").to_pydict()
    assert len(got["id"]) == 40 == len(set(got["id"])) and got["rank"] == list(range(40))
    cams = _pool_table(tmp / "pool").column("camera").to_pylist()
    assert [("null" if cams[i] is None else cams[i]) for i in got["id"]] == got["balance_value"]
    assert got["balance_value"][:4] == ["back", "front", "side", "null"]  # round-robin, values sorted, null last
    from alq.model.head import load_head

    m = block_measures(load_head(tmp / "head.pt"), x, measures=("margin",))["margin"]
    free = np.ones(700, bool)
    free[labeled] = False
    for value in ("back", "front", "side", None):
        rows = np.flatnonzero(free & np.array([c == value for c in cams]))
        want = rows[np.lexsort((rows, m[rows]))][:10]
        picked = [i for i, c in zip(got["id"], got["balance_value"]) if c == ("null" if value is None else value)]
        assert picked == want.tolist(), value


def test_balance_by_predicted_spreads_the_batch_over_predicted_classes(cli, meta_job):
    tmp = meta_job[0]
    code, out, err = cli("select", tmp / "pool", "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
                         "--strategy", "entropy", "--budget", "40", "--balance-by", "predicted",
                         "--where", "camera IS NOT NULL", "--out", tmp / "b.parquet", "--json")
    assert code == 0, err
    s = json.loads(out)
    got = pq.read_table(tmp / "b.parquet").to_pydict()
    assert Counter(got["predicted_class"]) == {"0": 10, "1": 10, "2": 10, "3": 10}
    assert got["balance_value"] == got["predicted_class"] and s["predicted_class_histogram"] == s["balance_histogram"]
    cams = _pool_table(tmp / "pool").column("camera").to_pylist()
    assert all(cams[i] is not None for i in got["id"])


@pytest.mark.parametrize("args,word", [
    (("--balance-by", "lens"), "no column 'lens'"),
    (("--balance-by", "predicted"), "needs a head"),
    (("--balance-by", ""), "empty"),
])
def test_bad_balance_by_exit_2(cli, meta_job, args, word):
    tmp = meta_job[0]
    code, out, err = cli("select", tmp / "pool", "--strategy", "random", "--budget", "5", *args,
                         "--out", tmp / "b.parquet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and word in err, err
    assert not (tmp / "b.parquet").exists()


def test_simulate_where_and_balance_by(cli, meta_job):
    tmp, _, y, _ = meta_job
    LabelSet(ids=np.arange(700, dtype=np.int64), labels=y.tolist()).write(tmp / "all.parquet")
    run = tmp / "run"
    code, out, err = cli("simulate", "--pool", tmp / "pool", "--labels", tmp / "all.parquet", "--test-pool",
                         tmp / "pool", "--test-labels", tmp / "all.parquet", "--strategies", "random,margin",
                         "--seed-size", "12", "--budget", "12", "--rounds", "2", "--repeats", "1",
                         "--weight-decay", "1e-3", "--where", "camera <> 'side'", "--balance-by", "camera",
                         "--out", run, "--json")
    assert code == 0, err
    cams = _pool_table(tmp / "pool").column("camera").to_pylist()
    seed = pq.read_table(run / "selections" / "_seed-set" / "r0.parquet").column("id").to_pylist()
    assert all(cams[i] in ("front", "back") for i in seed)
    for name in ("random", "margin"):
        for k in (1, 2):
            ids = pq.read_table(run / "selections" / name / f"r0-round{k}.parquet").column("id").to_pylist()
            assert Counter(cams[i] for i in ids) == {"front": 6, "back": 6}, (name, k)
    cfg = json.loads((run / "config.json").read_text())["experiment"]
    assert cfg["where"] == "camera <> 'side'" and cfg["balance_by"] == "camera"
    code, _, err = cli("simulate", "--pool", tmp / "pool", "--labels", tmp / "all.parquet", "--test-pool",
                       tmp / "pool", "--test-labels", tmp / "all.parquet", "--strategies", "random",
                       "--seed-size", "12", "--budget", "12", "--rounds", "2", "--repeats", "1",
                       "--where", "lens = 1", "--out", tmp / "run2")
    assert code == 2 and "lens" in err and not (tmp / "run2").exists()


def test_balance_by_sums_strategy_histograms_and_keeps_base_contract(cli, meta_job):
    tmp = meta_job[0]
    code, out, err = cli("select", tmp / "pool", "--head", tmp / "head.pt", "--labels", tmp / "labels.parquet",
                         "--strategy", "base", "--budget", "30", "--balance-by", "camera", "--out", tmp / "b.parquet",
                         "--json")
    assert code == 0, err
    s = json.loads(out)
    assert sum(s["base_class_histogram"].values()) == 30 and sum(s["balance_histogram"].values()) == 30
    got = pq.read_table(tmp / "b.parquet").to_pydict()
    assert Counter(got["base_class"]) == {int(k): v for k, v in s["base_class_histogram"].items()}


@pytest.mark.parametrize("strategy", ["margin", "entropy", "least-confidence"])
@pytest.mark.parametrize("by", ["camera", "predicted"])
def test_one_grouped_pass_equals_one_strategy_run_per_value(meta_job, monkeypatch, strategy, by):
    import alq.filters as filters
    from alq.select import SelectRequest, run_select

    tmp = meta_job[0]
    req = SelectRequest(pool=tmp / "pool", strategy=strategy, budget=37, head=tmp / "head.pt",
                        labels=tmp / "labels.parquet", balance_by=by, where="width <> 3")
    fast, s_fast = run_select(req)
    monkeypatch.setattr(filters, "_PER_ROW", {})
    slow, s_slow = run_select(req)
    assert s_fast["balance_passes"] == 1 and s_slow["balance_passes"] == len(s_slow["balance_histogram"]) > 1
    for col in ("id", "rank", "score", "balance_value", "predicted_class"):
        assert fast.column(col).to_pylist() == slow.column(col).to_pylist(), col
