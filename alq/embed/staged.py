"""Small whole files (an encoder, an ids file) given as URIs, fetched to a local temporary copy.

Readers of these files name their local path in error lines; :func:`staged`
puts back the name the user typed, so ``s3://bkt/ids.txt: ran out of ids``
reads the same as it would for a local file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alq import fs, staging
from alq.errors import AlqError


@contextlib.contextmanager
def staged(path, *, what: str) -> Iterator[Path | None]:
    """A local path with ``path``'s content for the block (``path`` itself when local)."""
    if path is None or not fs.is_remote(path):
        yield None if path is None else fs.local(path)
        return
    with staging.stage_input(path, what=what) as local:
        try:
            yield local
        except AlqError as exc:
            msg = str(exc).replace(str(local), str(path))
            if msg == str(exc):
                raise
            raise type(exc)(msg, hint=exc.hint) from None
