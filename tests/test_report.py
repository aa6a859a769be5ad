"""alq report: every plot renders, --json holds the numbers the tables show, numbers are right."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alq.io import write_parquet
from alq.report.plots import PLOTS
from alq.simulate import SCHEMA

scipy_stats = pytest.importorskip("scipy.stats")

N = [10, 20, 30, 40]
CURVES = {  # mean curves by construction: per-repeat offsets sum to zero
    "random": [0.5, 0.6, 0.7, 0.8],
    "fast": [0.5, 0.7, 0.8, 0.85],
    "slow": [0.5, 0.55, 0.6, 0.7],
}
OFFSETS = [-0.01, 0.0, 0.01]
COUNTS = {"random": [[3, 3, 4], [6, 7, 7], [10, 10, 10], [13, 13, 14]],
          "fast": [[3, 3, 4], [10, 10, 0], [15, 15, 0], [20, 19, 1]],
          "slow": [[3, 3, 4], [7, 6, 7], [10, 11, 9], [14, 13, 13]]}


def make_results(path, *, strategies=("random", "fast", "slow"), repeats=3, jitter=None):
    rng = np.random.default_rng(0)
    rows = []
    for s in strategies:
        for r in range(repeats):
            for k, n in enumerate(N):
                acc = CURVES[s][k] + (OFFSETS[r] if repeats == 3 else 0.0)
                if jitter is not None and k > 0:
                    acc += jitter[s][r][k]
                counts = COUNTS[s][k]
                lo, hi = min(counts), max(counts)
                p = np.array(counts) / sum(counts)
                ent = float(-(p[p > 0] * np.log(p[p > 0])).sum() / math.log(3))
                rows.append({"strategy": s, "repeat": r, "round": k, "n_labeled": n, "n_selected": 10,
                             "top1": acc, "top5": None, "macro_accuracy": acc - 0.01,
                             "per_class_accuracy": [acc, acc, acc], "map": None, "pooled_ap": None,
                             "class_counts": list(zip("abc", counts)), "imbalance_ratio": math.inf if lo == 0 else hi / lo,
                             "empty_classes": counts.count(0), "class_entropy": ent,
                             "select_seconds": 0.0 if k == 0 else float(rng.uniform(0.01, 0.02)),
                             "train_seconds": float(rng.uniform(0.1, 0.2)), "train_loss": 0.1,
                             "train_accuracy": 1.0, "selection_seed": 1})
    table = pa.table({f.name: [row.get(f.name) for row in rows] for f in SCHEMA}, schema=SCHEMA)  # stop_*: null
    write_parquet(path, table, {"kind": "simulation-results", "strategies": list(strategies),
                                "classes": ["a", "b", "c"], "multilabel": False, "repeats": repeats,
                                "budgets": [10, 10, 10], "seed_size": 10, "seed": 0, "seed_strategy": "random",
                                "head_mode": "reset", "complete": True})
    return path


def test_report_renders_every_plot_and_markdown(tmp_path, cli):
    res = make_results(tmp_path / "results.parquet")
    code, out, err = cli("report", res, "--out", tmp_path / "rep")
    assert code == 0, err
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert pngs == sorted(f"{p}.png" for p in PLOTS) and len(pngs) == 6
    for p in pngs:
        data = (tmp_path / "rep" / p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    md = (tmp_path / "rep" / "report.md").read_text()
    for p in pngs:
        assert f"]({p})" in md
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["metric"] == "top1"
    assert "6 plots" in out


def test_json_numbers_are_right_and_match_the_tables(tmp_path, cli):
    res = make_results(tmp_path / "results.parquet")
    code, out, err = cli("report", res, "--json")
    assert code == 0, err
    s = json.loads(out)
    ps = s["per_strategy"]
    # final accuracy and its 95% CI (over the three repeats)
    for name, curve in CURVES.items():
        vals = [curve[-1] + o for o in OFFSETS]
        lo, hi = scipy_stats.t.interval(0.95, 2, loc=np.mean(vals), scale=scipy_stats.sem(vals))
        assert ps[name]["final"] == pytest.approx(curve[-1])
        assert ps[name]["final_ci95"] == pytest.approx((hi - lo) / 2)
        assert ps[name]["final_n_labeled"] == 40
    # hand-computed: a* = 0.8 (random at 40 labels); fast reaches it at 30, slow never
    assert s["efficiency"]["target"] == pytest.approx(0.8)
    assert ps["fast"]["labels_saved"] == pytest.approx(0.25)
    assert ps["fast"]["efficiency_at_final"] == pytest.approx(40 / 30)
    assert ps["random"]["labels_saved"] == pytest.approx(0.0)
    assert ps["slow"]["labels_saved"] is None and ps["slow"]["n_to_reach_target"] is None
    # efficiency curve at a = 0.65: random 25 labels, fast 17.5
    grid = np.array(s["efficiency"]["grid"])
    eff = np.array([np.nan if v is None else v for v in s["efficiency"]["efficiency"]["fast"]])
    assert np.interp(0.65, grid, eff) == pytest.approx(25 / 17.5, rel=0.02)
    # class balance: fast has an empty class after round 0, so its mean ratio over rounds is inf: strict JSON null
    assert ps["fast"]["mean_imbalance_ratio"] is None and ps["fast"]["final_empty_classes"] == 0
    assert ps["fast"]["final_imbalance_ratio"] == pytest.approx(20.0)
    assert ps["random"]["mean_imbalance_ratio"] == pytest.approx(np.mean([7 / 6, 1.0, 14 / 13]))

    code, text, err = cli("report", res)
    assert code == 0, err
    flat = " ".join(text.split())
    for name in CURVES:
        p = ps[name]
        assert f"{100 * p['final']:.2f} ± {100 * p['final_ci95']:.2f}" in flat
        ir = p["mean_imbalance_ratio"]
        assert ("inf" if ir is None else f"{ir:.2f}") in flat  # --json null; the table still says inf
        if p["labels_saved"] is not None:
            assert f"{100 * p['labels_saved']:+.1f}%" in flat
            assert f"{p['efficiency_at_final']:.2f}x" in flat
    assert "not reached" in flat
    pm = s["penalty"]["matrix"]
    for i, name in enumerate(s["penalty"]["strategies"]):
        assert " ".join([name] + [f"{pm[i][j]:.2f}" if i != j else "-" for j in range(3)]) in \
            flat.replace("│", "").replace("  ", " ").replace("  ", " ")


def test_penalty_matrix_in_json_matches_scipy(tmp_path, cli):
    rng = np.random.default_rng(7)
    jitter = {s: rng.normal(0, 0.02, size=(3, 4)).tolist() for s in CURVES}
    res = make_results(tmp_path / "results.parquet", jitter=jitter)
    code, out, err = cli("report", res, "--json")
    assert code == 0, err
    s = json.loads(out)
    names = s["penalty"]["strategies"]
    vals = {n: np.array([[CURVES[n][k] + OFFSETS[r] + (jitter[n][r][k] if k else 0.0) for k in range(4)]
                         for r in range(3)]) for n in names}
    want = np.zeros((3, 3))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            for k in range(1, 4):  # the selection rounds: round 0 is the seed set every strategy shares
                if i != j and np.any(vals[a][:, k] != vals[b][:, k]):
                    t = scipy_stats.ttest_rel(vals[a][:, k], vals[b][:, k])
                    if t.pvalue < 0.05 and t.statistic > 0:
                        want[i, j] += 1 / 3
    np.testing.assert_allclose(s["penalty"]["matrix"], want, atol=1e-12)
    assert s["penalty"]["rounds"]["random|fast"] == 3


def test_report_without_baseline_or_repeats_still_renders(tmp_path, cli):
    res = make_results(tmp_path / "results.parquet", strategies=("fast", "slow"), repeats=1)
    code, out, err = cli("report", res, "--out", tmp_path / "rep", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["efficiency"] is None and s["per_strategy"]["fast"]["labels_saved"] is None
    assert s["penalty"]["matrix"] == [[0.0, 0.0], [0.0, 0.0]] and s["penalty"]["min_repeats"] == 1
    assert s["per_strategy"]["fast"]["final_ci95"] is None
    assert len(list((tmp_path / "rep").glob("*.png"))) == 6
    assert s["penalty"]["warning"] in s["warnings"] and "too few for significance" in s["penalty"]["warning"]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.count("1 repeat(s) per strategy are too few for significance") >= 2  # top, penalty section, warnings
    code, text, err = cli("report", res)
    flat = " ".join(text.split())
    assert code == 0 and "No baseline" in flat and "1 repeat(s) per strategy are too few for significance" in flat


@pytest.mark.parametrize("repeats, warned", [(2, True), (3, False)])
def test_too_few_repeats_warn_everywhere(tmp_path, cli, repeats, warned):
    res = make_results(tmp_path / "results.parquet", repeats=repeats)
    code, out, err = cli("report", res, "--out", tmp_path / "rep", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert bool(s["warnings"]) is warned and ("warning" in s["penalty"]) is warned
    md = (tmp_path / "rep" / "report.md").read_text()
    assert ("too few for significance" in md) is warned
    code, text, _ = cli("report", res)
    assert ("too few for significance" in " ".join(text.split())) is warned


def test_labels_saved_uses_randoms_final_accuracy_in_the_report(tmp_path, cli, monkeypatch):
    """random peaks at 0.8 and ends at 0.72: a* is 0.72; a noisy strategy ending below it saves nothing."""
    monkeypatch.setitem(CURVES, "random", [0.5, 0.8, 0.7, 0.72])
    monkeypatch.setitem(CURVES, "fast", [0.5, 0.65, 0.74, 0.78])
    monkeypatch.setitem(CURVES, "slow", [0.5, 0.85, 0.74, 0.685])
    res = make_results(tmp_path / "results.parquet")
    code, out, err = cli("report", res, "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["efficiency"]["target"] == pytest.approx(0.72)
    # by hand (last upward crossings of 0.72): random between (30, 0.70) and (40, 0.72): 40 labels;
    # fast between (20, 0.65) and (30, 0.74): 20 + 7/9 * 10
    assert s["efficiency"]["baseline_n_to_reach_target"] == pytest.approx(40.0)
    ps = s["per_strategy"]
    assert ps["fast"]["n_to_reach_target"] == pytest.approx(20 + 70 / 9)
    assert ps["fast"]["labels_saved"] == pytest.approx(1 - (20 + 70 / 9) / 40)
    assert ps["slow"]["labels_saved"] is None and ps["slow"]["n_to_reach_target"] is None


@pytest.mark.parametrize("args, message", [
    (["--metric", "top5"], "top-5 needs"),
    (["--metric", "f1"], "--metric"),
    (["--alpha", "2"], "--alpha"),
])
def test_bad_report_arguments_exit_2(tmp_path, cli, args, message):
    res = make_results(tmp_path / "results.parquet")
    code, _, err = cli("report", res, *args)
    assert code == 2 and message in err


def test_report_refuses_other_files(tmp_path, cli):
    write_parquet(tmp_path / "x.parquet", pa.table({"id": [1, 2]}))
    code, _, err = cli("report", tmp_path / "x.parquet")
    assert code == 2 and "not an alq simulate results file" in err
    code, _, err = cli("report", tmp_path / "missing.parquet")
    assert code == 2 and "not found" in err


def test_simulate_then_report_end_to_end(tmp_path, cli):
    from conftest import gaussian_pool

    from alq.store import PoolWriter
    from alq.store.labels import LabelSet

    x, y = gaussian_pool(500, d=8, c=5, seed=3, sep=1.0)
    for name, lo, hi in (("pool", 0, 400), ("test", 400, 500)):
        w = PoolWriter(tmp_path / name, shard_rows=128, dtype="float32")
        w.add(x[lo:hi], ids=np.arange(lo, hi))
        w.close()
        LabelSet(ids=np.arange(lo, hi), labels=y[lo:hi].tolist()).write(tmp_path / f"{name}.parquet")
    code, _, err = cli("simulate", "--pool", tmp_path / "pool", "--labels", tmp_path / "pool.parquet",
                       "--test-pool", tmp_path / "test", "--test-labels", tmp_path / "test.parquet",
                       "--strategies", "random,balanced-random", "--seed-size", "10", "--budget", "10",
                       "--rounds", "2", "--repeats", "2", "--max-iter", "30", "--out", tmp_path / "run", "-q")
    assert code == 0, err
    import pyarrow.parquet as pq

    sel = pq.read_table(tmp_path / "run" / "selections" / "random" / "r1-round2.parquet")
    assert sel.schema.field("label").type == pa.int64()  # integer classes stay integers
    assert sel["label"].to_pylist() == [int(y[i]) for i in sel["id"].to_pylist()]
    code, out, err = cli("report", tmp_path / "run" / "results.parquet", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["strategies"] == ["random", "balanced-random"] and s["run"]["budgets"] == [10, 10]
    assert s["curves"]["random"]["n_labeled"] == [10.0, 20.0, 30.0]
    assert s["curves"]["random"]["top1"][0] == s["curves"]["balanced-random"]["top1"][0]  # shared round 0
    assert s["per_strategy"]["random"]["final_n_labeled"] == 30
    assert all(len(d) == 5 for d in s["class_distribution"]["random"]["sorted_proportions"])


def test_json_outputs_are_strict(cli, tmp_path):
    """--json and report.json hold no NaN/Infinity (JSON.parse and polars reject them): null instead."""
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    res = make_results(tmp_path / "results.parquet")
    code, out, err = cli("report", res, "--json", "--out", tmp_path / "rep")
    assert code == 0, err
    s = json.loads(out, parse_constant=refuse)
    assert s["per_strategy"]["fast"]["mean_imbalance_ratio"] is None
    json.loads((tmp_path / "rep" / "report.json").read_text(), parse_constant=refuse)


def test_unknown_baseline_exits_2(tmp_path, cli):
    res = make_results(tmp_path / "results.parquet")
    code, _, err = cli("report", res, "--baseline", "nope")
    assert code == 2 and "'nope'" in err and "random, fast, slow" in err
    code, out, err = cli("report", res, "--baseline", "slow", "--json")
    assert code == 0 and json.loads(out)["baseline"] == "slow"


def test_warns_near_chance_and_with_few_repeats(tmp_path, cli):
    res = make_results(tmp_path / "ok.parquet")
    code, out, err = cli("report", res, "--json")
    assert code == 0 and json.loads(out)["warnings"] == []
    low = {s: [[0.0] + [0.35 - CURVES[s][k] for k in range(1, len(N))] for _ in range(3)] for s in CURVES}
    res = make_results(tmp_path / "chance.parquet", jitter=low)
    code, out, err = cli("report", res)
    assert code == 0 and "near chance" in err and "33.3% for 3 classes" in " ".join(err.split())
    res = make_results(tmp_path / "two.parquet", repeats=2)
    code, out, err = cli("report", res, "--json")
    assert code == 0 and any("only 2 repeat" in w for w in json.loads(out)["warnings"])


def test_penalty_share_counts_selection_rounds_only(tmp_path, cli):
    """Issue 20 item 18: a run of 3 selection rounds (4 rows per repeat with the seed round) is "share of 3"."""
    res = make_results(tmp_path / "results.parquet")
    code, text, err = cli("report", res)
    assert code == 0, err
    flat = " ".join(text.split())
    assert "share of 3 selection rounds" in flat and "share of 4" not in flat


def test_all_zero_penalty_matrix_says_what_it_cannot_tell(tmp_path, cli, monkeypatch):
    """Issue 20 item 18: with 3 repeats and no significant pair, the report says zeros are not ties."""
    monkeypatch.setitem(CURVES, "twin", CURVES["random"])
    monkeypatch.setitem(COUNTS, "twin", COUNTS["random"])
    res = make_results(tmp_path / "results.parquet", strategies=("random", "twin"))
    code, out, err = cli("report", res, "--out", tmp_path / "rep", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["penalty"]["matrix"] == [[0.0, 0.0], [0.0, 0.0]] and "warning" not in s["penalty"]
    assert "2 degrees of freedom" in s["penalty"]["note"] and "not evidence of a tie" in s["penalty"]["note"]
    assert "not evidence of a tie" in (tmp_path / "rep" / "report.md").read_text()
    code, text, _ = cli("report", res)
    assert "not evidence of a tie" in " ".join(text.split())
    # a matrix with a significant pair needs no such note
    code, out, _ = cli("report", make_results(tmp_path / "r2.parquet"), "--json")
    assert "note" not in json.loads(out)["penalty"]


def test_terminal_tables_fit_the_width_instead_of_being_cut(tmp_path, cli, monkeypatch):
    """Issue 20 item 18: on a 120-column terminal the summary table is split, not cut."""
    import io

    from rich.console import Console

    from alq.report.tables import render_rich, summary_table

    names = ("random", "margin", "entropy", "least-confidence", "badge", "coreset", "cluster-margin", "typiclust")
    for i, n in enumerate(names[1:]):
        monkeypatch.setitem(CURVES, n, CURVES[("fast", "slow")[i % 2]])
        monkeypatch.setitem(COUNTS, n, COUNTS[("fast", "slow")[i % 2]])
    code, out, err = cli("report", make_results(tmp_path / "results.parquet", strategies=names), "--json")
    assert code == 0, err
    s = json.loads(out)
    for width in (80, 120):
        console = Console(file=io.StringIO(), width=width, highlight=False)
        render_rich(s, console)
        text = console.file.getvalue()
        table_lines = [ln for ln in text.splitlines() if ln.startswith(("│", "┃"))]
        assert table_lines and all(len(ln) <= width and ln.rstrip().endswith(("│", "┃")) for ln in table_lines)
        flat = " ".join(text.split())
        for header in summary_table(s)[0]:
            assert all(word in flat for word in header.split()), header


def test_named_class_counts_read_like_the_older_lists(tmp_path, cli):
    """Issue 20 item 19: results carry class_counts as name -> count (a map); reports read the older lists alike."""
    new = make_results(tmp_path / "new.parquet")
    t = pq.read_table(new)
    assert pa.types.is_map(t.schema.field("class_counts").type)
    lists = pa.array([[n for _, n in c] for c in t.column("class_counts").to_pylist()], pa.list_(pa.int64()))
    pq.write_table(t.set_column(t.schema.get_field_index("class_counts"), "class_counts", lists), tmp_path / "old.parquet")
    outs = []
    for name in ("old.parquet", "new.parquet"):
        code, out, err = cli("report", tmp_path / name, "--json")
        assert code == 0, err
        s = json.loads(out)
        outs.append((s["per_strategy"], s["class_distribution"]))
    assert outs[0] == outs[1]
