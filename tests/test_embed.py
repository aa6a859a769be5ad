"""``alq embed``: every input format, ids, options, and every bad input (exit 2, pool untouched)."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alq.store import open_pool

RNG = np.random.default_rng(7)
X = RNG.normal(size=(120, 6)).astype(np.float32)


def snapshot(root):
    """Every file under root's parent (hidden temp files included) -> sha256."""
    return {str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.parent.rglob("*")) if p.is_file()}


def parquet(path, x, ids=None, *, fixed=False, vec="embedding", idcol="id"):
    t = pa.list_(pa.float32(), x.shape[1]) if fixed else pa.list_(pa.float32())
    cols = {vec: pa.array(list(x), type=t)}
    if ids is not None:
        cols = {idcol: pa.array(ids), **cols}
    pq.write_table(pa.table(cols), path)
    return path


def load(path):
    pool = open_pool(path)
    return pool.take(np.arange(pool.count), dtype=np.float32), pool.ids()


# -- formats ------------------------------------------------------------------
def test_npy_generated_ids_and_json_summary(tmp_path, cli):
    np.save(tmp_path / "x.npy", X)
    code, out, err = cli("embed", tmp_path / "x.npy", "--out", tmp_path / "pool", "--shard-rows", "50",
                         "--dtype", "float32", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["count"], s["dim"], s["shards"], s["id_type"], s["rows_added"]) == (120, 6, 3, "int64", 120)
    x, ids = load(tmp_path / "pool")
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(ids, np.arange(120))


@pytest.mark.parametrize("fixed", [False, True])
def test_parquet_string_ids_float16(tmp_path, cli, fixed):
    ids = [f"img/{i:03d}.jpg" for i in range(120)]
    parquet(tmp_path / "v.parquet", X, ids, fixed=fixed)
    code, _, err = cli("embed", tmp_path / "v.parquet", "--out", tmp_path / "pool", "-q")
    assert code == 0, err
    x, got = load(tmp_path / "pool")
    np.testing.assert_array_equal(x, X.astype(np.float16).astype(np.float32))
    assert got.tolist() == ids


def test_named_columns_and_float64_list(tmp_path, cli):
    t = pa.table({"key": pa.array(np.arange(120) * 3), "other": pa.array(["a"] * 120),
                  "feat": pa.array([list(map(float, r)) for r in X], type=pa.list_(pa.float64()))})
    pq.write_table(t, tmp_path / "v.parquet")
    code, _, err = cli("embed", tmp_path / "v.parquet", "--id-column", "key", "--vector-column", "feat",
                       "--out", tmp_path / "pool", "--dtype", "float32", "-q")
    assert code == 0, err
    x, ids = load(tmp_path / "pool")
    np.testing.assert_allclose(x, X)
    np.testing.assert_array_equal(ids, np.arange(120) * 3)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_with_ids(tmp_path, cli, compressed):
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "v.npz", embeddings=X, ids=np.array([f"r{i}" for i in range(120)]))
    code, _, err = cli("embed", tmp_path / "v.npz", "--out", tmp_path / "pool", "--dtype", "float32", "-q")
    assert code == 0, err
    x, ids = load(tmp_path / "pool")
    np.testing.assert_array_equal(x, X)
    assert ids[[0, 119]].tolist() == ["r0", "r119"]


def test_directory_of_mixed_files_in_name_order(tmp_path, cli):
    d = tmp_path / "in"
    d.mkdir()
    np.save(d / "b.npy", X[40:80])
    np.save(d / "a.npy", X[:40])
    parquet(d / "c.parquet", X[80:])
    (d / "notes.txt").write_text("ignored")
    code, _, err = cli("embed", d, "--out", tmp_path / "pool", "--dtype", "float32", "--shard-rows", "33", "-q")
    assert code == 0, err
    x, ids = load(tmp_path / "pool")
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(ids, np.arange(120))


@pytest.mark.parametrize("kind", ["txt", "csv", "npy", "parquet"])
def test_separate_ids_file(tmp_path, cli, kind):
    np.save(tmp_path / "a.npy", X[:70])
    np.save(tmp_path / "b.npy", X[70:])
    names = [f"doc-{i}" for i in range(120)]
    f = tmp_path / f"ids.{kind}"
    if kind == "txt":
        f.write_text("\n".join(names) + "\n")
    elif kind == "csv":
        f.write_text("id,source\n" + "".join(f"{n},x\n" for n in names))
    elif kind == "npy":
        np.save(f, np.array(names))
    else:
        pq.write_table(pa.table({"id": names}), f)
    code, _, err = cli("embed", tmp_path / "a.npy", tmp_path / "b.npy", "--ids", f, "--out", tmp_path / "pool", "-q")
    assert code == 0, err
    assert load(tmp_path / "pool")[1].tolist() == names


def test_ids_file_per_input(tmp_path, cli):
    np.save(tmp_path / "a.npy", X[:70])
    np.save(tmp_path / "b.npy", X[70:])
    (tmp_path / "a.txt").write_text("\n".join(str(i) for i in range(1000, 1070)))
    (tmp_path / "b.txt").write_text("\n".join(str(i) for i in range(5, 55)))
    code, _, err = cli("embed", tmp_path / "a.npy", tmp_path / "b.npy", "--ids", tmp_path / "a.txt",
                       "--ids", tmp_path / "b.txt", "--out", tmp_path / "pool", "-q")
    assert code == 0, err
    ids = load(tmp_path / "pool")[1]
    assert ids[:70].tolist() == list(range(1000, 1070)) and ids[70:].tolist() == list(range(5, 55))


def test_normalize_l2_and_append_keeps_settings(tmp_path, cli):
    np.save(tmp_path / "x.npy", X[:60] * 50)
    np.save(tmp_path / "y.npy", X[60:])
    assert cli("embed", tmp_path / "x.npy", "--out", tmp_path / "pool", "--normalize", "l2", "-q")[0] == 0
    code, out, err = cli("embed", tmp_path / "y.npy", "--out", tmp_path / "pool", "--append", "--normalize", "l2",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["count"] == 120 and json.loads(out)["shards_added"] == 1
    x, ids = load(tmp_path / "pool")
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=2e-3)
    ref = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(x, ref, atol=2e-3)
    np.testing.assert_array_equal(ids, np.arange(120))
    assert open_pool(tmp_path / "pool").verify() == []
    # appending without --normalize to an l2 pool is refused
    code, _, err = cli("embed", tmp_path / "y.npy", "--out", tmp_path / "pool", "--append")
    assert code == 2 and "normalize" in err


def test_overwrite_replaces_and_refuses_without_it(tmp_path, cli):
    np.save(tmp_path / "x.npy", X)
    assert cli("embed", tmp_path / "x.npy", "--out", tmp_path / "pool", "-q")[0] == 0
    code, _, err = cli("embed", tmp_path / "x.npy", "--out", tmp_path / "pool")
    assert code == 2 and "already exists" in err and "--overwrite" in err
    np.save(tmp_path / "small.npy", X[:5])
    assert cli("embed", tmp_path / "small.npy", "--out", tmp_path / "pool", "--overwrite", "-q")[0] == 0
    assert open_pool(tmp_path / "pool").count == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool", "small.npy", "x.npy"]  # no lock file left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    code, _, err = cli("embed", tmp_path / "small.npy", "--out", tmp_path / "mine", "--overwrite")
    assert code == 2 and "--overwrite replaces only an alq pool" in err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_a_second_writer_is_refused_while_one_holds_the_pool(tmp_path, cli):
    import fcntl
    import os

    np.save(tmp_path / "x.npy", X)
    assert cli("embed", tmp_path / "x.npy", "--out", tmp_path / "pool", "-q")[0] == 0
    fd = os.open(tmp_path / ".pool.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a running `alq embed --append` would
    try:
        code, _, err = cli("embed", tmp_path / "x.npy", "--out", tmp_path / "pool", "--append")
        assert code == 2 and "is writing it right now" in err and "pool" in err
    finally:
        os.close(fd)
    np.save(tmp_path / "y.npy", X[:2])
    assert cli("embed", tmp_path / "y.npy", "--out", tmp_path / "pool", "--append", "-q")[0] == 0


def test_pool_as_input_converts_dtype(tmp_path, cli):
    parquet(tmp_path / "v.parquet", X, [f"k{i}" for i in range(120)])
    assert cli("embed", tmp_path / "v.parquet", "--out", tmp_path / "p32", "--dtype", "float32", "-q")[0] == 0
    assert cli("embed", tmp_path / "p32", "--out", tmp_path / "p16", "--dtype", "float16", "-q")[0] == 0
    x16, ids = load(tmp_path / "p16")
    np.testing.assert_array_equal(x16, X.astype(np.float16).astype(np.float32))
    assert ids.tolist() == [f"k{i}" for i in range(120)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated in torch >= 2.9, still supported
def test_encoder_applied_in_batches(tmp_path, cli):
    torch = pytest.importorskip("torch")

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.w = torch.nn.Parameter(torch.randn(12, 5, generator=g))

        def forward(self, x):
            return torch.tanh(x.flatten(1) @ self.w)

    enc = Enc()
    torch.jit.save(torch.jit.script(enc), str(tmp_path / "enc.pt"))
    raw = RNG.normal(size=(37, 3, 4)).astype(np.float64)
    np.save(tmp_path / "raw.npy", raw)
    code, out, err = cli("embed", tmp_path / "raw.npy", "--encoder", tmp_path / "enc.pt", "--batch-size", "8",
                         "--out", tmp_path / "pool", "--dtype", "float32", "--json")
    assert code == 0, err
    with torch.no_grad():
        ref = enc(torch.from_numpy(raw).float()).numpy()
    np.testing.assert_allclose(load(tmp_path / "pool")[0], ref, rtol=1e-5, atol=1e-6)
    assert json.loads(out)["dim"] == 5
    # a different encoder on --append is refused (mixed embedding spaces)
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))),
                   str(tmp_path / "other.pt"))
    code, _, err = cli("embed", tmp_path / "raw.npy", "--encoder", tmp_path / "other.pt", "--out", tmp_path / "pool",
                       "--append")
    assert code == 2 and "not the encoder this pool was built with" in err


def test_exported_encoder_with_fixed_batch_pads_the_last_batch(tmp_path, cli):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    torch.export.save(torch.export.export(model, (torch.randn(8, 3, 4),)), str(tmp_path / "enc.pt2"))
    raw = RNG.normal(size=(21, 3, 4)).astype(np.float32)  # 8 + 8 + 5: the last batch is padded
    np.save(tmp_path / "raw.npy", raw)
    code, _, err = cli("embed", tmp_path / "raw.npy", "--encoder", tmp_path / "enc.pt2", "--batch-size", "8",
                       "--out", tmp_path / "pool", "--dtype", "float32", "-q")
    assert code == 0, err
    with torch.no_grad():
        ref = model(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(load(tmp_path / "pool")[0], ref, rtol=1e-5, atol=1e-6)
    code, _, err = cli("embed", tmp_path / "raw.npy", "--encoder", tmp_path / "enc.pt2", "--batch-size", "5",
                       "--out", tmp_path / "pool2")
    assert code == 2 and "pass that as --batch-size" in err and not (tmp_path / "pool2").exists()


def test_bad_encoder_file(tmp_path, cli):
    (tmp_path / "enc.pt").write_bytes(b"not torchscript")
    np.save(tmp_path / "raw.npy", X)
    code, _, err = cli("embed", tmp_path / "raw.npy", "--encoder", tmp_path / "enc.pt", "--out", tmp_path / "pool")
    assert code == 2 and "enc.pt: not a TorchScript module" in err
    assert not (tmp_path / "pool").exists()


# -- bad input: one line naming file/row, exit 2, nothing changed ---------------
def _nan(p):
    x = X.copy()
    x[17, 3] = np.nan
    np.save(p / "in.npy", x)
    return [p / "in.npy"], r"in.npy: row 17 has NaN or Inf"


def _inf_parquet(p):
    x = X.copy()
    x[99, 0] = np.inf
    parquet(p / "in.parquet", x, np.arange(1000, 1120))
    return [p / "in.parquet"], r"in.parquet: row 99 has NaN or Inf"


def _ragged(p):
    rows = [list(r) for r in X]
    rows[33] = rows[33][:5]
    pq.write_table(pa.table({"id": np.arange(1000, 1120), "embedding": pa.array(rows, type=pa.list_(pa.float32()))}),
                   p / "in.parquet")
    return [p / "in.parquet"], r"in.parquet: row 33: vector has 5 values, row 0 has 6 \(ragged"


def _dims_across_files(p):
    np.save(p / "a.npy", X)
    np.save(p / "b.npy", np.ones((4, 7), np.float32))
    return [p / "a.npy", p / "b.npy"], r"b.npy: dim 7 does not match .*a.npy \(dim 6\)"


def _dim_vs_pool(p):
    np.save(p / "in.npy", np.ones((4, 9), np.float32))
    return [p / "in.npy"], r"in.npy: dim 9 does not match the pool .* \(dim 6\)"


def _dup_within(p):
    ids = np.arange(1000, 1120)
    ids[80] = ids[12]
    parquet(p / "in.parquet", X, ids)
    return [p / "in.parquet"], r"in.parquet: duplicate id 1012 at rows 12 and 80"


def _dup_across_files(p):
    parquet(p / "a.parquet", X[:60], np.arange(1000, 1060))
    parquet(p / "b.parquet", X[60:], np.arange(1050, 1110))
    return [p / "a.parquet", p / "b.parquet"], r"b.parquet: row 0: duplicate id 1050 \(first seen at .*a.parquet row 50\)"


def _dup_vs_pool(p):
    parquet(p / "in.parquet", X[:10], [2000, 2001, 2002, 7, 2004, 2005, 2006, 2007, 2008, 2009])
    return [p / "in.parquet"], r"in.parquet: row 3: id 7 is already in the pool"


def _empty_npy(p):
    np.save(p / "in.npy", np.empty((0, 6), np.float32))
    return [p / "in.npy"], r"in.npy: empty input \(0 rows\)"


def _empty_parquet(p):
    parquet(p / "in.parquet", np.empty((0, 6), np.float32), np.empty(0, np.int64))
    return [p / "in.parquet"], r"in.parquet: empty input \(0 rows\)"


def _truncated_npy(p):
    np.save(p / "in.npy", X)
    data = (p / "in.npy").read_bytes()
    (p / "in.npy").write_bytes(data[:-100])
    return [p / "in.npy"], r"in.npy: truncated .npy file"


def _garbage_npy(p):
    (p / "in.npy").write_bytes(b"hello, not numpy")
    return [p / "in.npy"], r"in.npy: not a readable .npy file"


def _truncated_parquet(p):
    parquet(p / "in.parquet", X, np.arange(1000, 1120))
    data = (p / "in.parquet").read_bytes()
    (p / "in.parquet").write_bytes(data[: len(data) // 2])
    return [p / "in.parquet"], r"in.parquet: not a readable Parquet file"


def _truncated_npz(p):
    np.savez(p / "in.npz", embedding=X)
    data = (p / "in.npz").read_bytes()
    (p / "in.npz").write_bytes(data[: len(data) // 2])
    return [p / "in.npz"], r"in.npz: not a readable .npz file"


def _missing_vector_column(p):
    pq.write_table(pa.table({"id": np.arange(3), "name": ["a", "b", "c"]}), p / "in.parquet")
    return [p / "in.parquet"], r"in.parquet: no vector column found \(has id, name\)"


def _named_missing_id_column(p):
    parquet(p / "in.parquet", X)
    return [p / "in.parquet", "--id-column", "key"], r"in.parquet: no id column 'key' \(has embedding\)"


def _null_vector(p):
    rows = [list(r) for r in X]
    rows[5] = None
    pq.write_table(pa.table({"id": np.arange(1000, 1120), "embedding": pa.array(rows, type=pa.list_(pa.float32()))}),
                   p / "in.parquet")
    return [p / "in.parquet"], r"in.parquet: row 5: vector is null"


def _ids_count_mismatch(p):
    np.save(p / "in.npy", X[:10])
    (p / "ids.txt").write_text("\n".join(str(i) for i in range(1000, 1009)))
    return [p / "in.npy", "--ids", p / "ids.txt"], r"ids.txt: 9 ids for 10 input rows"


def _string_ids_into_int_pool(p):
    parquet(p / "in.parquet", X[:3], ["a", "b", "c"])
    return [p / "in.parquet"], r"in.parquet: ids are strings but the pool uses integer ids"


def _id_with_spaces(p):  # issue 20 item 33: a labels CSV is read stripped, so ' b' could never be labeled
    parquet(p / "in.parquet", X[:3], ["a", " b", "c"])
    return [p / "in.parquet"], r"in.parquet: row 1: id ' b' has leading or trailing whitespace"


def _empty_string_id(p):
    parquet(p / "in.parquet", X[:3], ["a", "b", ""])
    return [p / "in.parquet"], r"in.parquet: row 2: id '' is empty"


def _id_with_newline(p):
    np.savez(p / "in.npz", embedding=X[:3], id=np.array(["a", "b\nc", "d"]))
    return [p / "in.npz"], r"in.npz: row 1: id 'b\\nc' holds a line break"


def _vectors_1d(p):
    np.save(p / "in.npy", np.ones(10, np.float32))
    return [p / "in.npy"], r"in.npy: vectors must be 2-D"


def _same_file_twice(p):
    np.save(p / "in.npy", X)
    return [p / "in.npy", p / "in.npy"], r"in.npy: input given twice"


def _missing_input(p):
    return [p / "nope.npy"], r"nope.npy: input not found"


def _float16_overflow(p):
    x = X.copy()
    x[4, 1] = 1e6
    np.save(p / "in.npy", x)
    return [p / "in.npy", "--dtype", "float16"], r"in.npy: row 4 overflows float16"


BAD = [_nan, _inf_parquet, _ragged, _dims_across_files, _dim_vs_pool, _dup_within, _dup_across_files, _dup_vs_pool,
       _empty_npy, _empty_parquet, _truncated_npy, _garbage_npy, _truncated_parquet, _truncated_npz,
       _missing_vector_column, _named_missing_id_column, _null_vector, _ids_count_mismatch,
       _string_ids_into_int_pool, _vectors_1d, _same_file_twice, _missing_input, _float16_overflow,
       _id_with_spaces, _empty_string_id, _id_with_newline]


@pytest.mark.parametrize("mode", ["fresh", "append"])
@pytest.mark.parametrize("case", BAD, ids=[f.__name__.strip("_") for f in BAD])
def test_bad_input_exits_2_and_changes_nothing(tmp_path, cli, case, mode):
    if mode == "fresh" and case in (_dim_vs_pool, _dup_vs_pool, _string_ids_into_int_pool):
        pytest.skip("needs an existing pool")
    work = tmp_path / "work"
    work.mkdir()
    pool = work / "pool"
    np.save(tmp_path / "base.npy", X[:50])  # ids 0..49
    assert cli("embed", tmp_path / "base.npy", "--out", pool, "--shard-rows", "20", "-q")[0] == 0
    args, pattern = case(tmp_path)
    before = snapshot(pool)
    flags = ["--append"] if mode == "append" else ["--overwrite"]
    code, out, err = cli("embed", *args, "--out", pool, *flags)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert snapshot(pool) == before  # the pool and its directory are exactly as they were
    assert open_pool(pool).verify() == []


@pytest.mark.parametrize("damage", ["missing ids", "missing vectors", "truncated vectors"])
def test_append_to_a_damaged_pool_is_refused(tmp_path, cli, damage):
    np.save(tmp_path / "x.npy", X)
    cli("embed", tmp_path / "x.npy", "--out", tmp_path / "pool", "--shard-rows", "50", "-q")
    shard = tmp_path / "pool" / ("shard-000001.parquet" if damage == "missing ids" else "shard-000001.npy")
    if damage.startswith("missing"):
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:-10])
    np.save(tmp_path / "y.npy", X[:3])
    before = snapshot(tmp_path / "pool")
    code, _, err = cli("embed", tmp_path / "y.npy", "--out", tmp_path / "pool", "--append")
    assert code == 2 and shard.name in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path / "pool") == before


def test_npz_member_truncated_inside_zip(tmp_path, cli):
    """A zip whose directory is intact but whose array member is shorter than its header says."""
    good = tmp_path / "g.npy"
    np.save(good, X)
    data = good.read_bytes()[:-24]
    with zipfile.ZipFile(tmp_path / "in.npz", "w") as zf:
        zf.writestr("embedding.npy", data)
    code, _, err = cli("embed", tmp_path / "in.npz", "--out", tmp_path / "pool")
    assert code == 2 and "in.npz[embedding]: truncated at row 119" in err
    assert not (tmp_path / "pool").exists()
