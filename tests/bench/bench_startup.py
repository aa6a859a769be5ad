"""Start-up benchmark: `alq --help` and `alq info POOL` wall time vs `import typer, rich`.

Baseline, in the same run: ``python -c "import typer, rich"`` (the CLI
framework alone). Each figure is the median wall time of REPEATS fresh
processes, printed with its ratio to the baseline (target <= 1.5x for
``--help``). ``alq info POOL`` also reads the manifest, so it imports numpy
and pyarrow; neither command may import torch or faiss
(``tests/test_startup.py``).

    pytest -m bench -s tests/bench/bench_startup.py -p no:xdist
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
REPEATS = int(os.environ.get("ALQ_BENCH_REPEATS", 7))


def _median_wall(argv: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@pytest.mark.bench
def test_bench_startup(tmp_path):
    from alq.store import PoolWriter

    w = PoolWriter(tmp_path / "pool", shard_rows=1000, dtype="float16")
    w.add(np.random.default_rng(0).normal(size=(4000, 64)).astype(np.float32))
    w.close()
    py = sys.executable
    base = _median_wall([py, "-c", "import typer, rich"])
    rows = [("python -c 'import typer, rich' (baseline)", base)]
    rows.append(("alq --help", _median_wall([py, "-m", "alq", "--help"])))
    rows.append(("alq select --help", _median_wall([py, "-m", "alq", "select", "--help"])))
    rows.append(("alq info POOL", _median_wall([py, "-m", "alq", "info", str(tmp_path / "pool")])))
    print(f"\nstart-up, median of {REPEATS} processes")
    for name, t in rows:
        print(f"  {name:<45} {t * 1000:8.0f} ms  {t / base:5.2f}x")
    assert all(t > 0 for _, t in rows)
