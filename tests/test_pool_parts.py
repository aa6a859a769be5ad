"""Shards written by workers (write_part) and adopted by the driver's writer give the pool one writer would."""

from __future__ import annotations

import numpy as np
import pytest

from alq import fs
from alq.errors import BadInputError
from alq.store import PoolWriter, open_pool
from alq.store.parts import write_part

X = np.random.default_rng(0).normal(size=(1050, 12)).astype(np.float32)


def _one_writer(dest, x=X):
    w = PoolWriter(dest, shard_rows=200, dtype="float16")
    w.add(x[:500], source="a.npy")
    w.add(x[500:], source="b.npy", source_row0=0)
    return w.close()


def _by_parts(dest, *, retry_first=False, x=X, ids=None):
    w = PoolWriter(dest, shard_rows=200, dtype="float16")
    spec = w.part_spec()
    n0, g0 = w.next_shard_number(), w.next_generated_id()
    parts = [(0, 600), (600, len(x))]  # whole shards per part (600 = 3 x 200), the last one ragged
    shards = []
    for lo, hi in parts:
        first = n0 + lo // 200
        part_ids = None if ids is None else ids[lo:hi]
        batch = [(x[lo:hi], part_ids, None, "in.npy", lo)]
        if retry_first and lo == 0:
            write_part(spec, first, batch, generated_id_start=g0 + lo)  # an attempt whose result was lost
        shards.extend(write_part(spec, first, batch, generated_id_start=g0 + lo))
    w.adopt(shards, rows=[("in.npy", 200 * k) for k in range(len(shards))])
    return w.close()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_parts_equal_one_writer(where, tmp_path, request):
    base = tmp_path if where == "local" else request.getfixturevalue("s3_bucket")
    a = _one_writer(fs.join(base, "one"))
    b = _by_parts(fs.join(base, "parts"), retry_first=True)
    assert a.shards == b.shards and a.fingerprint == b.fingerprint
    names = set(fs.listdir(fs.join(base, "parts")))
    assert names == {f for s in b.shards for f in (s.npy, s.parquet)} | {"manifest.json"}  # one copy each
    assert open_pool(fs.join(base, "parts")).verify() == []


def test_parts_appended_continue_names_and_ids(tmp_path):
    _one_writer(tmp_path / "pool")
    w = PoolWriter(tmp_path / "pool", append=True)
    n0, g0 = w.next_shard_number(), w.next_generated_id()
    assert (n0, g0) == (6, 1050)
    shards = write_part(w.part_spec(), n0, [(X[:10] + 1, None, None, "c.npy", 0)], generated_id_start=g0)
    w.adopt(shards)
    m = w.close()
    pool = open_pool(tmp_path / "pool")
    assert m.count == 1060 and list(pool.ids([1050, 1059])) == [1050, 1059]


def test_duplicate_ids_across_parts_are_refused_and_nothing_is_published(tmp_path):
    ids = np.arange(len(X))
    ids[700] = 5  # part 2 repeats an id of part 1
    with pytest.raises(BadInputError, match="duplicate id 5"):
        _by_parts(tmp_path / "pool", ids=ids)
    assert not (tmp_path / "pool").exists()
    assert not [p for p in tmp_path.glob(".pool.*") if p.name != ".pool.lock"]  # the build directory went too
