"""gs:// through the same layer, against a GCS emulator on loopback (reads, writes, listings, commits).

The emulator does not enforce generation preconditions, so what a conditional
write refuses is tested on S3 (tests/test_remote_pool.py); here the GCS code
paths of every operation run against a real HTTP API.
"""

from __future__ import annotations

import numpy as np

from alq import fs
from alq.store import PoolWriter, open_pool


def test_pool_round_trip_on_gs(gcs_bucket, tmp_path):
    x = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    uri = fs.join(gcs_bucket, "pool")
    for dest in (tmp_path / "pool", uri):
        w = PoolWriter(dest, shard_rows=200, dtype="float16")
        w.add(x[:300])
        w.close()
        w = PoolWriter(dest, append=True)
        w.add(x[300:])
        w.close()
    a, b = open_pool(tmp_path / "pool"), open_pool(uri)
    assert a.manifest.shards == b.manifest.shards
    assert (tmp_path / "pool" / "manifest.json").read_bytes() == fs.read_bytes(fs.join(uri, "manifest.json"))
    assert np.array_equal(np.concatenate([blk.vectors for blk in b.iter_blocks(block_rows=64)]),
                          x.astype(np.float16))
    assert np.array_equal(b.take([3, 499, 250]), a.take([3, 499, 250]))
    assert b.verify() == []
    assert not fs.exists(fs.join(uri, "_alq_writer.lock"))  # the lock object was released


def test_cli_on_gs(cli, gcs_bucket, tmp_path):
    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    uri = fs.join(gcs_bucket, "pool")
    code, _, err = cli("embed", tmp_path / "x.npy", "--out", uri, "--shard-rows", "100", "--quiet")
    assert code == 0, err
    code, out, err = cli("info", uri, "--verify", "--json")
    assert code == 0 and '"verified": true' in out, err
    (tmp_path / "l.csv").write_text("id,label\n" + "".join(f"{i},{i % 2}\n" for i in range(0, 300, 3)))
    code, _, err = cli("labels", "import", tmp_path / "l.csv", "--pool", uri, "--out", fs.join(gcs_bucket, "l.parquet"))
    assert code == 0, err
    assert fs.file_type(fs.join(gcs_bucket, "l.parquet")) == "file"
