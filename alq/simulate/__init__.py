"""Oracle experiments: ``alq simulate`` (the loop) and pool transforms for them.

A simulation replays active learning on a fully labeled pool, revealing
true labels as strategies buy them, and measures a head on a held-out test
set every round (ALGORITHMS.md, Evaluation).
"""

from alq.simulate.config import SimulationConfig
from alq.simulate.loop import run_simulation
from alq.simulate.oracle import RowLabels
from alq.simulate.results import SCHEMA, SECONDS_COLUMNS

__all__ = ["SCHEMA", "SECONDS_COLUMNS", "SimulationConfig", "RowLabels", "run_simulation"]
