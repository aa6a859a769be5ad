"""Strategies by name: every strategy module loaded once, then looked up in the registry.

The modules of :mod:`alq.strategies` (other than ``base`` and this one, and
private ``_`` modules) register their strategies with ``@register``
(:mod:`alq.strategies.base`) when imported; :func:`load_all` imports them
all, by name, so the registry feeds ``alq select --strategy`` choices and
help. :func:`get_strategy` makes one, or names the closest known one.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from pathlib import Path

from alq.errors import BadInputError
from alq.strategies.base import REGISTRY, Strategy

PACKAGE = __name__.rsplit(".", 1)[0]  # alq.strategies
NOT_STRATEGIES = ("base", "registry")

_loaded = False


def load_all() -> dict[str, type[Strategy]]:
    """Import every strategy module (once); the registry, name -> strategy class."""
    global _loaded
    if not _loaded:
        for mod in sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])):
            if not mod.startswith("_") and mod not in NOT_STRATEGIES:
                importlib.import_module(f"{PACKAGE}.{mod}")
        _loaded = True
    return REGISTRY


def get_strategy(name: str) -> Strategy:
    """A new strategy of this name; an unknown name is a BadInputError naming the closest known one."""
    load_all()
    try:
        return REGISTRY[name]()
    except KeyError:
        pass
    close = difflib.get_close_matches(str(name).strip().lower().replace("_", "-"), sorted(REGISTRY), n=1, cutoff=0.6)
    guess = f"did you mean {close[0]}? " if close else ""
    raise BadInputError(f"--strategy {name!r} is not known; {guess}choose from: {', '.join(sorted(REGISTRY))}")
