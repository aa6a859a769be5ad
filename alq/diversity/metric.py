"""Squared distances between rows of a :class:`~alq.diversity.rows.RowTable`.

Both metrics expand ``||x - c||^2 = ||x||^2 + ||c||^2 - 2 <x, c>`` so a block
of rows against a block of centres is one matrix product, with the squared
norms of the rows computed once and kept (one float per row).

In float32 that expansion loses the distance when it is small next to the
norms (rows at a large offset from the origin: N(0, 1) + 1000 leaves about
two correct digits), so :class:`Euclidean` takes an ``origin`` and expands
around it: ``x - origin`` is exact for rows near it, and the error is then
relative to the rows' spread, not to their norm. :func:`mean_row` gives a
good origin (the mean of a table, in float64, streamed).

:class:`GradientEmbedding` is BADGE's space (Ash et al., ICLR 2020): a row
holds ``[a_i, h'_i]`` with ``a_i = p_i - e_{yhat_i}`` (C) and
``h'_i = [h_i, 1]`` (e + 1); the gradient embedding ``g_i = a_i (x) h'_i``
(C (e + 1) floats) is never formed, because
``<g_i, g_j> = <a_i, a_j> <h'_i, h'_j>`` and ``||g_i||^2 = ||a_i||^2 ||h'_i||^2``.
"""

from __future__ import annotations

import numpy as np
import torch

from alq.scoring.stream import aligned_mm

_DOT_ROWS = 2048  # rows per product in row_dots: the (rows, w) temporary stays in cache


def row_dots(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``x @ c`` for rows x (m, w) and one vector c (1, w) -> (m,), each row's value depending only on that row.

    A BLAS matrix-vector product rounds a row by its place in the block (its
    kernels treat the tail rows apart). On the CPU this is numpy's ``einsum``
    loop (one row at a time, the same summation order for every row,
    whatever its position, alignment or stride; tests pin it), as fast as the
    matrix-vector product on strided column slices (measured); elsewhere, an
    elementwise product and a row sum in chunks of ``_DOT_ROWS`` rows.
    """
    if x.device.type == "cpu" and x.dtype == c.dtype:
        return torch.from_numpy(np.einsum("ij,j->i", x.numpy(), c.reshape(-1).numpy(), optimize=False))
    m = x.shape[0]
    out = torch.empty(m, dtype=x.dtype, device=x.device)
    buf = torch.empty((min(m, _DOT_ROWS), x.shape[1]), dtype=x.dtype, device=x.device)
    for i in range(0, m, _DOT_ROWS):
        xb = x[i:i + _DOT_ROWS]
        prod = torch.mul(xb, c, out=buf[:len(xb)])
        torch.sum(prod, dim=1, out=out[i:i + len(xb)])
    return out


def mean_row(table) -> torch.Tensor:
    """Mean (width,) float32 of a RowTable's vectors, accumulated in float64 over its blocks."""
    total = torch.zeros(table.width, dtype=torch.float64, device=table.device)
    for _, x in table.blocks():
        total += x.sum(dim=0, dtype=torch.float64)
    return (total / max(1, table.n)).to(torch.float32)


class Euclidean:
    """Squared Euclidean distance of the rows' vectors, expanded around ``origin`` ((w,) or None: 0).

    ``sq_norms`` are the squared norms of ``x - origin``; pass them back to
    ``sq_dists`` as ``x_sq`` / ``c_sq``.
    """

    name = "euclidean"

    def __init__(self, origin: torch.Tensor | None = None):
        self.origin = origin

    def _shift(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.origin is None else x - self.origin

    def sq_norms(self, x: torch.Tensor) -> torch.Tensor:
        """(m, w) -> (m,) squared norms of ``x - origin``."""
        x = self._shift(x)
        return (x * x).sum(dim=1)

    def sq_dists(self, x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
        """Rows (m, w) against centres (k, w) -> (m, k) squared distances, clamped at 0."""
        d = aligned_mm(self._shift(x), self._shift(c)).mul_(-2.0).add_(x_sq[:, None]).add_(c_sq[None, :])
        return d.clamp_min_(0)

    def sq_dists_one(self, x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
        """Rows (m, w) against one centre (1, w) -> (m,): an elementwise product and a row sum.

        For k-means++'s one-centre updates: a padded product would do 64x the work, and a
        matrix-vector product rounds a row differently by its place in the block (:func:`row_dots`).
        """
        dot = row_dots(self._shift(x), self._shift(c))
        return dot.mul_(-2.0).add_(x_sq).add_(c_sq).clamp_min_(0)


class GradientEmbedding:
    """BADGE's gradient-embedding distance from the factors ``[a (C), h' (e+1)]``."""

    name = "gradient-embedding"

    def __init__(self, n_classes: int):
        self.c = int(n_classes)

    def sq_norms(self, x: torch.Tensor) -> torch.Tensor:
        a, h = x[:, :self.c], x[:, self.c:]
        return (a * a).sum(dim=1) * (h * h).sum(dim=1)

    def sq_dists(self, x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
        aa = aligned_mm(x[:, :self.c], c[:, :self.c])
        hh = aligned_mm(x[:, self.c:], c[:, self.c:])
        d = aa.mul_(hh).mul_(-2.0).add_(x_sq[:, None]).add_(c_sq[None, :])
        return d.clamp_min_(0)

    def sq_dists_one(self, x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
        """Rows (m, w) against one centre (1, w) -> (m,) (see :meth:`Euclidean.sq_dists_one`)."""
        if x.device.type == "cpu" and x.dtype == c.dtype:
            # both dots in one einsum pass over each row, against [a_c, 0] and [0, h'_c]: the zeros add
            # exact zeros, so each is the same per-row sum as ``row_dots`` of its half; about half the
            # time of the two (measured: the loop's cost is per row)
            halves = torch.zeros((2, x.shape[1]), dtype=x.dtype)
            halves[0, :self.c], halves[1, self.c:] = c[0, :self.c], c[0, self.c:]
            both = torch.from_numpy(np.einsum("ij,kj->ik", x.numpy(), halves.numpy(), optimize=False))
            aa, hh = both[:, 0].contiguous(), both[:, 1]
        else:
            aa = row_dots(x[:, :self.c], c[:, :self.c])
            hh = row_dots(x[:, self.c:], c[:, self.c:])
        return aa.mul_(hh).mul_(-2.0).add_(x_sq).add_(c_sq).clamp_min_(0)
