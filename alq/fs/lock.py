"""One writer at a time: an advisory lock beside the file or pool being updated.

Two cron jobs appending to one pool (or merging into one labels file) at
the same moment would each build on the old manifest and one would lose
its rows. ``exclusive_lock(target)`` takes ``flock`` on ``.NAME.lock``
next to ``target`` without waiting; the kernel drops it when the process
dies, even by SIGKILL, so no stale lock is ever left to clear by hand.
The lock file is removed on release and is keyed on the resolved target, so
two paths to one pool (a symlink, ``a/../pool``) share one lock
(:mod:`alq.fs.flock`, the local half).

On object storage there is no ``flock``: the lock is an object,
``TARGET/_alq_writer.lock``, created with a conditional PUT (``If-None-Match: *``),
so of two writers exactly one gets it. It names its holder and an expiry
(``ALQ_LOCK_TTL`` seconds, default 300) that a background thread renews every
third of it with ``If-Match`` on the object's version; a killed writer stops
renewing, and once its expiry passes the next writer takes the lock over, again
conditioned on the version it read (two writers cannot both take over). A holder
on the same host whose process is gone is known dead at once and taken over
without waiting for the expiry (a killed run's rerun need not wait). The
pool commit itself is conditioned on the manifest version the writer started
from, so even a writer whose lock expired under it cannot overwrite a newer
pool: the lock makes the refusal early and clear, the commit makes it safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

from alq.errors import BadInputError
from alq.fs import conditional
from alq.fs.flock import LocalLock, acquire_local, lock_path  # noqa: F401 - lock_path, LocalLock: this API's names
from alq.fs.uris import is_remote, join

REMOTE_LOCK = "_alq_writer.lock"
_held_remote: set[str] = set()  # lock objects this process holds now


def held_here(target) -> bool:
    """True when this process already holds the writer lock of the remote ``target``."""
    return join(target, REMOTE_LOCK) in _held_remote


def acquire(target, *, what: str = "alq"):
    """Take the lock or raise at once; returns the handle to pass to :func:`release`."""
    if is_remote(target):
        return RemoteLock(target, what=what)
    return acquire_local(target, what=what)


def release(handle) -> None:
    handle.release()


def lock_ttl() -> float:
    """Seconds a remote lock object stays valid without renewal (``ALQ_LOCK_TTL``, default 300)."""
    from alq.config import env_number

    return env_number("ALQ_LOCK_TTL", 300.0, what="seconds")


class RemoteLock:
    """A writer lock object on object storage, renewed while held (see the module docstring)."""

    def __init__(self, target, *, what: str = "alq"):
        self.uri = join(target, REMOTE_LOCK)
        self.ttl = lock_ttl()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.version = conditional.create_exclusive(self.uri, self._body())
        if self.version is None:
            got = conditional.read_versioned(self.uri)
            if got is None:  # released between our PUT and GET: one more try
                self.version = conditional.create_exclusive(self.uri, self._body())
            else:
                data, version = got
                holder = _parse(data)
                if holder.get("expires", 0) > time.time() and not _dead_here(holder.get("owner")):
                    left = holder["expires"] - time.time()
                    raise BadInputError(
                        f"{target}: another {what} is writing it right now (lock object {REMOTE_LOCK} held by "
                        f"{holder.get('owner', '?')}, expires in {left:.0f}s unless renewed)",
                        hint="wait for it to finish, then rerun") from None
                self.version = conditional.replace_if(self.uri, self._body(), version)  # expired: take it over
            if self.version is None:
                raise BadInputError(f"{target}: another {what} took the lock at the same moment",
                                    hint="wait for it to finish, then rerun")
        self.lost = False
        _held_remote.add(self.uri)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="alq-lock-renew", daemon=True)
        self._thread.start()

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires": time.time() + self.ttl, "ttl": self.ttl}).encode()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                version = conditional.replace_if(self.uri, self._body(), self.version)
            except Exception:  # noqa: BLE001 - a transient store error: try again next period
                continue
            if version is None:  # someone took it over: the commit (conditioned on the manifest) will refuse
                self.lost = True
                return
            self.version = version

    def release(self) -> None:
        _held_remote.discard(self.uri)
        self._stop.set()
        self._thread.join(timeout=30)
        if not self.lost:
            with contextlib.suppress(Exception):
                conditional.delete_if(self.uri, self.version)


def _dead_here(owner) -> bool:
    """True when the lock's holder ran on this host and its process is gone (killed): no need to wait out the
    TTL. A holder on another host is only known dead by its expiry."""
    if not isinstance(owner, str) or owner.count(":") < 2:
        return False
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _parse(data: bytes) -> dict:
    try:
        d = json.loads(data)
        return d if isinstance(d, dict) else {}
    except ValueError:
        return {}


@contextlib.contextmanager
def exclusive_lock(target, *, what: str = "alq") -> Iterator[None]:
    fd = acquire(target, what=what)
    try:
        yield
    finally:
        release(fd)
