"""`-q` means a silent stderr, library warnings included (faiss prints its k-means warning from C++)."""

from __future__ import annotations

from conftest import run_alq_subprocess


def test_quiet_typiclust_prints_nothing(small_pool, tmp_path):
    path, _, _ = small_pool
    # 700 rows into 300 clusters: faiss would warn "please provide at least ... training points"
    proc = run_alq_subprocess("select", path, "--strategy", "typiclust", "--budget", "300", "--seed", "0",
                              "--out", tmp_path / "t.parquet", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""
    assert (tmp_path / "t.parquet").exists()
