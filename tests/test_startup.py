"""Start-up stays light: help, `info` and `labels` never import torch or faiss."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "faiss", "matplotlib")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def test_catalog_matches_registry():
    """The help catalogue read from source equals the imported registry, field by field."""
    from alq.cli._strategies import catalog
    from alq.strategies import load_all

    reg = load_all()
    cat = catalog()
    assert sorted(cat) == sorted(reg)
    for name, cls in reg.items():
        info = cat[name]
        assert (info.help, info.needs_head, info.simulation_only, info.distributed) == (
            cls.help, cls.needs_head, cls.simulation_only, cls.distributed), name


def test_importtime_help_has_no_torch():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "alq", "--help"], capture_output=True,
                          text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage" in proc.stdout
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "typer" in modules  # the trace is real
    assert not any(m.split(".")[0] in ("torch", "faiss") for m in modules)


def test_help_info_labels_never_import_heavy_modules(tmp_path):
    """Every `--help`, `alq info` of a pool and labels file, and `alq labels ...` in one process."""
    from alq.store import PoolWriter

    w = PoolWriter(tmp_path / "pool", shard_rows=50, dtype="float32")
    w.add(np.random.default_rng(0).normal(size=(120, 8)).astype(np.float32))
    w.close()
    (tmp_path / "l.csv").write_text("id,label\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(20)))
    pq.write_table(pa.table({"id": pa.array([1, 3, 5, 30], pa.int64())}), tmp_path / "sent.parquet")
    code = textwrap.dedent(f"""
        import sys
        from alq.cli import load_commands, run
        app = load_commands()
        import typer.main
        group = typer.main.get_command(app)
        calls = [["--help"]] + [[c, "--help"] for c in group.commands]
        calls += [["labels", sub, "--help"] for sub in ("import", "show", "pending")]
        d = {str(tmp_path)!r}
        calls += [["info", d + "/pool"], ["info", d + "/pool", "--verify", "--json"],
                  ["labels", "import", d + "/l.csv", "--pool", d + "/pool", "--out", d + "/labels.parquet"],
                  ["labels", "show", d + "/labels.parquet", "--pool", d + "/pool", "--json"],
                  ["labels", "pending", "--sent", d + "/sent.parquet", "--labels", d + "/labels.parquet",
                   "--out", d + "/pending.parquet"],
                  ["info", d + "/labels.parquet"]]
        for argv in calls:
            rc = run(argv)
            assert rc == 0, (argv, rc)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
        print("HEAVY", heavy, len(calls))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY [] "), last
    assert int(last.split()[-1]) > 15  # every command's help was run
    assert (tmp_path / "pending.parquet").exists()
