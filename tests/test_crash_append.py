"""SIGKILL `alq embed` mid-write: the previous pool still verifies and reads the same."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from alq.store import PoolWriter, open_pool
from tests.conftest import REPO, run_alq_subprocess


def _shards_written(pool_dir, mode) -> int:
    if mode == "append":
        return sum(1 for f in pool_dir.iterdir() if f.name.startswith("shard-") and f.name.endswith(".parquet")) - 3
    building = [d for d in pool_dir.parent.iterdir() if d.name.endswith(".building")]
    return sum(1 for d in building for f in d.iterdir() if f.name.endswith(".parquet"))


@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_sigkill_mid_write_leaves_the_previous_pool(tmp_path, mode):
    pool_dir = tmp_path / "pool"
    base = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    w = PoolWriter(pool_dir, shard_rows=100, dtype="float32")
    w.add(base)
    w.close()
    manifest = (pool_dir / "manifest.json").read_bytes()
    np.save(tmp_path / "big.npy", np.ones((20_000, 4), np.float32))  # 20,000 one-row shards: slow enough to kill

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "alq", "embed", str(tmp_path / "big.npy"), "--out", str(pool_dir),
                             "--shard-rows", "1", "--dtype", "float32", f"--{mode}", "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _shards_written(pool_dir, mode) < 5:
            assert proc.poll() is None, f"embed ended before it could be killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no shard written within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # the previous pool is exactly as it was
    assert (pool_dir / "manifest.json").read_bytes() == manifest
    pool = open_pool(pool_dir)
    assert pool.verify() == []
    assert pool.count == 300
    np.testing.assert_array_equal(pool.take(np.arange(300)), base)
    np.testing.assert_array_equal(pool.ids(), np.arange(300))
    r = run_alq_subprocess("info", pool_dir, "--verify", "--json")
    assert r.returncode == 0, r.stderr

    # and the next run goes through despite the debris the killed one left
    np.save(tmp_path / "small.npy", np.full((7, 4), 2.0, np.float32))
    flag = "--append" if mode == "append" else "--overwrite"
    r = run_alq_subprocess("embed", tmp_path / "small.npy", "--out", pool_dir, "--shard-rows", "3", flag, "-q")
    assert r.returncode == 0, r.stderr
    pool = open_pool(pool_dir)
    assert pool.verify() == [] and pool.count == (307 if mode == "append" else 7)
    np.testing.assert_array_equal(pool.take([pool.count - 1]), np.full((1, 4), 2.0, np.float32))
