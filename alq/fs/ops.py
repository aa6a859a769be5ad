"""Plain operations on either kind of location: stat, list, read, write, upload, download, delete.

A local path is handled with the standard library (writes are atomic: temp
file + rename); an object-storage URI through ``pyarrow.fs``. A single PUT is
atomic on both stores (an object appears whole or not at all).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from alq.errors import BadInputError
from alq.fs.uris import bucket_key, filesystem, is_remote, local, s3_client, scheme_of, wrap_error


def exists(path) -> bool:
    if not is_remote(path):
        return os.path.lexists(local(path))
    return file_type(path) != "missing"


def file_type(path) -> str:
    """'file', 'dir' or 'missing' (a remote 'dir' is a prefix with objects under it)."""
    if not is_remote(path):
        p = local(path)
        return "dir" if p.is_dir() else "file" if p.exists() else "missing"
    import pyarrow.fs as pafs

    fs, key = filesystem(path)
    try:
        info = fs.get_file_info(key)
    except OSError as exc:
        raise wrap_error(path, exc, "stat") from None
    if info.type == pafs.FileType.File:
        return "file"
    if info.type == pafs.FileType.Directory:
        return "dir"
    return "missing"


def size_of(path) -> int:
    if not is_remote(path):
        return local(path).stat().st_size
    fs, key = filesystem(path)
    try:
        return int(fs.get_file_info(key).size)
    except (OSError, TypeError) as exc:
        raise wrap_error(path, exc, "stat") from None


def listdir(path, *, recursive: bool = False) -> dict[str, int]:
    """{relative name: size} of the files under a directory (``{}`` when missing)."""
    if not is_remote(path):
        base = local(path)
        if not base.is_dir():
            return {}
        it = base.rglob("*") if recursive else base.iterdir()
        return {str(p.relative_to(base)): p.stat().st_size for p in it if p.is_file()}
    import pyarrow.fs as pafs

    fs, key = filesystem(path)
    try:
        infos = fs.get_file_info(pafs.FileSelector(key, recursive=recursive, allow_not_found=True))
    except OSError as exc:
        raise wrap_error(path, exc, "listing") from None
    prefix = key.rstrip("/") + "/"
    return {i.path[len(prefix):]: int(i.size or 0) for i in infos if i.type == pafs.FileType.File}


def read_bytes(path) -> bytes:
    if not is_remote(path):
        return local(path).read_bytes()
    fs, key = filesystem(path)
    try:
        with fs.open_input_stream(key) as fh:
            # sized reads: pyarrow's S3 stream read() without a size measured 11 MiB/s here, 16 MiB reads 210+
            parts = []
            while chunk := fh.read(16 << 20):
                parts.append(chunk)
            return b"".join(parts)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if file_type(path) == "missing":
            raise FileNotFoundError(str(path)) from None
        raise wrap_error(path, exc, "read") from None


def write_bytes(path, data: bytes) -> None:
    """One PUT (remote) or an atomic replace (local)."""
    if not is_remote(path):
        from alq.io import atomic_path

        with atomic_path(local(path)) as tmp:
            tmp.write_bytes(data)
        return
    fs, key = filesystem(path)
    try:
        with fs.open_output_stream(key) as fh:
            fh.write(data)
    except OSError as exc:
        raise wrap_error(path, exc, "write") from None


def read_table(path, columns: list[str] | None = None):
    """A whole Parquet file (local or remote) as a pyarrow Table."""
    import pyarrow.parquet as pq

    if not is_remote(path):
        return pq.read_table(local(path), columns=columns)
    fs, key = filesystem(path)
    return pq.read_table(key, filesystem=fs, columns=columns)


def read_schema(path):
    import pyarrow.parquet as pq

    if not is_remote(path):
        return pq.read_schema(local(path))
    fs, key = filesystem(path)
    with fs.open_input_file(key) as fh:
        return pq.read_schema(fh)


def open_input(path):
    """A random-access file (``read_at(nbytes, offset)``, ``size()``), for range reads of a remote object."""
    fs, key = filesystem(path)
    try:
        return fs.open_input_file(key)
    except OSError as exc:
        if file_type(path) == "missing":
            raise FileNotFoundError(str(path)) from None
        raise wrap_error(path, exc, "open") from None


def upload(local_file: str | Path, uri: str) -> None:
    """Copy a finished local file to ``uri`` (the object appears whole when the upload completes)."""
    import pyarrow.fs as pafs

    fs, key = filesystem(uri)
    try:
        pafs.copy_files(str(local_file), key, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs,
                        chunk_size=8 << 20, use_threads=True)
    except OSError as exc:
        raise wrap_error(uri, exc, "upload") from None


def download(uri: str, local_file: str | Path) -> None:
    import pyarrow.fs as pafs

    fs, key = filesystem(uri)
    try:
        pafs.copy_files(key, str(local_file), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem(),
                        chunk_size=8 << 20, use_threads=True)
    except OSError as exc:
        if file_type(uri) == "missing":
            raise BadInputError(f"{uri}: not found") from None
        raise wrap_error(uri, exc, "download") from None


def delete(path) -> None:
    """Remove one file/object; absent is fine."""
    if not is_remote(path):
        local(path).unlink(missing_ok=True)
        return
    if scheme_of(path) == "s3":
        try:
            import boto3  # noqa: F401 - a plain DELETE: pyarrow's delete_file leaves a parent "directory" marker
        except ImportError:
            pass
        else:
            _, bucket, key = bucket_key(path)
            client = s3_client()
            try:
                client.delete_object(Bucket=bucket, Key=key)
            except client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise wrap_error(path, exc, "delete") from None
            return
    fs, key = filesystem(path)
    with contextlib.suppress(FileNotFoundError):
        try:
            fs.delete_file(key)
        except OSError as exc:
            if file_type(path) != "missing":
                raise wrap_error(path, exc, "delete") from None


def delete_tree(path) -> None:
    """Remove a directory / every object under a prefix; absent is fine."""
    if not is_remote(path):
        shutil.rmtree(local(path), ignore_errors=True)
        return
    fs, key = filesystem(path)
    try:
        fs.delete_dir_contents(key, missing_dir_ok=True)
    except OSError as exc:
        raise wrap_error(path, exc, "delete") from None
