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
