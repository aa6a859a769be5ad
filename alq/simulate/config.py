"""What ``alq simulate`` runs (:class:`SimulationConfig`), and the run's config record.

The record (:func:`config_json`) is what a run directory keeps in its
``config.json``; ``--resume`` compares a new run's with it
(:mod:`alq.simulate.rundir`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from alq import __version__
from alq.errors import BadInputError, BudgetError
from alq.model.options import TrainOptions
from alq.staging import shown

HEAD_MODES = ("reset", "update")


@dataclass
class SimulationConfig:
    """What ``alq simulate`` runs. ``budget`` per round for ``rounds`` rounds, or up to ``total_budget``."""

    pool: str | Path
    labels: str | Path
    test_pool: str | Path
    test_labels: str | Path
    strategies: list[str]
    seed_size: int
    budget: int
    rounds: int | None = None
    total_budget: int | None = None
    repeats: int = 3
    seed: int = 0
    seed_strategy: str = "random"
    head_mode: str = "reset"
    train: TrainOptions = field(default_factory=TrainOptions)
    options: dict = field(default_factory=dict)  # "key" for all strategies, "strategy.key" for one
    clusters: str | Path | None = None
    where: str | None = None  # SQL predicate: only matching pool rows are ever labeled (alq.filters)
    balance_by: str | None = None  # pool column or "predicted": each round's batch balanced over its values
    stop_set_size: int = 2000  # rows of the fixed, seeded stop set per repeat (alq.stopping)

    def budgets(self) -> list[int]:
        """Labels bought in each round 1..R."""
        if self.budget < 1:
            raise BudgetError(f"--budget={self.budget} must be >= 1")
        if (self.rounds is None) == (self.total_budget is None):
            raise BadInputError("give exactly one of --rounds and --total-budget")
        if self.rounds is not None:
            if self.rounds < 1:
                raise BadInputError(f"--rounds={self.rounds} must be >= 1")
            return [int(self.budget)] * int(self.rounds)
        if self.total_budget < 1:
            raise BudgetError(f"--total-budget={self.total_budget} must be >= 1")
        full, rest = divmod(int(self.total_budget), int(self.budget))
        return [int(self.budget)] * full + ([rest] if rest else [])

    def strategy_options(self, name: str) -> dict:
        key = name.replace("-", "_")
        out = {k: v for k, v in self.options.items() if "." not in k}
        for k, v in self.options.items():
            if "." in k:
                owner, opt = k.split(".", 1)
                if owner.replace("-", "_") == key:
                    out[opt] = v
        return out


def config_json(cfg: SimulationConfig, oracle, budgets: list[int]) -> dict:
    """The run's config record; ``oracle``: the :class:`~alq.simulate.inputs.Oracle` of its inputs."""
    train = asdict(cfg.train)
    train.pop("seed", None)
    return {
        "kind": "simulation-run",
        "experiment": {
            "strategies": list(cfg.strategies), "repeats": int(cfg.repeats), "budgets": budgets,
            "seed_size": int(cfg.seed_size), "seed": int(cfg.seed), "seed_strategy": cfg.seed_strategy,
            "head_mode": cfg.head_mode, "train": train, "options": dict(sorted(cfg.options.items())),
            "fingerprints": oracle.fingerprints, "classes": [str(c) for c in oracle.classes],
            "multilabel": oracle.multilabel, "clusters": shown(cfg.clusters) if cfg.clusters else None,
            "where": cfg.where, "balance_by": cfg.balance_by,
            **({"stop_set_size": int(cfg.stop_set_size)} if cfg.stop_set_size != 2000 else {}),
        },  # shown(): a staged copy of a remote input is recorded by its URI (resume compares these)
        "inputs": {"pool": str(cfg.pool), "labels": shown(cfg.labels), "test_pool": str(cfg.test_pool),
                   "test_labels": shown(cfg.test_labels)},
        "alq_version": __version__,
    }
