"""Staging whole small files, and directory outputs published on object storage by a pointer.

Commands that only read or write small files (labels, heads, selections, reports)
stage them: :func:`staged_input` downloads to a temporary local file,
:func:`staged_output` uploads the finished local file with one PUT. Directory
outputs on a store are written under a fresh generation prefix and published by
one PUT of a pointer object (:data:`POINTER`), so a reader sees the old directory
or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from alq.errors import BadInputError, StoreError
from alq.fs.conditional import create_exclusive, read_versioned, replace_if
from alq.fs.ops import delete_tree, download, file_type, listdir, read_bytes, upload
from alq.fs.uris import is_remote, join, local, name_of, normalize, short_error

POINTER = "_alq_current.json"  # the pointer object of a directory output on object storage
_WRITER_LOCK = "_alq_writer.lock"  # alq.fs.lock.REMOTE_LOCK: a writer's lock object, never content


@contextlib.contextmanager
def staged_input(path, *, what: str = "input") -> Iterator[Path]:
    """A local path holding ``path``'s content for the duration (itself when local).

    A remote file is downloaded to a temporary file; a remote directory output
    of alq (a pointer and its generation) or a plain prefix is downloaded whole.
    """
    if path is None or not is_remote(path):
        yield None if path is None else local(path)
        return
    uri = normalize(path)
    tmp = Path(tempfile.mkdtemp(prefix="alq-in-"))
    try:
        kind = file_type(uri)
        dest = tmp / name_of(uri)
        if kind == "file":
            download(uri, dest)
        elif kind == "dir":
            src = current_generation(uri)
            dest.mkdir()
            for rel in listdir(src, recursive=True):
                if rel == _WRITER_LOCK:  # a writer's lock object (ours while we write it), not content
                    continue
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                download(join(src, rel), dest / rel)
        else:
            raise BadInputError(f"{uri}: {what} not found")
        yield dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def current_generation(uri: str) -> str:
    """The prefix a remote directory's content lives under: its pointer's generation, or itself."""
    try:
        data = read_bytes(join(uri, POINTER))
    except FileNotFoundError:
        return normalize(uri)
    return join(uri, _parse_pointer(join(uri, POINTER), data))


def _parse_pointer(where, data: bytes) -> str:
    """The generation a pointer object names; a malformed pointer is bad input (exit 2), never followed."""
    try:
        pointer = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{where}: unreadable pointer ({short_error(exc)})",
                         hint="restore it, or write the output again") from None
    gen = pointer.get("generation") if isinstance(pointer, dict) else None
    if not isinstance(gen, str) or not _plain_generation(gen):
        raise StoreError(f"{where}: not an alq pointer (a JSON object whose \"generation\" is a gen-... name under "
                         f"the same prefix; got {repr(pointer)[:80]})",
                         hint="restore it, or write the output again")
    return gen


def _plain_generation(name: str) -> bool:
    """A generation name alq writes (``gen-...``): one path segment under the output's own prefix."""
    import re

    return re.fullmatch(r"gen-[A-Za-z0-9_.-]+", name) is not None and ".." not in name


@contextlib.contextmanager
def staged_output(path, *, kind: str = "file", resume: bool = False) -> Iterator[Path]:
    """A local path for the command to write; on success it is published at ``path``.

    ``kind="file"``: one PUT of the finished file. ``kind="dir"``: every file
    uploaded under ``path/<generation>/``, then one PUT of the pointer switches
    readers to it, then older generations are removed (the one before is kept,
    so a reader that started before the switch can finish). ``resume=True``
    downloads the current content first (simulation runs continue).
    Nothing is published if the block raises.
    """
    if path is None or not is_remote(path):
        yield None if path is None else local(path)
        return
    uri = normalize(path)
    with contextlib.ExitStack() as stack:
        if kind == "dir":
            from alq.fs import lock

            if not lock.held_here(uri):  # one writer of a directory output at a time (`score`/`cluster` hold it)
                stack.enter_context(lock.exclusive_lock(uri, what="alq writer of this output"))
        yield from _staged_output(uri, kind, resume)


def _staged_output(uri: str, kind: str, resume: bool) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="alq-out-"))
    try:
        dest = tmp / name_of(uri)
        have_kind = file_type(uri) if resume else "missing"
        if have_kind == "dir" and set(listdir(uri, recursive=True)) <= {_WRITER_LOCK}:
            have_kind = "missing"  # only the lock object we hold: nothing written yet
        if have_kind == "dir" and kind == "dir":
            with staged_input(uri) as have:
                shutil.copytree(have, dest)
        elif have_kind == "file" and kind == "file":
            download(uri, dest)
        yield dest
        if kind == "file":
            if dest.is_file():
                upload(dest, uri)
        elif dest.is_dir():
            publish_dir(dest, uri)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def new_generation() -> str:
    """A fresh, sortable generation name for a directory output on object storage."""
    return f"gen-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def publish_dir(local_dir: Path, uri: str, *, skip: set[str] | frozenset = frozenset()) -> str:
    """Upload ``local_dir`` as a new generation of ``uri`` and switch the pointer to it; returns the generation.

    ``skip``: relative names not to publish (a run's local lock file)."""
    gen = new_generation()
    for f in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        rel = str(f.relative_to(local_dir))
        if rel not in skip:
            upload(f, join(uri, gen, rel))
    switch_generation(uri, gen)
    return gen


def switch_generation(uri: str, gen: str) -> None:
    """Point readers of ``uri`` at the complete generation ``gen`` (one PUT); drop all but it and the one before.

    The PUT is conditioned on the pointer the writer read (``If-Match``, or ``If-None-Match: *`` for a first
    one): a writer that lost a race publishes nothing and deletes only its own generation, so the pointer
    always names a complete generation that is still there."""
    where = join(uri, POINTER)
    got = read_versioned(where)
    old = _parse_pointer(where, got[0]) if got is not None else None
    body = json.dumps({"generation": gen, "previous": old}).encode()
    ok = create_exclusive(where, body) if got is None else replace_if(where, body, got[1])
    if ok is None:
        delete_tree(join(uri, gen))
        raise StoreError(f"{uri}: another writer published it while this one ran; nothing of this run was published",
                         hint="rerun: the new run starts from the output as it is now")
    keep = {gen, old}
    for name in {rel.split("/", 1)[0] for rel in listdir(uri, recursive=True) if "/" in rel}:
        if name.startswith("gen-") and name not in keep:
            delete_tree(join(uri, name))
