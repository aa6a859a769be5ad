"""alq.fs against a real S3 API (moto server on loopback): plain, conditional and staged operations."""

import numpy as np
from alq import fs
def test_basic(s3_bucket, tmp_path):
    u = fs.join(s3_bucket, "a", "x.bin")
    fs.write_bytes(u, b"hello")
    assert fs.read_bytes(u) == b"hello"
    assert fs.file_type(u) == "file" and fs.file_type(fs.join(s3_bucket, "a")) == "dir"
    assert fs.listdir(fs.join(s3_bucket, "a")) == {"x.bin": 5}
    v = fs.create_exclusive(fs.join(s3_bucket, "lock"), b"1"); assert v
    assert fs.create_exclusive(fs.join(s3_bucket, "lock"), b"2") is None
    assert fs.replace_if(fs.join(s3_bucket, "lock"), b"3", v)
    assert fs.replace_if(fs.join(s3_bucket, "lock"), b"4", v) is None
    with fs.staged_output(fs.join(s3_bucket, "d"), kind="dir") as d:
        d.mkdir(); (d/"f.txt").write_text("x")
    with fs.staged_input(fs.join(s3_bucket, "d")) as d:
        assert (d/"f.txt").read_text() == "x"
