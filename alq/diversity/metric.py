"""Squared distances between rows of a :class:`~alq.diversity.rows.RowTable`.

Both metrics expand ``||x - c||^2 = ||x||^2 + ||c||^2 - 2 <x, c>`` so a block
of rows against a block of centres is one matrix product, with the squared
norms of the rows computed once and kept (one float per row).

:class:`GradientEmbedding` is BADGE's space (Ash et al., ICLR 2020): a row
holds ``[a_i, h'_i]`` with ``a_i = p_i - e_{yhat_i}`` (C) and
``h'_i = [h_i, 1]`` (e + 1); the gradient embedding ``g_i = a_i (x) h'_i``
(C (e + 1) floats) is never formed, because
``<g_i, g_j> = <a_i, a_j> <h'_i, h'_j>`` and ``||g_i||^2 = ||a_i||^2 ||h'_i||^2``.
"""

from __future__ import annotations

import torch


class Euclidean:
    """Plain squared Euclidean distance of the rows' vectors."""

    name = "euclidean"

    def sq_norms(self, x: torch.Tensor) -> torch.Tensor:
        """(m, w) -> (m,) squared norms."""
        return (x * x).sum(dim=1)

    def sq_dists(self, x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
        """Rows (m, w) against centres (k, w) -> (m, k) squared distances, clamped at 0."""
        d = (x @ c.T).mul_(-2.0).add_(x_sq[:, None]).add_(c_sq[None, :])
        return d.clamp_min_(0)


class GradientEmbedding:
    """BADGE's gradient-embedding distance from the factors ``[a (C), h' (e+1)]``."""

    name = "gradient-embedding"

    def __init__(self, n_classes: int):
        self.c = int(n_classes)

    def sq_norms(self, x: torch.Tensor) -> torch.Tensor:
        a, h = x[:, :self.c], x[:, self.c:]
        return (a * a).sum(dim=1) * (h * h).sum(dim=1)

    def sq_dists(self, x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
        aa = x[:, :self.c] @ c[:, :self.c].T
        hh = x[:, self.c:] @ c[:, self.c:].T
        d = aa.mul_(hh).mul_(-2.0).add_(x_sq[:, None]).add_(c_sq[None, :])
        return d.clamp_min_(0)
