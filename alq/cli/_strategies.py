"""The strategy catalogue for ``--help``, read without importing the strategies.

The strategy modules import torch and faiss; ``alq select --help`` must not
(start-up time). This module reads the class attributes that help needs
(``name``, ``help``, ``needs_head``, ``simulation_only``, ``distributed``)
from the source of ``alq/strategies/*.py`` with :mod:`ast`: every class
decorated with ``@register``, with attributes inherited from a class of the
same module or from the defaults of :class:`alq.strategies.base.Strategy`.
``tests/test_startup.py`` checks that this catalogue equals the real registry.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

_DIR = Path(__file__).resolve().parent.parent / "strategies"
_FIELDS = ("name", "help", "needs_head", "simulation_only", "distributed")
_DEFAULTS = {"needs_head": True, "simulation_only": False, "distributed": "driver"}


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    help: str
    needs_head: bool
    simulation_only: bool
    distributed: str


def _literal_fields(node: ast.ClassDef) -> dict:
    out = {}
    for stmt in node.body:
        targets = []
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        for t in targets:
            if isinstance(t, ast.Name) and t.id in _FIELDS:
                try:
                    out[t.id] = ast.literal_eval(value)
                except ValueError:
                    pass
    return out


def _is_registered(node: ast.ClassDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "register" for d in node.decorator_list)


def _fields(node: ast.ClassDef, classes: dict, seen: frozenset = frozenset()) -> dict:
    merged = dict(_DEFAULTS)
    for b in node.bases:
        if isinstance(b, ast.Name) and b.id in classes and b.id not in seen:
            merged.update(_fields(classes[b.id], classes, seen | {node.name}))
    merged.update(_literal_fields(node))
    return merged


@functools.lru_cache(maxsize=1)
def catalog() -> dict[str, StrategyInfo]:
    """name -> :class:`StrategyInfo` for every registered strategy, sorted by name."""
    found: dict[str, StrategyInfo] = {}
    for path in sorted(_DIR.glob("*.py")):
        if path.name.startswith("_") or path.name == "base.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

        for node in classes.values():
            if _is_registered(node):
                f = _fields(node, classes)
                if "name" in f and "help" in f:
                    found[f["name"]] = StrategyInfo(**{k: f[k] for k in _FIELDS})
    return dict(sorted(found.items()))


# options a strategy's module reads that its own source does not show: the scoring pass of every
# strategy with a head reads `aggregate` (alq/scoring/passes.py), the multi-label margin aggregate
_HEAD_OPTIONS = frozenset({"aggregate"})


def _read_options(tree: ast.Module) -> set[str]:
    """Names read with ``ctx.option("name", ...)`` or an ``*_option(ctx, "name", ...)`` helper."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name != "option" and not name.endswith("_option"):
            continue
        first = next((a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)), None)
        if first is not None:
            found.add(first.value)
    return found


@functools.lru_cache(maxsize=1)
def strategy_options() -> dict[str, frozenset[str]]:
    """name -> the ``--option`` names its module reads (from source, like :func:`catalog`)."""
    out: dict[str, frozenset[str]] = {}
    for path in sorted(_DIR.glob("*.py")):
        if path.name.startswith("_") or path.name == "base.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        read = _read_options(tree)
        for node in classes.values():
            if _is_registered(node):
                f = _fields(node, classes)
                if "name" in f:
                    out[f["name"]] = frozenset(read | (_HEAD_OPTIONS if f["needs_head"] else set()))
    return dict(sorted(out.items()))


def check_strategy_options(strategies: list[str], options: dict, *, flags: dict | None = None) -> None:
    """Refuse an option no strategy of the run reads (a typo, or a flag meant for another strategy): it would
    be ignored without a word, and the batch would not be the one asked for.

    ``options`` keys are option names (``knn``) or, for one strategy of several, ``STRATEGY.name``;
    ``flags`` names the dedicated flag an option came from (``partitions`` -> ``--partitions``).
    """
    from alq.errors import BadInputError

    table = strategy_options()
    names = [s for s in strategies if s in table]  # unknown strategies are named by whoever loads them
    if not names:
        return
    for key, value in options.items():
        owner, _, opt = key.rpartition(".")
        owners = [o for o in names if o.replace("-", "_") == owner.replace("-", "_")] if owner else names
        if owner and not owners:
            raise BadInputError(f"--option {key}={value}: {owner} is not one of this run's strategies "
                                f"({', '.join(names)})")
        if any(opt in table[o] for o in owners):
            continue
        flag = (flags or {}).get(key) or f"--option {key}={value}"
        who = owners[0] if len(owners) == 1 else "none of " + ", ".join(owners)
        reads = sorted(set().union(*(table[o] for o in owners)))
        raise BadInputError(f"{flag}: {'strategy ' if len(owners) == 1 else ''}{who} has no option {opt!r}; "
                            "it would be ignored", hint=f"options read: {', '.join(reads)}" if reads else
                            "no option is read by " + ", ".join(owners))
