"""Near-duplicate groups of a pool (``alq dedup``) and the selection constraints built on them.

- :mod:`alq.dedup.groups`: the groups as a map over shards on the faiss
  index ``alq cluster`` builds (kNN search with a range-style re-search,
  then a union-find of the edges under the threshold on the driver).
- :mod:`alq.dedup.store`: the DUPS/ directory (one Parquet per pool shard:
  ``id, group, representative, distance``), written atomically.
- :mod:`alq.dedup.constrain`: ``alq select --dedup`` / ``--min-distance``
  applied to any strategy's ranking.
"""

from alq.dedup.groups import DedupOptions, compute_groups

__all__ = ["DedupOptions", "compute_groups"]
