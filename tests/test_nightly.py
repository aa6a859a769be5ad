"""The README's nightly cron script, run verbatim for two nights on sample_data.

Night 1 builds the pool from the first 1,200 rows, imports the labels that
came back and sends a batch; night 2 appends the remaining rows, updates the
clusters and sends a second batch that must not repeat the first (pending).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_script() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"### The nightly cron job\n\n```bash\n(.*?)```", text, flags=re.S)
    assert m, "README lost its nightly cron script"
    return m.group(1)


@pytest.mark.slow
def test_readme_nightly_script_two_nights(tmp_path):
    script = tmp_path / "nightly.sh"
    script.write_text(readme_script())
    table = pq.read_table(REPO / "sample_data" / "pool.parquet")
    for day, part in (("20261121", table.slice(0, 1200)), ("20261122", table.slice(1200))):
        (tmp_path / "incoming" / day).mkdir(parents=True)
        pq.write_table(part, tmp_path / "incoming" / day / "vectors.parquet")
    (tmp_path / "sent").mkdir()
    (tmp_path / "returned" / "20261121").mkdir(parents=True)
    first = set(table.slice(0, 1200).column("id").to_pylist())
    rows = list(csv.reader(open(REPO / "sample_data" / "labels_round0.csv")))
    with open(tmp_path / "returned" / "20261121" / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(rows[0])
        w.writerows(r for r in rows[1:] if int(r[0]) in first)

    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, AL_DIR=str(tmp_path), BUDGET="50", PYTHONPATH=str(REPO),
               PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    if not (Path(bindir) / "alq").exists():  # running from a source tree without the console script
        shim = tmp_path / "bin" / "alq"
        shim.parent.mkdir()
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m alq "$@"\n')
        shim.chmod(0o755)
        env["PATH"] = str(shim.parent) + os.pathsep + env["PATH"]
    summaries = []
    for day in ("20261121", "20261122"):
        proc = subprocess.run(["bash", str(script)], env=dict(env, TODAY=day), capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        summaries.append(json.loads(proc.stdout))
    night1, night2 = summaries
    assert night1["selected"] == night2["selected"] == 50
    assert night1["pool_rows"] == 1200 and night2["pool_rows"] == 1497
    assert night1["pending"] == 0 and night2["pending"] == 50
    labeled = {int(r[0]) for r in rows[1:] if int(r[0]) in first}
    batch1 = set(pq.read_table(tmp_path / "sent" / "20261121.parquet").column("id").to_pylist())
    batch2 = set(pq.read_table(tmp_path / "sent" / "20261122.parquet").column("id").to_pylist())
    assert not batch1 & batch2, "night 2 re-selected rows still out for labeling"
    assert not (batch1 | batch2) & labeled
    assert night2["clusters_covered"] >= 1
