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
