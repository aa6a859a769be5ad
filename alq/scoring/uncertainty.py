"""Uncertainty kernels on probability blocks (ALGORITHMS.md, Uncertainty).

All take a (n, C) tensor of probabilities and return a (n,) float64 tensor.
For every kernel here *lower means more worth labeling* except ``entropy``
(higher = more uncertain); ``selection_key`` gives the ascending sort key.

Multi-label: per-class binary margin m_ic = |2 p_ic - 1|, aggregated per row
by ``min`` (default) or ``mean``; entropy is the sum of binary entropies.
"""

from __future__ import annotations

import torch

AGGREGATES = ("min", "mean")
_EPS = 1e-12


def margin(p: torch.Tensor) -> torch.Tensor:
    """p(1) - p(2): gap between the two most probable classes."""
    if p.shape[1] < 2:
        return torch.ones(p.shape[0], dtype=torch.float64, device=p.device)
    top2 = torch.topk(p, 2, dim=1).values
    return (top2[:, 0] - top2[:, 1]).double()


def least_confidence(p: torch.Tensor) -> torch.Tensor:
    """max_c p_c (select the smallest)."""
    return p.max(dim=1).values.double()


def entropy(p: torch.Tensor) -> torch.Tensor:
    """-sum_c p_c log p_c (select the largest)."""
    p = p.double()
    return -(p * torch.log(p.clamp_min(_EPS))).sum(dim=1)


def binary_margins(p: torch.Tensor) -> torch.Tensor:
    """m_ic = |2 p_ic - 1| for sigmoid outputs, shape (n, C)."""
    return (2 * p.double() - 1).abs()


def multilabel_margin(p: torch.Tensor, aggregate: str = "min") -> torch.Tensor:
    m = binary_margins(p)
    if aggregate == "min":
        return m.min(dim=1).values
    if aggregate == "mean":
        return m.mean(dim=1)
    raise ValueError(f"aggregate={aggregate!r} must be one of {AGGREGATES}")


def multilabel_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.double().clamp(_EPS, 1 - _EPS)
    return -(p * torch.log(p) + (1 - p) * torch.log(1 - p)).sum(dim=1)


def multilabel_least_confidence(p: torch.Tensor, aggregate: str = "min") -> torch.Tensor:
    """Confidence of each binary decision max(p, 1-p) = (1 + m_ic) / 2, aggregated like margins."""
    return (1 + multilabel_margin(p, aggregate)) / 2
