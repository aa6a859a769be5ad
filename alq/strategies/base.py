"""The strategy contract: one signature, one registry (filled by ``@register``; read through
:mod:`alq.strategies.registry`).

A strategy is a small class in its own module of ``alq.strategies``,
registered by name with ``@register``. It receives a :class:`Context`
(pool data-access object, budget, seed, which rows are excluded, and the
optional head, labels, clusters and options) and returns a
:class:`Selection`: ``budget`` distinct, not-excluded pool row indices,
ranked, with one score each. Strategies never see file paths.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from alq.store.pool import Pool


@dataclass
class Context:
    pool: Pool
    budget: int
    seed: int
    excluded: np.ndarray  # bool (N,): labeled or pending rows, never selected
    labeled: np.ndarray  # int64 global indices of labeled rows (centres for coreset, ...)
    head: Any = None  # alq.model.Head or None
    clusters: np.ndarray | None = None  # int64 (N,) cluster id per row, from `alq cluster`
    true_labels: Any = None  # simulation only: alq.simulate.oracle.RowLabels, true class per pool row
    options: dict = field(default_factory=dict)  # strategy options (see each strategy's OPTIONS)
    engine: Any = None  # alq.engine.Engine; None = local
    device: Any = None  # torch.device; None = auto
    progress: Callable[[str, int, int], None] | None = None  # (task, done, total)
    scores: Any = None  # alq.scoring.store.ScoresStore, only when fresh for this pool and head (`alq score`)

    def rng(self, stream: int = 0) -> np.random.Generator:
        """The one random generator of this selection (``stream`` separates uses)."""
        return np.random.default_rng([self.seed, stream])

    def option(self, name: str, default=None):
        value = self.options.get(name)
        return default if value is None else value

    @property
    def n_unlabeled(self) -> int:
        return int(self.pool.count - np.count_nonzero(self.excluded))

    def report(self, task: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(task, done, total)


@dataclass
class Selection:
    indices: np.ndarray  # int64 (b,), ranked (rank 0 first)
    scores: np.ndarray  # float64 (b,), the strategy's score of each pick
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # extra per-pick columns (e.g. cluster)
    summary: dict = field(default_factory=dict)  # extra --json summary entries


class Strategy(ABC):
    name: ClassVar[str]
    help: ClassVar[str]  # one line for `alq select --help`
    needs_head: ClassVar[bool] = True
    needs_clusters: ClassVar[bool] = False
    simulation_only: ClassVar[bool] = False  # reads true labels (balanced-random)
    score_meaning: ClassVar[str] = ""  # what the score column holds
    distributed: ClassVar[str] = "driver"  # "sharded" | "partitioned" | "driver" (see alq.engine)

    @abstractmethod
    def select(self, ctx: Context) -> Selection:
        """Return exactly ctx.budget ranked rows with ctx.excluded False."""


REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise RuntimeError(f"strategy {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def unlabeled_indices(ctx: Context) -> np.ndarray:
    """Global indices of selectable rows (fine for a mask-sized array)."""
    return np.flatnonzero(~ctx.excluded).astype(np.int64)
