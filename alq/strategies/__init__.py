"""Selection strategies, one module each, registered by name.

The contract (:class:`Context` in, :class:`Selection` out, ``@register``)
is :mod:`alq.strategies.base`; :mod:`alq.strategies.registry` imports every
strategy module on first use (:func:`load_all`) and makes strategies by name
(:func:`get_strategy`). The registry feeds ``alq select --strategy``
choices and help.
"""

from __future__ import annotations

from alq.strategies.base import REGISTRY, Context, Selection, Strategy, register
from alq.strategies.registry import get_strategy, load_all

__all__ = ["REGISTRY", "Context", "Selection", "Strategy", "get_strategy", "register", "load_all"]
