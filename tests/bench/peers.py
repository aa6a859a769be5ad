"""Peer libraries (modAL, scikit-activeml, DISTIL) live in their own venv.

They are benchmark-only: ``make bench-peers`` builds ``.bench/peers`` with the
CPU torch first, then the peers, so they never touch alq's environment. A
benchmark runs a peer as a subprocess of that venv on the same .npy inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEERS_PY = REPO / ".bench" / "peers" / "bin" / "python"


def peer_python() -> Path | None:
    return PEERS_PY if PEERS_PY.exists() else None


def run_peer(script: str, *args, timeout: float = 900) -> dict:
    """Run a Python ``script`` (source text) in the peers venv; it prints one JSON line last.

    Returns that JSON plus wall seconds and peak RSS (from the child's rusage).
    A timeout or crash is reported, not raised: a peer that runs out of memory
    or time counts as such.
    """
    py = peer_python()
    if py is None:
        return {"status": "unavailable", "why": "run `make bench-peers` first"}
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([str(py), "-c", script, *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": timeout}
    wall = time.perf_counter() - t0
    import resource

    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        status = "oom" if proc.returncode in (-9, 137) or "MemoryError" in proc.stderr else "error"
        return {"status": status, "returncode": proc.returncode, "stderr": tail, "seconds": wall}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.setdefault("status", "ok")
    out["wall_seconds"] = wall
    out["children_peak_rss_mib_upper_bound"] = peak_kib / 1024
    return out


if __name__ == "__main__":
    print(peer_python() or "no peers venv", file=sys.stderr)
