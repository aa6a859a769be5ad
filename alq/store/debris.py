"""Clean what killed writers left: a later writer of the same pool removes it.

A SIGKILL or SIGTERM during ``alq embed``/``alq synth`` can leave, beside the
pool, a ``.POOL.*.building`` directory (a fresh build), a ``.POOL.*.old``
directory (the previous pool, moved aside by a replace), a ``.POOL.*.trash``
(a moved-aside pool being deleted), a ``.POOL.ids.*.tmp`` spill of hashed ids,
and inside the pool shard files no manifest lists (a killed ``--append``) or
``.shard-*.tmp`` halves. :func:`sweep` must only run while holding the pool's
writer lock (so no live writer owns them). A ``.old`` directory is the last
complete output: when the pool itself is absent (the kill fell between the
two renames of the replace) it is moved back, never deleted; beside a pool it
is a finished replace's leftover and goes with the rest of the debris.
:func:`sole_writer` does the same for every other directory output (scores/,
clusters/, report/, a split).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from alq.store.manifest import Manifest

SHARD_FILE = re.compile(r"shard-\d{6,}\.(npy|parquet)")


def _remove(p: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink()


def sweep(pool_dir: str | Path, manifest: Manifest | None) -> list[str]:
    """Restore a moved-aside ``pool_dir`` if it is absent, then remove killed writers' leftovers; returns the names
    removed or restored."""
    from alq.io import restore_moved_aside

    given = Path(pool_dir)
    removed: list[str] = []
    restored = restore_moved_aside(given, locked=True)
    if restored is not None:
        removed.append(restored)
    for parent, name in {(given.parent, given.name), (Path(os.path.realpath(given)).parent,
                                                      Path(os.path.realpath(given)).name)}:
        if not parent.is_dir():
            continue
        # mkdtemp's random characters (no dot): `.pool.v2.XXXXXXXX.old` belongs to pool.v2, not to pool
        temp = re.compile(rf"\.{re.escape(name)}\.[A-Za-z0-9_]+\.(building|old|trash)")
        for p in parent.glob(f".{glob.escape(name)}.*"):
            n = p.name
            if temp.fullmatch(n) or (n.startswith(f".{name}.ids.") and n.endswith(".tmp")):
                _remove(p)
                removed.append(n)
    if manifest is not None and given.is_dir():
        listed = {f for s in manifest.shards for f in (s.npy, s.parquet)}
        for p in given.iterdir():
            n = p.name
            if (SHARD_FILE.fullmatch(n) and n not in listed) or (n.startswith(".shard-") and n.endswith(".tmp")):
                _remove(p)
                removed.append(n)
    return sorted(removed)


@contextlib.contextmanager
def sole_writer(target: str | Path, *, what: str) -> Iterator[list[str]]:
    """Hold ``target``'s writer lock and clear what killed writers of it left; yields the names removed.

    For directory outputs built beside their target and swapped in (scores/, clusters/, report/, a split):
    a previous output that a killed swap left moved aside is put back first.
    """
    from alq.fs import is_remote
    from alq.fs.lock import exclusive_lock

    with exclusive_lock(target, what=what):
        # on object storage a directory output is published by its pointer: nothing half-built lies beside it
        yield [] if is_remote(target) else sweep(target, None)
