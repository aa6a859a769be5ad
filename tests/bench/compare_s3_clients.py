"""pyarrow.fs vs fsspec's s3fs on the same objects of a loopback S3 (moto) server: which client alq uses.

s3fs pins an older botocore than the dev venv's boto3, so run this from a
separate venv holding pyarrow, numpy and s3fs; the moto server runs from
the interpreter given by ALQ_MOTO_PYTHON (default: .venv/bin/python):

    python3 -m venv /tmp/s3fs-venv && /tmp/s3fs-venv/bin/pip install pyarrow numpy s3fs
    /tmp/s3fs-venv/bin/python tests/bench/compare_s3_clients.py

Prints MiB/s for whole 32 MiB objects and 64 random 1 MiB ranges, medians of 3.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MB = 32


def _timed(fn) -> float:
    fn()
    out = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    import pyarrow.fs as pafs
    import s3fs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto_py = os.environ.get("ALQ_MOTO_PYTHON", str(REPO / ".venv" / "bin" / "python"))
    srv = subprocess.Popen([moto_py, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url)
                break
            except OSError:
                time.sleep(0.1)
        os.environ.update(AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t", AWS_ENDPOINT_URL=url,
                          AWS_DEFAULT_REGION="us-east-1")
        s3 = s3fs.S3FileSystem(client_kwargs={"endpoint_url": url})
        s3.mkdir("bench")
        pa = pafs.S3FileSystem(endpoint_override=url, scheme="http", access_key="t", secret_key="t",
                               region="us-east-1")
        with pa.open_output_stream("bench/o") as f:
            f.write(np.random.default_rng(0).bytes(MB << 20))
        fh = pa.open_input_file("bench/o")
        part = 16 << 20
        pool = ThreadPoolExecutor(8)
        offs = np.random.default_rng(1).integers(0, (MB - 1) << 20, 64)
        rows = [
            ("pyarrow read_at, whole object", MB / _timed(lambda: fh.read_at(MB << 20, 0))),
            ("pyarrow 16 MiB ranges, 8 threads (alq)",
             MB / _timed(lambda: list(pool.map(lambda a: fh.read_at(part, a), range(0, MB << 20, part))))),
            ("pyarrow stream read() without a size", MB / _timed(lambda: pa.open_input_stream("bench/o").read())),
            ("s3fs cat_file, whole object", MB / _timed(lambda: s3.cat_file("bench/o"))),
            ("pyarrow 64 x 1 MiB random ranges", 64 / _timed(lambda: [fh.read_at(1 << 20, int(o)) for o in offs])),
            ("s3fs 64 x 1 MiB random ranges",
             64 / _timed(lambda: [s3.cat_file("bench/o", start=int(o), end=int(o) + (1 << 20)) for o in offs])),
        ]
        for name, mibs in rows:
            print(f"  {name:<42} {mibs:8.0f} MiB/s")
    finally:
        srv.terminate()


if __name__ == "__main__":
    main()
