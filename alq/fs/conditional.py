"""Conditional writes: the few operations that must be atomic between writers on object storage.

Object stores have no rename and no ``flock``, so alq uses the stores' own
conditional writes (S3 ``If-None-Match: *`` / ``If-Match: ETAG`` through boto3,
GCS generation preconditions through google-cloud-storage):
:func:`create_exclusive` and :func:`replace_if`, with :func:`read_versioned`
to learn the version a later write is conditioned on.
"""

from __future__ import annotations

from alq.errors import StoreError
from alq.fs.ops import delete
from alq.fs.uris import bucket_key, gcs_blob, s3_client, wrap_error


def version_of(uri: str) -> str | None:
    """The object's version token (S3 ETag, GCS generation), or None when it does not exist."""
    sc, bucket, key = bucket_key(uri)
    if sc == "s3":
        client = s3_client()
        try:
            return client.head_object(Bucket=bucket, Key=key)["ETag"]
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise wrap_error(uri, exc, "HEAD") from None
    from google.api_core import exceptions as gexc

    blob = gcs_blob(uri)
    try:
        blob.reload()
    except gexc.NotFound:
        return None
    return str(blob.generation)


def read_versioned(uri: str) -> tuple[bytes, str] | None:
    """(content, version token) read together, or None when absent."""
    sc, bucket, key = bucket_key(uri)
    if sc == "s3":
        client = s3_client()
        try:
            r = client.get_object(Bucket=bucket, Key=key)
        except client.exceptions.NoSuchKey:
            return None
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise wrap_error(uri, exc, "GET") from None
        return r["Body"].read(), r["ETag"]
    from google.api_core import exceptions as gexc

    blob = gcs_blob(uri)
    for _ in range(3):
        try:
            blob.reload()  # the generation first, then exactly that generation's bytes
        except gexc.NotFound:
            return None
        gen = blob.generation
        try:
            return blob.download_as_bytes(if_generation_match=gen), str(gen)
        except (gexc.NotFound, gexc.PreconditionFailed):  # replaced between the two calls: read again
            continue
    raise StoreError(f"{uri}: the object kept changing while being read", hint="rerun")


def create_exclusive(uri: str, data: bytes) -> str | None:
    """PUT ``data`` only if nothing is at ``uri``: its version token, or None when something already was."""
    return _conditional_put(uri, data, None)


def replace_if(uri: str, data: bytes, version: str) -> str | None:
    """PUT ``data`` only if the object is still at ``version``: the new token, or None when it changed."""
    return _conditional_put(uri, data, version)


def _conditional_put(uri: str, data: bytes, version: str | None) -> str | None:
    sc, bucket, key = bucket_key(uri)
    if sc == "s3":
        client = s3_client()
        cond = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            return client.put_object(Bucket=bucket, Key=key, Body=data, **cond)["ETag"]
        except client.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return None
            if code in ("NotImplemented", "InvalidArgument") and version is None:
                raise StoreError(f"{uri}: this S3 endpoint refuses conditional writes ({code})",
                                 hint="alq needs If-None-Match/If-Match PUTs (AWS S3 since 2024, MinIO, Ceph)") from None
            raise wrap_error(uri, exc, "conditional PUT") from None
    from google.api_core import exceptions as gexc

    blob = gcs_blob(uri)
    try:
        blob.upload_from_string(data, if_generation_match=0 if version is None else int(version))
    except gexc.PreconditionFailed:
        return None
    gen = blob.generation
    if gen is None:
        blob.reload()
        gen = blob.generation
    return str(gen)


def delete_if(uri: str, version: str) -> None:
    """Delete the object if it is still at ``version`` (best effort where the store cannot condition deletes)."""
    cur = version_of(uri)
    if cur == version:
        delete(uri)
