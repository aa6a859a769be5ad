"""alq.fs against a real S3 API (moto server on loopback): naming, plain, conditional and staged operations."""

from __future__ import annotations

import json

import pytest

from alq import fs
from alq.errors import BadInputError


def test_names():
    assert fs.normalize("s3://bkt//a/b/") == "s3://bkt/a/b"
    assert fs.normalize("gcs://bkt/a") == "gs://bkt/a"
    assert str(fs.normalize("file:///tmp/x")) == "/tmp/x" and not fs.is_remote("file:///tmp/x")
    assert fs.join("s3://bkt/pool", "manifest.json") == "s3://bkt/pool/manifest.json"
    assert fs.parent_of("s3://bkt/a/b") == "s3://bkt/a" and fs.name_of("s3://bkt/a/b") == "b"
    assert fs.bucket_key("s3://bkt/a/b") == ("s3", "bkt", "a/b")
    with pytest.raises(BadInputError, match="unknown storage scheme"):
        fs.is_remote("ftp://host/x")
    with pytest.raises(BadInputError, match="needs a bucket"):
        fs.normalize("s3:///x")


def test_plain_operations(s3_bucket):
    u = fs.join(s3_bucket, "a", "x.bin")
    assert fs.file_type(u) == "missing" and not fs.exists(u)
    fs.write_bytes(u, b"hello")
    assert fs.read_bytes(u) == b"hello" and fs.size_of(u) == 5
    assert fs.file_type(u) == "file" and fs.file_type(fs.join(s3_bucket, "a")) == "dir"
    assert fs.listdir(fs.join(s3_bucket, "a")) == {"x.bin": 5}
    f = fs.open_input(u)
    assert f.read_at(3, 1) == b"ell"
    fs.delete(u)
    fs.delete(u)  # absent is fine
    assert fs.listdir(fs.join(s3_bucket, "a")) == {}
    with pytest.raises(FileNotFoundError):
        fs.read_bytes(u)


def test_conditional_writes_let_one_writer_win(s3_bucket):
    lock = fs.join(s3_bucket, "lock")
    v = fs.create_exclusive(lock, b"1")
    assert v and fs.create_exclusive(lock, b"2") is None
    assert fs.read_bytes(lock) == b"1"
    v2 = fs.replace_if(lock, b"3", v)
    assert v2 and fs.replace_if(lock, b"4", v) is None  # a stale version loses
    assert fs.read_versioned(lock) == (b"3", v2)
    fs.delete_if(lock, v)  # not ours any more: stays
    assert fs.exists(lock)
    fs.delete_if(lock, v2)
    assert not fs.exists(lock)


def test_staged_dir_output_switches_a_pointer(s3_bucket):
    out = fs.join(s3_bucket, "d")
    for k in range(3):
        with fs.staged_output(out, kind="dir") as d:
            d.mkdir()
            (d / "f.txt").write_text(str(k))
            (d / "sub").mkdir()
            (d / "sub" / "g.txt").write_text("g")
        with fs.staged_input(out) as d:
            assert (d / "f.txt").read_text() == str(k) and (d / "sub" / "g.txt").read_text() == "g"
    pointer = json.loads(fs.read_bytes(fs.join(out, fs.POINTER)))
    gens = {n.split("/", 1)[0] for n in fs.listdir(out, recursive=True) if "/" in n}
    assert gens == {pointer["generation"], pointer["previous"]}  # the one before is kept for running readers


def test_staged_output_publishes_nothing_on_error(s3_bucket):
    out = fs.join(s3_bucket, "x.parquet")
    with pytest.raises(RuntimeError), fs.staged_output(out) as p:
        p.write_text("half")
        raise RuntimeError("boom")
    assert not fs.exists(out)
    with pytest.raises(BadInputError, match=r"s3://.*/x.parquet: labels file not found"), \
            fs.staged_input(out, what="labels file"):
        pass


def test_delete_leaves_no_directory_marker(s3_bucket):
    """pyarrow's delete_file keeps the parent alive with a marker object; alq deletes plainly."""
    f = fs.join(s3_bucket, "labels.parquet")
    fs.write_bytes(fs.join(f, "_alq_writer.lock"), b"x")
    fs.delete(fs.join(f, "_alq_writer.lock"))
    assert fs.file_type(f) == "missing" and fs.listdir(s3_bucket, recursive=True) == {}
