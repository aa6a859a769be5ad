"""One memory setting decides block sizes everywhere.

``ALQ_WORKING_MEMORY`` (MiB, default 256) bounds the working set of one block
of a streamed pool-wide stage, in the spirit of scikit-learn's
``working_memory``. Peak memory is then bounded by this, not by the pool.
"""

from __future__ import annotations

import math
import os

from alq.errors import BadInputError

DEFAULT_WORKING_MEMORY_MIB = 256
DEFAULT_SHARD_ROWS = 262_144  # rows per pool shard (`--shard-rows`)


def working_memory_bytes() -> int:
    return int(env_number("ALQ_WORKING_MEMORY", DEFAULT_WORKING_MEMORY_MIB, what="MiB") * 1024 * 1024)


def rows_per_block(bytes_per_row: int, *, working_memory: int | None = None) -> int:
    """Rows that fit in the working memory when each row costs ``bytes_per_row``.

    ``bytes_per_row`` should count every per-row buffer of the stage (the
    float32 copy of the embedding, logits, scores...), not only the input.
    """
    budget = working_memory_bytes() if working_memory is None else working_memory
    return max(1, int(budget // max(1, int(bytes_per_row))))


def env_number(name: str, default: float, *, what: str, minimum: float = 0.0, integer: bool = False) -> float:
    """A positive number from the environment (``what`` names its unit in errors), or ``default``."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise BadInputError(f"{name}={raw!r} is not {'an integer' if integer else 'a number'} of {what}") from None
    if not math.isfinite(value) or value <= minimum:
        raise BadInputError(f"{name}={raw!r} must be a finite number of {what} > {minimum:g}")
    return value


def return_freed_memory() -> None:
    """Hand freed heap pages back to the OS.

    glibc keeps freed small and mid-size blocks (a faiss index's list
    buffers, numpy temporaries below its mmap threshold) in the heap, where
    they still count in the RSS of a long run; ``malloc_trim`` releases them.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
