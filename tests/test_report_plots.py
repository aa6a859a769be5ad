"""Report plots: bands clipped to the metric's range, whole-number round ticks, a note under 3 repeats."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from test_report import make_results

from alq.report.plots import band, round_axis


def test_band_is_clipped_to_the_metric_range():
    y, ci = np.array([0.1, 0.5, 0.95]), np.array([0.4, 0.2, 0.3])
    lo, hi = band(y, ci, 0.0, 1.0)
    np.testing.assert_allclose(lo, [0.0, 0.3, 0.65])
    np.testing.assert_allclose(hi, [0.5, 0.7, 1.0])


def test_round_axis_has_integer_ticks():
    fig = Figure()
    ax = fig.add_subplot()
    ax.plot([0, 1, 2, 3], [1, 2, 3, 4])
    round_axis(ax)
    ticks = ax.get_xticks()
    assert len(ticks) >= 2 and np.allclose(ticks, np.round(ticks))


def test_two_repeats_report_notes_it(tmp_path, cli):
    res = make_results(tmp_path / "results.parquet", repeats=2)
    code, out, err = cli("report", res, "--out", tmp_path / "rep")
    assert code == 0, err
    assert "only 2 repeat" in err
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Warnings" in md and "only 2 repeat" in md


def test_class_distribution_has_a_proportion_scale_and_class_names(tmp_path, cli):
    """Issue 20 item 18: the ridge plot reads as shares (a percent axis) over named classes."""
    import json

    from alq.report.plots import class_distribution_figure

    code, out, err = cli("report", make_results(tmp_path / "results.parquet"), "--json")
    assert code == 0, err
    s = json.loads(out)
    fig = class_distribution_figure(s)
    axes = fig.get_axes()
    ridge = [ax for ax in axes if ax.get_title() == "fast"][0]
    assert [t.get_text() for t in ridge.get_xticklabels()] == s["class_distribution"]["fast"]["final_classes"]
    assert s["class_distribution"]["fast"]["final_classes"] == ["c", "b", "a"]  # final counts 1, 19, 20
    scales = [ax for ax in axes if ax is not ridge and ax.bbox.bounds == ridge.bbox.bounds]
    fig.canvas.draw()
    labels = [t.get_text() for t in scales[0].get_yticklabels()]
    assert labels[0] == "0%" and all(lbl.endswith("%") for lbl in labels)


def test_simulate_warns_below_three_repeats():
    """Issue 20 item 18: `alq simulate` says what the README says it does: fewer than 3 repeats is too few."""
    from alq.report.checks import simulation_warnings

    assert any("only 2 repeat" in w for w in simulation_warnings({"repeats": 2, "classes": 3, "final": {}}))
    assert not simulation_warnings({"repeats": 3, "classes": 3, "final": {}})
