"""One writer at a time: an advisory lock beside the file or pool being updated.

Two cron jobs appending to one pool (or merging into one labels file) at
the same moment would each build on the old manifest and one would lose
its rows. ``exclusive_lock(target)`` takes ``flock`` on ``.NAME.lock``
next to ``target`` without waiting; the kernel drops it when the process
dies, even by SIGKILL, so no stale lock is ever left to clear by hand.
The empty lock file itself stays (removing it would race with a waiter).
The lock is keyed on the resolved target, so two paths to one pool (a
symlink, ``a/../pool``) share one lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from alq.errors import BadInputError


def lock_path(target: str | Path) -> Path:
    """The lock file of ``target``, keyed on what it resolves to (a symlink locks what it points to)."""
    target = Path(os.path.realpath(target))
    return target.parent / f".{target.name}.lock"


def acquire(target: str | Path, *, what: str = "alq") -> int:
    """Take the lock or raise at once; returns the fd to pass to :func:`release`."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BadInputError(f"{target}: another {what} is writing it right now (lock {path.name} is held)",
                            hint="wait for it to finish, then rerun") from None
    return fd


def release(fd: int) -> None:
    os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def exclusive_lock(target: str | Path, *, what: str = "alq") -> Iterator[None]:
    fd = acquire(target, what=what)
    try:
        yield
    finally:
        release(fd)
