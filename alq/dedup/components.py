"""The reduce of ``alq dedup``: union-find over near-duplicate edges, and the groups it makes.

:func:`components` joins the edges' rows into connected components (single
linkage at the threshold); :func:`representatives` picks each group's
member with the most near duplicates; :class:`Groups` stores the structure
for the rows that have a near duplicate only (every other row is a group of
its own), so driver memory follows the duplicates, not the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Groups:
    """The near-duplicate structure, stored for the rows that have a near duplicate only.

    ``nodes``: sorted pool rows with at least one near duplicate; ``root``:
    the first pool row of each one's group; ``rep``: its group's
    representative. Every other row is a group of its own.
    """

    n: int
    nodes: np.ndarray
    root: np.ndarray
    rep: np.ndarray
    n_edges: int = 0

    def __post_init__(self):
        self._nonroot = np.sort(self.nodes[self.root != self.nodes])

    def _lookup(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        pos = np.searchsorted(self.nodes, rows)
        pos_c = np.minimum(pos, max(0, len(self.nodes) - 1))
        hit = (pos < len(self.nodes)) & (self.nodes[pos_c] == rows) if len(self.nodes) else np.zeros(len(rows), bool)
        out = rows.copy()
        out[hit] = values[pos_c[hit]]
        return out

    def group_of(self, rows) -> np.ndarray:
        """Group id (0..G-1, numbered by first pool row) of each row."""
        r = self._lookup(rows, self.root)
        return r - np.searchsorted(self._nonroot, r)

    def rep_of(self, rows) -> np.ndarray:
        return self._lookup(rows, self.rep)

    @property
    def n_groups(self) -> int:
        return int(self.n - len(self._nonroot))

    def sizes(self) -> np.ndarray:
        """Sizes of the groups with two or more rows."""
        _, counts = np.unique(self.root, return_counts=True)
        return counts


def components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union-find over edges (a[i], b[i]): (nodes sorted, smallest row of each node's component).

    Vectorised hooking of the larger root under the smaller, then pointer
    jumping, until every edge has one root: O(E log E) in numpy.
    """
    nodes = np.unique(np.concatenate([a, b]).astype(np.int64))
    if len(nodes) == 0:
        return nodes, nodes.copy()
    ia = np.searchsorted(nodes, a)
    ib = np.searchsorted(nodes, b)
    parent = np.arange(len(nodes), dtype=np.int64)
    while True:
        ra, rb = parent[ia], parent[ib]
        differ = ra != rb
        if not differ.any():
            break
        lo, hi = np.minimum(ra[differ], rb[differ]), np.maximum(ra[differ], rb[differ])
        np.minimum.at(parent, hi, lo)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return nodes, nodes[parent]


def representatives(nodes: np.ndarray, root: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each node's group representative: the member with the most edges, ties the smallest row."""
    if len(nodes) == 0:
        return nodes.copy()
    deg = np.bincount(np.searchsorted(nodes, a), minlength=len(nodes)) + \
        np.bincount(np.searchsorted(nodes, b), minlength=len(nodes))
    order = np.lexsort((nodes, -deg, root))  # by group, then most edges, then row
    first = np.ones(len(order), bool)
    first[1:] = root[order][1:] != root[order][:-1]
    rep_of_root = dict(zip(root[order][first].tolist(), nodes[order][first].tolist()))
    return np.array([rep_of_root[r] for r in root.tolist()], dtype=np.int64)
