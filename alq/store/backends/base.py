"""The :class:`StorageBackend` protocol: the operations a pool writer needs from one kind of storage.

See :mod:`alq.store.backends` for what each verb means and which backends exist.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from alq.store.manifest import Manifest, ShardInfo


class StorageBackend(ABC):
    """The operations a pool writer needs from one kind of storage (see :mod:`alq.store.backends`)."""

    path: str | Path  # the pool's location, normalised
    build_dir: Path | None = None  # the local directory shards are built in (None before open)
    swept: list[str]  # what open() removed or restored (a killed writer's leftovers)
    stages_locally = False  # build_dir is a private temporary directory (removed by abort and after a commit)

    @property
    @abstractmethod
    def location(self) -> str | Path:
        """Where workers write the shards this writer adopts (``PartSpec.location``)."""

    @property
    @abstractmethod
    def spill_at(self) -> str | Path:
        """Where the writer's id-hash spill goes (:class:`~alq.store.idcheck.UniqueIdSpill`'s target)."""

    # -- a writer's life -------------------------------------------------------------------
    @abstractmethod
    def open(self, *, append: bool, overwrite: bool) -> tuple[Manifest | None, Manifest | None]:
        """Check the target (the caller holds its lock), sweep debris, prepare ``build_dir``.

        Returns (the pool an append extends, the pool an ``overwrite`` replaces);
        raises a one-line error when the target is not what the mode needs.
        """

    @abstractmethod
    def open_part(self) -> None:
        """Prepare ``build_dir`` for a worker's shards at ``path`` (no lock, no manifest, no sweep)."""

    @abstractmethod
    def sweep(self, manifest: Manifest | None) -> list[str]:
        """Remove shards ``manifest`` does not list and writers' temporary files; the names removed."""

    @abstractmethod
    def publish_shard(self, npy: Path) -> str:
        """Make a finished shard (``npy`` and the ``.parquet`` beside it) durable where a manifest can list it.

        Runs on a background thread while the next shard fills; returns the sha256 of the vectors file.
        """

    @abstractmethod
    def commit(self, manifest: Manifest) -> None:
        """Write ``manifest`` atomically: the pool changes here or not at all."""

    def after_commit(self, manifest: Manifest) -> None:  # noqa: B027 - optional hook
        """Remove what the commit made obsolete (build directories, a replaced pool's shards)."""

    @abstractmethod
    def abort(self, new_shards: Iterable[ShardInfo]) -> None:
        """Remove everything this writer put down (``new_shards`` and any temporary file); the pool stays."""

    # -- small reads the coordinator needs ---------------------------------------------
    @abstractmethod
    def shard_checker(self, manifest: Manifest) -> Callable[[ShardInfo], None]:
        """A check of one existing shard before an append: present, complete, the manifest's shape."""

    @abstractmethod
    def new_ids(self, manifest: Manifest, adopted: set[str]) -> Callable[[np.ndarray], np.ndarray]:
        """Ids of rows of the uncommitted shards ``manifest`` lists (``adopted``: names workers published)."""

    def claim(self, shards: Iterable[ShardInfo]) -> None:  # noqa: B027 - optional hook
        """Shards a worker published become this writer's: ``abort`` removes them too."""
