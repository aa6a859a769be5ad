"""The one error boundary of the CLI: every failure becomes one ``Error:`` line.

A cron job that failed at 3 a.m. should leave one line in the log that says
what went wrong, on which path, and what to do — never a traceback. The
boundary maps

- :class:`~alq.errors.AlqError`: its own line and exit code (2 bad input, 1 failure);
- :class:`OSError` (ENOSPC, EROFS, EACCES, EISDIR, ENOTDIR, EEXIST, ...): the path
  (or the outputs the command was writing, when the OS does not say) and a fix, exit 1;
- ``ValueError`` / ``OverflowError`` (a value no check caught): one line, exit 2;
- anything else: one line naming the exception, exit 1.

``ALQ_DEBUG=1`` prints the traceback too. Warnings raised while a command runs
(numpy, torch, faiss) are collected: printed as one ``warning:`` line each
after a successful run, never under ``-q`` and never in place of the Error line.
"""

from __future__ import annotations

import errno
import os
import re
import traceback
import warnings
from collections.abc import Callable

from alq import fs, guard, staging

_FIX = {
    errno.ENOSPC: ("no space left on device", "free space there or write elsewhere, then rerun"),
    errno.EDQUOT: ("disk quota exceeded", "free space there or write elsewhere, then rerun"),
    errno.EFBIG: ("file too large (filesystem or `ulimit -f` limit)", "raise the limit or write elsewhere, then rerun"),
    errno.EROFS: ("read-only file system", "write to a writable location (--out) or remount it read-write"),
    errno.EACCES: ("permission denied", "check the owner and permissions of the path and its folder"),
    errno.EPERM: ("operation not permitted", "check the owner and permissions of the path and its folder"),
    errno.EISDIR: ("is a directory", "give a file path, not a directory"),
    errno.ENOTDIR: ("a parent of the path is not a directory", "a component of the path is a file; choose "
                    "another path"),
    errno.EEXIST: ("already exists", "remove it or choose another path"),
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.ENOTEMPTY: ("directory not empty", "remove it or choose another path"),
    errno.EMFILE: ("too many open files", "raise `ulimit -n`, then rerun"),
    errno.ENOMEM: ("out of memory", "lower ALQ_WORKING_MEMORY or free memory, then rerun"),
}
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_TEXT_ERRNOS = (("no space left", errno.ENOSPC), ("file too large", errno.EFBIG), ("read-only file", errno.EROFS),
                ("disk quota", errno.EDQUOT), ("permission denied", errno.EACCES))
_INTACT = "; existing outputs were left as they were"


def _errno_of(exc: BaseException) -> int | None:
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return code
    text = str(exc)
    m = re.search(r"\[Errno (\d+)\]", text) or re.search(r"errno[ =:]+(\d+)", text, re.I)
    if m:
        return int(m.group(1))
    low = text.lower()
    return next((code for phrase, code in _TEXT_ERRNOS if phrase in low), None)


def _where(exc: BaseException, code: int | None) -> str:
    name = getattr(exc, "filename", None)
    outs = guard.current_outputs()
    if code in _WRITE_ERRNOS or name is None:
        # a failed write names its temp file (or nothing): say which output it was for
        if outs and (name is None or any(str(name).startswith(str(fs.parent_of(o))) for o in outs)):
            return "writing " + ", ".join(str(o) for o in outs)
    return str(name) if name is not None else "(path not reported by the OS)"


def os_error_line(exc: BaseException) -> str:
    code = _errno_of(exc)
    what, fix = _FIX.get(code, (None, None))
    if what is None and not isinstance(exc, OSError):  # torch/pyarrow say only that a write failed
        what, fix = ("the write failed (no space left on device, or a file-size limit?)",
                     "free space there or write elsewhere, then rerun")
        code = errno.ENOSPC
    if what is None:
        what = getattr(exc, "strerror", None) or _first_line(exc)
        fix = "check the path and rerun"
    where = _where(exc, code)
    other = getattr(exc, "filename2", None)
    if other:
        where += f" -> {other}"
    return f"{where}: {what} ({fix}{_INTACT})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _looks_like_io(exc: BaseException) -> bool:
    """torch/pyarrow wrap failed writes in RuntimeError and friends."""
    low = str(exc).lower()
    return any(p in low for p in ("file write failed", "no space left", "file too large", "read-only file",
                                  "disk quota", "inline_container.cc", "pytorchstreamwriter"))


def translate(exc: BaseException) -> tuple[str, int]:
    """(the one line, exit code) for an exception that reached the CLI."""
    from alq.errors import AlqError

    if isinstance(exc, AlqError):
        return exc.line(), exc.exit_code
    if isinstance(exc, MemoryError):
        return ("out of memory (lower ALQ_WORKING_MEMORY, or run on a larger machine" + _INTACT + ")", 1)
    if isinstance(exc, OSError) or _looks_like_io(exc):
        return os_error_line(exc), 1
    if isinstance(exc, (ValueError, OverflowError)):
        return (f"bad value: {_first_line(exc)} (check the command's arguments and inputs; "
                "ALQ_DEBUG=1 shows where it came from)", 2)
    return (f"unexpected {type(exc).__name__}: {_first_line(exc)} (a bug in alq or its environment; rerun with "
            "ALQ_DEBUG=1 for the traceback and report it" + _INTACT + ")", 1)


MAX_SEED = 2**63 - 1


def check_arguments(args: list[str]) -> None:
    """Checks no single command can make alone: ``--seed`` must be a usable seed everywhere."""
    from alq.errors import BadInputError

    for i, a in enumerate(args):
        value = a.split("=", 1)[1] if a.startswith("--seed=") else (args[i + 1] if a == "--seed" and
                                                                     i + 1 < len(args) else None)
        if value is None:
            continue
        try:
            seed = int(value)
        except ValueError:
            continue  # typer says it is not an integer
        if not 0 <= seed <= MAX_SEED:
            raise BadInputError(f"--seed={value} must be an integer from 0 to 2^63-1")


def debug() -> bool:
    return os.environ.get("ALQ_DEBUG", "").strip() not in ("", "0", "false", "no")


def run_guarded(call: Callable[[], int], *, quiet: bool, print_error: Callable[[str], None],
                print_warning: Callable[[str], None], before_warnings: Callable[[], None] | None = None) -> int:
    """Run ``call`` inside the boundary; return its exit code.

    ``before_warnings`` runs after a successful call, before its warnings are printed (the CLI prints its
    held-back progress lines there, so they come first).
    """
    guard.reset()
    staging.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            code = call()
        except BrokenPipeError:
            raise
        except Exception as exc:  # the boundary; KeyboardInterrupt, SystemExit and SIGTERM pass to the caller
            if debug():
                traceback.print_exc()
            line, code = translate(exc)
            print_error(staging.unstage_text(line))  # a staged copy's error names the URI the user gave
            return code
    if code == 0 and before_warnings is not None:
        before_warnings()
    if code == 0 and not quiet and not debug():
        seen = set()
        for w in caught:
            msg = f"{w.category.__name__}: {_first_line(w.message)}"
            if msg not in seen:
                seen.add(msg)
                print_warning(msg)
    elif debug():
        for w in caught:
            print_warning(f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})")
    return code
