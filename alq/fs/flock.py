"""One writer at a time on a local path: an advisory ``flock`` on ``.NAME.lock`` beside it.

The kernel drops the lock when the process dies, even by SIGKILL, so no
stale lock is ever left to clear by hand. The lock file is removed on
release (no empty ``.NAME.lock`` is left beside an output); a writer that
locked a file already unlinked by its holder sees that the path no longer
names its file and tries again, so two writers never hold locks on two
different files of one name. The lock is keyed on the resolved target, so
two paths to one pool (a symlink, ``a/../pool``) share one lock.

:mod:`alq.fs.lock` is the lock for either kind of location (an object on
a store); this module is the local half, which :mod:`alq.io` uses too.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from alq.errors import BadInputError


def lock_path(target: str | Path) -> Path:
    """The lock file of ``target``, keyed on what it resolves to (a symlink locks what it points to)."""
    target = Path(os.path.realpath(target))
    return target.parent / f".{target.name}.lock"


class LocalLock:
    """A held ``flock`` on ``.NAME.lock``: :func:`release` removes the file, then drops the lock."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    def release(self) -> None:
        try:
            os.unlink(self.path)  # while still held: a waiter that opened it retries on the new path
        except OSError:
            pass
        os.close(self.fd)  # closing the descriptor releases the lock


def acquire_local(target, *, what: str = "alq") -> LocalLock:
    """Take the ``flock`` of the local ``target`` or raise at once (:class:`BadInputError`)."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BadInputError(f"{target}: another {what} is writing it right now (lock {path.name} is held)",
                                hint="wait for it to finish, then rerun") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return LocalLock(fd, path)
        os.close(fd)  # the holder released (and removed) it between our open and flock: take the new one
