"""Warnings about an experiment's shape, for ``alq report``.

A report can be computed from almost any results file; some of them say
little: a test set from another distribution than the pool leaves every
strategy at chance accuracy, and with fewer than three repeats the 95%
bands (t with 1 degree of freedom) are too wide to read.
"""

from __future__ import annotations

CHANCE_METRICS = ("top1", "macro_accuracy")
MIN_REPEATS = 3


def chance_level(s: dict) -> float | None:
    """1 / number of classes for the accuracy metrics of a multi-class run; None otherwise."""
    if s.get("multilabel") or s.get("metric") not in CHANCE_METRICS or not s.get("classes"):
        return None
    return 1.0 / s["classes"]


def near_chance(best: float, chance: float) -> bool:
    """Within 10% of the way from chance to perfect accuracy."""
    return best <= chance + 0.1 * (1.0 - chance)


def report_warnings(s: dict) -> list[str]:
    """One line per problem with the experiment behind the summary ``s`` (empty when none)."""
    out = []
    chance = chance_level(s)
    finals = [p.get("final") for p in s.get("per_strategy", {}).values() if p.get("final") is not None]
    if chance is not None and finals and near_chance(max(finals), chance):
        out.append(f"every strategy ends near chance: best final {s['metric']} {100 * max(finals):.1f}% vs "
                   f"{100 * chance:.1f}% for {s['classes']} classes; is the test set from the pool's distribution "
                   "(same encoder, same classes)? `alq split` makes one from a labeled pool")
    repeats = (s.get("run") or {}).get("repeats")
    if isinstance(repeats, int) and repeats < MIN_REPEATS:
        out.append(f"only {repeats} repeat(s): the 95% bands are wide and the t-tests weak; "
                   f"use --repeats {MIN_REPEATS} or more")
    return out


def simulation_warnings(summary: dict) -> list[str]:
    """The warnings of an `alq simulate` summary: near-chance final top-1, fewer than 3 repeats."""
    out = []
    repeats = summary.get("repeats")
    if isinstance(repeats, int) and repeats < MIN_REPEATS:
        out.append(f"only {repeats} repeat(s): `alq report` cannot tell strategies apart (95% bands too wide, "
                   f"t-tests without power); use --repeats {MIN_REPEATS} or more (--resume adds repeats)")
    if summary.get("multilabel") or not summary.get("classes"):
        return out
    chance = 1.0 / summary["classes"]
    finals = [f.get("top1") for f in (summary.get("final") or {}).values() if f.get("top1") is not None]
    if finals and near_chance(max(finals), chance):
        out.append(f"test accuracy stays near chance (best final {100 * max(finals):.1f}% vs {100 * chance:.1f}% for "
                   f"{summary['classes']} classes): is the test set from the pool's distribution? "
                   "`alq split` makes one from a labeled pool")
    return out
