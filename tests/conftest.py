"""Shared fixtures: real files in tmp dirs, the CLI run in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def cli(capsys):
    """Run ``alq ARGS`` in-process; return (exit code, stdout, stderr)."""
    from alq.cli import run

    def _run(*args):
        capsys.readouterr()
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def run_alq_subprocess(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m alq ARGS`` in a child process (crash tests, real exit codes)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "alq", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, **kwargs)


def gaussian_pool(n=600, d=16, c=4, seed=0, sep=4.0, dtype=np.float32):
    """Small well-separated mixture: (x, y) with y in 0..c-1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * sep
    y = rng.integers(0, c, size=n)
    x = centres[y] + rng.normal(size=(n, d))
    return x.astype(dtype), y


@pytest.fixture
def small_pool(tmp_path):
    """A pool directory on disk (7 shards of 100 rows) with its labels y."""
    from alq.store import PoolWriter

    x, y = gaussian_pool(700)
    w = PoolWriter(tmp_path / "pool", shard_rows=100, dtype="float32")
    w.add(x)
    w.close()
    return tmp_path / "pool", x, y
