"""The GPU check's comparison logic (tests/gpu_check.py), and the device fixes it led to.

The script itself needs a few minutes even at its tiniest size (every step is
an ``alq`` subprocess, run twice), so only its logic is tested here; `make
gpu-check` runs it whole.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

_spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).with_name("gpu_check.py"))
gc = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gc
_spec.loader.exec_module(gc)


# -- selections -------------------------------------------------------------------------------
def test_identical_selection():
    r = gc.compare_selections([3, 1, 2], [0.1, 0.2, math.inf], [3, 1, 2], [0.1, 0.2, math.inf])
    assert r["verdict"] == gc.IDENTICAL and r["overlap"] == 1.0 and r["max_abs_diff"] == 0.0


def test_rounding_only_is_same_up_to_ties():
    r = gc.compare_selections([3, 1, 2], [0.1, 0.2, 0.3], [3, 1, 2], [0.1, 0.2 + 1e-7, 0.3])
    assert r["verdict"] == gc.TIES and r["max_abs_diff"] == pytest.approx(1e-7)


def test_swapped_tied_rows_are_same_up_to_ties():
    # rows 5 and 6 share a score: which one a run takes (or in which order) is a tie
    a = gc.compare_selections([1, 5, 6], [0.1, 0.5, 0.5], [1, 6, 5], [0.1, 0.5, 0.5])
    assert a["verdict"] == gc.TIES and a["overlap"] == 1.0
    b = gc.compare_selections([1, 5], [0.1, 0.5], [1, 6], [0.1, 0.5])
    assert b["verdict"] == gc.TIES and b["overlap"] == 0.5


def test_different_rows_differ():
    r = gc.compare_selections([1, 2, 3], [0.1, 0.2, 0.3], [1, 2, 4], [0.1, 0.2, 0.9])
    assert r["verdict"] == gc.DIFFERS
    assert r["overlap"] == pytest.approx(2 / 3) and r["max_abs_diff"] == 0.0  # common rows agree
    assert gc.compare_selections([1, 2], [0.1, 0.2], [1], [0.1])["verdict"] == gc.DIFFERS
    # same rows, scores far apart
    assert gc.compare_selections([1, 2], [0.1, 0.2], [1, 2], [0.1, 0.25])["verdict"] == gc.DIFFERS


def test_max_abs_diff_handles_inf_and_nan():
    assert gc.max_abs_diff([math.inf, 1.0], [math.inf, 1.5]) == 0.5
    assert gc.max_abs_diff([math.nan], [math.nan]) == 0.0
    assert gc.max_abs_diff([], []) == 0.0
    assert gc.max_abs_diff([math.inf], [1.0]) == math.inf


# -- scores and heads -------------------------------------------------------------------------
def test_arrays_with_labels():
    v = np.array([0.5, 0.0, 0.3])
    assert gc.compare_arrays(v, v.copy(), labels_a=[1, 2, 3], labels_b=[1, 2, 3])["verdict"] == gc.IDENTICAL
    # the predicted class flips only on the row whose margin is 0: a tie
    r = gc.compare_arrays(v, v + 1e-8, labels_a=[1, 2, 3], labels_b=[1, 0, 3], tie_width=v)
    assert r["verdict"] == gc.TIES and r["overlap"] == pytest.approx(2 / 3)
    # a flip on a row with a clear margin is a difference
    assert gc.compare_arrays(v, v, labels_a=[1, 2, 3], labels_b=[0, 2, 3], tie_width=v)["verdict"] == gc.DIFFERS
    assert gc.compare_arrays(v, v + 0.1)["verdict"] == gc.DIFFERS


# -- clusters ---------------------------------------------------------------------------------
def test_partitions():
    a = np.array([0, 0, 1, 1, 2])
    assert gc.compare_partitions(a, a.copy())["verdict"] == gc.IDENTICAL
    r = gc.compare_partitions(a, np.array([7, 7, 3, 3, 5]))  # same partition, other ids
    assert r["verdict"] == gc.TIES and r["overlap"] == 1.0
    r = gc.compare_partitions(a, np.array([0, 0, 0, 1, 2]))  # one row moved
    assert r["verdict"] == gc.DIFFERS and r["overlap"] == pytest.approx(4 / 5)
    r = gc.compare_partitions(a, np.array([0, 0, 1, 1, 1]))  # two clusters merged
    assert r["verdict"] == gc.DIFFERS and r["max_abs_diff"] == 1.0


# -- reading outputs and the table ------------------------------------------------------------
def test_read_selection_orders_by_rank(tmp_path):
    f = tmp_path / "sel.parquet"
    pq.write_table(pa.table({"id": [9, 4, 7], "rank": [2, 0, 1], "score": [0.3, 0.1, 0.2]}), f)
    ids, scores = gc.read_selection(f)
    assert ids.tolist() == [4, 7, 9] and scores.tolist() == [0.1, 0.2, 0.3]


def test_table_lists_every_step_and_ratio():
    rows = [{"step": "select margin", "verdict": gc.IDENTICAL, "overlap": 1.0, "max_abs_diff": 0.0,
             "gpu_s": 1.0, "cpu_s": 4.0},
            {"step": "cluster graph", "verdict": gc.FAILED, "cpu_s": 2.0},
            {"step": "simulate", "verdict": gc.SKIPPED}]
    text = gc.format_table(rows, gpu=True)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["step", "result"] and len(lines) == 5
    assert "0.25x" in lines[2] and "FAILED" in lines[3] and "skipped" in lines[4]
    assert "no GPU" in gc.format_table(rows, gpu=False)


def test_no_nvidia_smi_means_no_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    present, why = gc.nvidia_gpu()
    assert not present and "nvidia-smi" in why


@pytest.mark.parametrize("argv,want", [([], "small"), (["--size", "tiny"], "tiny")])
def test_without_a_gpu_the_default_size_is_small_and_exits_0(monkeypatch, tmp_path, capsys, argv, want):
    """Issue 20 item 21: `make gpu-check` on a machine with no GPU runs the small size's CPU half, exit 0."""
    seen = {}

    def fake_check(runner, size, *, seed):
        seen.update(size)
        return [{"step": "x", "verdict": "cpu ok"}]

    monkeypatch.setattr(gc, "nvidia_gpu", lambda: (False, "nvidia-smi not found"))
    monkeypatch.setattr(gc, "run_check", fake_check)
    monkeypatch.setattr(gc, "format_table", lambda rows, gpu: "table")
    assert gc.main([*argv, "--work", str(tmp_path / "w")]) == 0
    assert seen == gc.SIZES[want]
    assert f"CPU half only (size {want})" in capsys.readouterr().out


def test_gpu_venv_never_gets_faiss_cpu_or_torch_from_the_deps():
    deps = gc._pyproject_deps()
    assert deps and not any(d.lower().startswith(("faiss", "torch")) for d in deps)


def test_sizes_have_the_same_keys():
    keys = set(gc.SIZES["full"])
    assert all(set(v) == keys for v in gc.SIZES.values())


# -- device fixes found while reviewing the CUDA paths ----------------------------------------
def test_alq_device_cpu_keeps_faiss_on_cpu(monkeypatch):
    from alq import device

    monkeypatch.setenv("ALQ_DEVICE", "cpu")
    assert device.faiss_gpu_count() == 0
    import faiss

    index = faiss.IndexFlatL2(4)
    assert device.faiss_to_gpu(index) is index  # no GPU: the same CPU index back


def test_set_nprobe_on_a_cpu_ivf_index():
    import faiss

    from alq.device import faiss_set_nprobe

    q = faiss.IndexFlatL2(4)
    ivf = faiss.IndexIVFFlat(q, 4, 2)
    faiss_set_nprobe(ivf, 2)
    assert ivf.nprobe == 2


def test_to_tensor_float16_block_is_float32_on_cpu():
    from alq.scoring.stream import to_tensor

    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    t = to_tensor(x, torch.device("cpu"))
    assert t.dtype == torch.float32 and t.device.type == "cpu" and t.tolist() == x.astype(np.float32).tolist()


def test_dropout_training_is_deterministic_for_a_seed():
    """nn.Dropout drew from torch's global RNG, which starts from a random seed in every process."""
    from alq.model.train import TrainOptions, train_head

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    opts = TrainOptions(hidden=8, dropout=0.3, seed=3, epochs=5)

    torch.manual_seed(1)
    state = torch.get_rng_state()
    a = train_head(x, y, [0, 1], multilabel=False, opts=opts).net.state_dict()
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG state is left as it was
    torch.manual_seed(12345)  # another global state: the head must not change
    b = train_head(x, y, [0, 1], multilabel=False, opts=opts).net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- the runner: a failed or overlong alq run is one row, the others go on --------------------
def _fake_python(tmp_path, body: str) -> str:
    exe = tmp_path / "fakepy"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    return str(exe)


def _runner(tmp_path, python, **kw):
    return gc.Runner(python=python, work=tmp_path, working_memory=64, gpu=False, deadline=math.inf, **kw)


def test_runner_times_out_a_run(tmp_path):
    r = _runner(tmp_path, _fake_python(tmp_path, "sleep 5"), run_timeout=0.3)
    r.step("slow", lambda dev, tag: r.alq("score", device=dev), lambda: {})
    (row,) = r.rows
    assert row["cpu_over"] == 0.3 and row["verdict"].startswith("CPU > 0.3s")
    assert "> 0" in gc.format_table(r.rows, gpu=False)


def test_runner_reports_a_failed_run_and_goes_on(tmp_path):
    r = _runner(tmp_path, _fake_python(tmp_path, 'echo "Error: broken on purpose" >&2; exit 2'))
    r.step("bad", lambda dev, tag: r.alq("select", device=dev), lambda: {})
    r.step("fine", lambda dev, tag: 0.0, lambda: {})
    assert r.rows[0]["verdict"] == gc.FAILED and "broken on purpose" in r.rows[0]["error"]
    assert r.rows[1]["verdict"] == "cpu ok"
    r.deadline = 0.0
    r.step("late", lambda dev, tag: 0.0, lambda: {})
    assert r.rows[2]["verdict"].startswith(gc.SKIPPED)


def test_cpu_half_env_hides_the_gpu(tmp_path):
    r = _runner(tmp_path, sys.executable)
    env = r.env("cpu")
    assert env["ALQ_DEVICE"] == "cpu" and env["CUDA_VISIBLE_DEVICES"] == "" and env["ALQ_WORKING_MEMORY"] == "64"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(gc.ROOT)
    assert r.env("cuda")["ALQ_DEVICE"] == "cuda"
