"""The Makefile's install targets (issue 20 item 20): `make demo` installs alq alone, `make test` the rest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(target: str, *extra: str) -> list[str]:
    """The commands `make TARGET` would run, as if nothing were installed yet (-B)."""
    proc = subprocess.run(["make", "-n", "-B", "-C", str(REPO), target, *extra], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [ln for ln in proc.stdout.splitlines() if "pip install" in ln]


def test_demo_installs_only_what_the_demo_needs():
    installs = _dry_run("demo")
    assert installs and not any("[" in ln for ln in installs), installs  # no extras: no dev tools, no Ray


def test_test_adds_the_dev_and_ray_extras():
    installs = _dry_run("test")
    assert any(".[dev,ray]" in ln for ln in installs), installs


def test_the_cpu_torch_wheel_is_one_variable_away():
    installs = _dry_run("demo", "TORCH_PIP_ARGS=--index-url https://download.pytorch.org/whl/cpu")
    torch = [ln for ln in installs if "torch" in ln]
    assert torch and "--index-url https://download.pytorch.org/whl/cpu" in torch[0]
    readme = (REPO / "README.md").read_text()
    assert "download.pytorch.org/whl/cpu" in readme  # the README says how, for a fresh machine
