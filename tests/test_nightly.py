"""The README's nightly cron script, run verbatim for the nights a deployment meets.

Night 1 is a fresh deployment: the pool is built from the first 1,200 rows
and, with no labels yet, the cold-start branch sends a typiclust batch. Night 1
is then rerun (the rows are already in the pool: skipped; the same batch is
written again). Night 2 appends the remaining rows, imports the labels of
night 1's batch and sends a Cluster-Margin batch that must not repeat it.
Night 3 has no incoming data and still sends a batch.
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


def _env(tmp_path: Path) -> dict:
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, AL_DIR=str(tmp_path), BUDGET="50", PYTHONPATH=str(REPO),
               PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    if not (Path(bindir) / "alq").exists():  # running from a source tree without the console script
        shim = tmp_path / "bin" / "alq"
        shim.parent.mkdir()
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m alq "$@"\n')
        shim.chmod(0o755)
        env["PATH"] = str(shim.parent) + os.pathsep + env["PATH"]
    return env


def _night(script: Path, env: dict, day: str) -> dict:
    proc = subprocess.run(["bash", str(script)], env=dict(env, TODAY=day), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _ids(path: Path) -> list:
    return pq.read_table(path).column("id").to_pylist()


@pytest.mark.slow
def test_readme_nightly_script_real_nights(tmp_path):
    script = tmp_path / "nightly.sh"
    script.write_text(readme_script())
    table = pq.read_table(REPO / "sample_data" / "pool.parquet")
    truth = dict(zip(*pq.read_table(REPO / "sample_data" / "pool_labels.parquet").to_pydict().values()))
    for day, part in (("20261121", table.slice(0, 1200)), ("20261122", table.slice(1200))):
        (tmp_path / "incoming" / day).mkdir(parents=True)
        pq.write_table(part, tmp_path / "incoming" / day / "vectors.parquet")
    env = _env(tmp_path)

    night1 = _night(script, env, "20261121")  # fresh deployment: no labels, no head
    assert night1["strategy"] == "typiclust" and night1["selected"] == 50
    assert night1["pool_rows"] == 1200 and night1["labeled"] == 0 and night1["pending"] == 0
    batch1 = _ids(tmp_path / "sent" / "20261121.parquet")

    rerun = _night(script, env, "20261121")  # the same night again: no error, same pool, same batch
    assert rerun["pool_rows"] == 1200 and rerun["pending"] == 0
    assert _ids(tmp_path / "sent" / "20261121.parquet") == batch1

    (tmp_path / "returned" / "20261122").mkdir(parents=True)  # annotators return night 1's batch
    with open(tmp_path / "returned" / "20261122" / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label"])
        w.writerows((i, truth[i]) for i in batch1)
    night2 = _night(script, env, "20261122")
    assert night2["strategy"] == "cluster-margin" and night2["selected"] == 50
    assert night2["pool_rows"] == 1497 and night2["labeled"] == 50 and night2["pending"] == 0
    assert night2["clusters_covered"] >= 1
    batch2 = _ids(tmp_path / "sent" / "20261122.parquet")
    assert not set(batch1) & set(batch2), "night 2 re-selected labeled rows"

    night3 = _night(script, env, "20261123")  # nothing new came in, nothing came back
    assert night3["pool_rows"] == 1497 and night3["selected"] == 50 and night3["pending"] == 50
    batch3 = _ids(tmp_path / "sent" / "20261123.parquet")
    assert not set(batch3) & (set(batch1) | set(batch2)), "night 3 re-sent rows labeled or still out"


def test_readme_nightly_script_imports_label_studio_exports(tmp_path):
    """Issue 20 item 13: the night's returned Label Studio exports (*.json) are imported beside the CSVs.

    The script runs verbatim with a stand-in `alq` that only records its arguments.
    """
    script = tmp_path / "nightly.sh"
    script.write_text(readme_script())
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "alq").write_text('#!/bin/sh\necho "$*" >> "$ALQ_LOG"\n')
    (tmp_path / "bin" / "alq").chmod(0o755)
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "manifest.json").write_text("{}")
    day = tmp_path / "returned" / "2026-12-02"
    day.mkdir(parents=True)
    for name in ("a.csv", "project-3-at-2026-12-02.json", "notes.txt"):
        (day / name).write_text("")
    log = tmp_path / "alq.log"
    env = dict(os.environ, AL_DIR=str(tmp_path), TODAY="2026-12-02", ALQ_LOG=str(log),
               PATH=str(tmp_path / "bin") + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    imports = [ln.split() for ln in log.read_text().splitlines() if ln.startswith("labels import")]
    assert len(imports) == 1
    assert {"returned/2026-12-02/a.csv", "returned/2026-12-02/project-3-at-2026-12-02.json"} <= set(imports[0])
    assert "returned/2026-12-02/notes.txt" not in imports[0]
