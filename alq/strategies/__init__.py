"""Selection strategies, one module each, registered by name.

Every module in this package (other than ``base``) is imported on first use
and registers its strategies with ``@register``; the registry feeds
``alq select --strategy`` choices and help.
"""

from __future__ import annotations

import importlib
import pkgutil

from alq.strategies.base import REGISTRY, Context, Selection, Strategy, get_strategy, register

_loaded = False


def load_all() -> dict:
    global _loaded
    if not _loaded:
        for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
            if not mod.startswith("_") and mod != "base":
                importlib.import_module(f"{__name__}.{mod}")
        _loaded = True
    return REGISTRY


__all__ = ["REGISTRY", "Context", "Selection", "Strategy", "get_strategy", "register", "load_all"]
