"""Where bytes live: naming local paths and object-storage URIs, and the clients that reach a store.

Every path alq takes may be a local path, ``file://PATH``, ``s3://BUCKET/KEY``
or ``gs://BUCKET/KEY``. Bulk reads and writes go through ``pyarrow.fs``
(S3 and GCS are built into pyarrow's wheels). On the loopback S3 server its
parallel 16 MiB range reads ran at 500 MiB/s against 359 MiB/s for fsspec's
s3fs reading whole objects, and level with it on small ranges
(``tests/bench/compares3_clients.py``). Conditional writes need the stores'
own SDKs (boto3 for S3, google-cloud-storage for GCS): :func:`s3_client`
and :func:`gcs_blob`.
Credentials and endpoints come the standard way: ``AWS_*`` variables,
``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``~/.aws``; ``GOOGLE_APPLICATION_CREDENTIALS``
for GCS. Nothing alq-specific needs configuring.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from alq.errors import BadInputError, MissingFeatureError, StoreError

REMOTE_SCHEMES = ("s3", "gs", "gcs")
S3_HINT = "install the extra: pip install 'alq[s3]'"
GCS_HINT = "install the extra: pip install 'alq[gcs]'"


# -- naming ---------------------------------------------------------------------------
def scheme_of(path) -> str | None:
    s = os.fspath(path) if not isinstance(path, str) else path
    if "://" not in s:
        return None
    return s.split("://", 1)[0].lower()


def is_remote(path) -> bool:
    """True for ``s3://`` / ``gs://`` URIs (``file://`` and plain paths are local)."""
    if path is None or isinstance(path, Path):
        return False
    sc = scheme_of(path)
    if sc is None or sc == "file":
        return False
    if sc not in REMOTE_SCHEMES:
        raise BadInputError(f"{path}: unknown storage scheme {sc}://",
                            hint="use a local path, file://, s3:// or gs://")
    return True


def local(path) -> Path:
    """The local path of a plain path or ``file://`` URI."""
    s = os.fspath(path)
    if s.startswith("file://"):
        s = s[len("file://"):]
    return Path(os.path.expanduser(s))


def normalize(path) -> str | Path:
    """A remote URI as a clean string (no trailing slash, ``gcs://`` -> ``gs://``), a local one as a Path."""
    if not is_remote(path):
        return local(path)
    sc, rest = path.split("://", 1)
    sc = "gs" if sc.lower() in ("gs", "gcs") else sc.lower()
    if not rest.strip("/") or rest.startswith("/"):
        raise BadInputError(f"{path}: a {sc}:// URI needs a bucket name")
    rest = rest.strip("/")
    while "//" in rest:
        rest = rest.replace("//", "/")
    return f"{sc}://{rest}"


def join(base, *parts: str):
    """``base / part / ...`` for either kind of location."""
    if is_remote(base):
        out = normalize(base)
        for p in parts:
            out = f"{out}/{p.strip('/')}"
        return out
    return local(base).joinpath(*parts)


def name_of(path) -> str:
    return str(normalize(path)).rstrip("/").rsplit("/", 1)[-1] if is_remote(path) else local(path).name


def parent_of(path):
    if is_remote(path):
        u = normalize(path)
        sc, rest = u.split("://", 1)
        if "/" not in rest:
            return u
        return f"{sc}://{rest.rsplit('/', 1)[0]}"
    return local(path).parent


def bucket_key(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of a remote URI."""
    u = normalize(uri)
    sc, rest = u.split("://", 1)
    bucket, _, key = rest.partition("/")
    return sc, bucket, key


# -- filesystems ----------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, bucket: str):
    import pyarrow.fs as pafs

    try:
        if scheme == "s3":
            # from_uri asks the bucket for its region; AWS_ENDPOINT_URL / AWS_* / profiles are read by the SDK
            fs, _ = pafs.FileSystem.from_uri(f"s3://{bucket}")
            return fs
        kwargs = {}
        if os.environ.get("STORAGE_EMULATOR_HOST"):  # the GCS emulators' convention
            host = os.environ["STORAGE_EMULATOR_HOST"]
            kwargs = {"endpoint_override": host.split("://", 1)[-1], "scheme": host.split("://", 1)[0]
                      if "://" in host else "http", "anonymous": True}
        return pafs.GcsFileSystem(**kwargs)
    except OSError as exc:
        raise StoreError(f"{scheme}://{bucket}: cannot reach the bucket ({short_error(exc)})",
                         hint="check credentials (AWS_* / GOOGLE_APPLICATION_CREDENTIALS) and AWS_ENDPOINT_URL") from None


def filesystem(uri: str):
    """(pyarrow FileSystem, path within it) of a remote URI."""
    sc, bucket, key = bucket_key(uri)
    return _filesystem(sc, bucket), f"{bucket}/{key}" if key else bucket


def reset_filesystems() -> None:
    """Forget cached clients (tests that restart a server, forked workers)."""
    _filesystem.cache_clear()
    s3_client.cache_clear()


def short_error(exc: BaseException) -> str:
    s = str(exc).strip()
    return s.splitlines()[0][:200] if s else type(exc).__name__


def wrap_error(uri, exc: BaseException, what: str) -> StoreError:
    return StoreError(f"{uri}: {what} failed ({short_error(exc)})",
                      hint="check the bucket, credentials and AWS_ENDPOINT_URL, then rerun")


# -- SDK clients for conditional writes ------------------------------------------------
@functools.lru_cache(maxsize=4)
def s3_client():
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise MissingFeatureError("writing a pool to s3:// needs boto3 (for conditional PUTs)", hint=S3_HINT) from None
    # boto3 reads AWS_ENDPOINT_URL, AWS_PROFILE, AWS_* and ~/.aws like pyarrow's SDK does
    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def gcs_blob(uri: str):
    try:
        from google.cloud import storage
    except ImportError:
        raise MissingFeatureError("writing a pool to gs:// needs google-cloud-storage (for generation preconditions)",
                                  hint=GCS_HINT) from None
    _, bucket, key = bucket_key(uri)
    return storage.Client().bucket(bucket).blob(key)
