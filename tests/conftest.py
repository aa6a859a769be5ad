"""Shared fixtures: real files in tmp dirs, the CLI run in-process."""

from __future__ import annotations

import contextlib
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


# -- object storage: a real S3 API (moto's server) on loopback --------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's child process: a SIGTERM when the test process dies (even by SIGKILL), so no server is
    left orphaned on the machine (Linux prctl; elsewhere the fixture's own teardown stops it)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def _loopback_server(argv: list[str], probe: str, env: dict[str, str]):
    """Start a server process on loopback, wait until ``probe`` answers, set ``env`` while it runs."""
    import time
    import urllib.request

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(probe, timeout=1)
            break
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"{argv[2]} did not start")
            time.sleep(0.1)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for the session; sets AWS_* so every client (pyarrow, boto3) reaches it.

    Skipped when moto is not installed (``make test`` installs it with the dev extra).
    """
    pytest.importorskip("moto.server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": url,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    with _loopback_server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], url, env):
        yield url


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket: returns its URI prefix ``s3://NAME``."""
    import uuid

    import boto3

    from alq.fs import reset_filesystems

    name = f"alq-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    reset_filesystems()
    return f"s3://{name}"


@pytest.fixture(scope="session")
def gcs_server():
    """A GCS emulator (gcp-storage-emulator) on 127.0.0.1; sets STORAGE_EMULATOR_HOST for both clients.

    It serves reads, writes and listings; it does not enforce generation
    preconditions, so conditional-write behaviour is tested on S3 only.
    """
    pytest.importorskip("gcp_storage_emulator")
    pytest.importorskip("google.cloud.storage")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
            "--in-memory"]
    with _loopback_server(argv, url + "/storage/v1/b", {"STORAGE_EMULATOR_HOST": url}):
        yield url


@pytest.fixture
def gcs_bucket(gcs_server):
    import uuid

    from google.cloud import storage

    from alq.fs import reset_filesystems

    name = f"alq-test-{uuid.uuid4().hex[:12]}"
    storage.Client().create_bucket(name)
    reset_filesystems()
    return f"gs://{name}"
