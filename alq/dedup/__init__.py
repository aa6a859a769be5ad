"""Near-duplicate groups of a pool (``alq dedup``) and the selection constraints built on them.

- :mod:`alq.dedup.groups`: the groups as a map over shards on the faiss
  index ``alq cluster`` builds: the map task (kNN search with a range-style
  re-search) is :mod:`alq.dedup.edges`, the reduce (a union-find of the
  edges under the threshold, on the driver) :mod:`alq.dedup.components`,
  and ``--auto``'s threshold :mod:`alq.dedup.auto`.
- :mod:`alq.dedup.store`: the DUPS/ directory (one Parquet per pool shard:
  ``id, group, representative, distance``), written atomically.
- :mod:`alq.dedup.constrain`: ``alq select --dedup`` / ``--min-distance``
  applied to any strategy's ranking.
"""

from alq.dedup.groups import DedupOptions, compute_groups

__all__ = ["DedupOptions", "compute_groups"]
