"""Benchmark of `alq dedup` against the kNN stage of `alq cluster` on the same pool (run by `make bench`).

Target (issue 19): `alq dedup` of 1M x 128 on 2 cores within 1.5x the kNN
stage (index build + kNN-graph search) of `alq cluster`; peak memory flat
in N beyond the index. Printed per size: the kNN stage's seconds
(:func:`alq.cluster.knngraph.knn_graph`, k=10 as `alq cluster`), `alq dedup
--auto` and `--threshold` wall seconds and their ratio to it, `alq dedup
--clusters` (reusing the saved graph), and peak RSS minus the index's
vectors (N x d x 4 bytes). Each measured run is a child process.

The pool: `bench_cluster`'s mixture (2,000 Gaussian components, d=128,
float16 shards) with 5% of its rows copied with small noise and 1% copied
exactly. Sizes: ALQ_BENCH_DEDUP_SIZES (default "200000,1000000").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[2]
D = 128
SIZES = [int(s) for s in os.environ.get("ALQ_BENCH_DEDUP_SIZES", "200000,1000000").split(",") if s]
WORK = Path(os.environ.get("ALQ_BENCH_DIR", "/tmp/alq-bench-dedup"))


def make_pool(n: int) -> Path:
    from alq.store import PoolWriter
    from tests.bench.bench_cluster import mixture

    path = WORK / f"pool-{n}"
    if (path / "manifest.json").exists():
        return path
    n_noisy, n_exact = n // 20, n // 100
    base = n - n_noisy - n_exact
    rng = np.random.default_rng(1)
    w = PoolWriter(path, dtype="float16", overwrite=True)
    kept = []
    for x, _ in mixture(base):
        w.add(x)
        kept.append(x[: max(1, len(x) * (n_noisy + n_exact) // base + 1)])
    src = np.concatenate(kept)[: n_noisy + n_exact]
    w.add(src[:n_noisy] + rng.normal(scale=0.01, size=(n_noisy, D)).astype(np.float32))
    w.add(src[n_noisy:])
    w.close()
    return path


def run_measured(code: str, *args) -> tuple[float, float, str]:
    """Python ``code`` in a child process: (wall seconds, peak RSS GiB, stdout)."""
    wrap = ("import resource, sys, time; t=time.perf_counter()\n" + code +
            "\nsys.stderr.write('\\nBENCH %f %d\\n' % (time.perf_counter()-t, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", wrap, *map(str, args)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("BENCH ")][-1].split()
    return float(line[1]), int(line[2]) / 2**20, proc.stdout


KNN_STAGE = """
import json, tempfile
from pathlib import Path
from alq.cluster.knngraph import knn_graph
from alq.engine import LocalEngine
from alq.store import open_pool
pool = open_pool(sys.argv[1])
nbr, dist, info = knn_graph(pool, k=10, normalize=None, seed=0, kind="auto", target_recall=0.95,
                            engine=LocalEngine(), work=Path(tempfile.mkdtemp()) / "g")
print(json.dumps({"index": info.get("index"), "nprobe": info.get("nprobe"), **info["stage_seconds"]}))
"""
CLI = "from alq.cli import run; c = run(sys.argv[1:])\nif c: sys.exit(c)"


@pytest.mark.parametrize("n", SIZES)
def test_bench_dedup_vs_cluster_knn_stage(n):
    path = make_pool(n)
    t_knn, rss_knn, out = run_measured(KNN_STAGE, path)
    knn = json.loads(out)
    index_gib = n * D * 4 / 2**30
    line = (f"\n[dedup N={n} d={D}] cluster kNN stage {t_knn:.1f} s ({knn}), peak RSS {rss_knn:.2f} GiB; "
            f"index vectors {index_gib:.2f} GiB")
    for label, extra in (("--auto", ("--auto",)), ("--threshold 0.5", ("--threshold", "0.5"))):
        t, rss, out = run_measured(CLI, "dedup", path, "--out", WORK / f"dups-{n}", *extra, "--json", "-q")
        s = json.loads(out)
        line += (f"\n  dedup {label}: {t:.1f} s = {t / t_knn:.2f}x the kNN stage; peak RSS {rss:.2f} GiB "
                 f"({rss - index_gib:.2f} beyond the index); threshold {s['threshold']:.4g}, "
                 f"{s['duplicate_groups']} groups over {s['rows_in_duplicate_groups']} rows, "
                 f"index {s['index']}, seconds {s['seconds']}")
    print(line)
