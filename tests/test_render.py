"""Default human output: a short table with rounded numbers, nested results one row each."""

from __future__ import annotations

import io

from alq.cli._render import fmt_value, key_values


def test_fmt_value_rounds_and_summarises():
    assert fmt_value(0.123456789) == "0.1235" and fmt_value(1234567) == "1,234,567"
    assert fmt_value(True) == "true" and fmt_value(None) == "-"
    assert fmt_value([1, 2, 3]) == "1, 2, 3" and fmt_value(list(range(50))) == \
        "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... (50 items)"
    assert fmt_value({"a": 1, "b": 0.5}) == "a=1, b=0.5"


def test_fmt_value_shows_values_not_counts_or_reprs():
    """Issue 20 item 19: `{11 fields}` and Python dict reprs are not what a person wants to read."""
    sizes = {f"k{i}": i for i in range(11)}
    assert fmt_value(sizes) == ", ".join(f"k{i}={i}" for i in range(11))
    assert fmt_value({"path": "s/", "fresh": True, "n": [1, 2], "d": {"x": 0.25}}) == \
        "path=s/, fresh=true, n=[1, 2], d=(x=0.25)"
    assert fmt_value([{"a": 1}, {"a": 2}]) == "(a=1), (a=2)"


def test_key_values_expands_one_level_of_results():
    buf = io.StringIO()
    key_values({"seconds": 12.3456789, "final": {"random": {"top1": 0.812345, "repeats": 3},
                                                  "margin": {"top1": 0.9, "repeats": 3}}, "skip": None}, file=buf)
    text = buf.getvalue()
    assert "12.35" in text and "12.3456789" not in text
    assert "final.random" in text and "top1=0.8123, repeats=3" in text and "final.margin" in text
    assert "skip" not in text
