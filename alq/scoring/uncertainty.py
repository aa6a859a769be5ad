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


# -- from logits: what the streamed passes use ---------------------------------
# One exp per logit and no (n, C) probability matrix: with s_i = sum_c exp(z_ic - z_i(1)),
# p_i(1) = 1 / s_i, p_i(1) - p_i(2) = (1 - exp(z_i(2) - z_i(1))) / s_i and
# H_i = log s_i - sum_c exp(z_ic - z_i(1)) (z_ic - z_i(1)) / s_i.
# Multi-label: m_ic = |2 sigmoid(z_ic) - 1| = |tanh(z_ic / 2)| and the binary entropy of
# sigmoid(z) is softplus(z) - z sigmoid(z).

MEASURES = ("margin", "least_confidence", "entropy")
# exp() of float32 inputs in (-103, -87.3) gives denormals, which x86 computes ~15x slower (measured).
# Such terms are below 1.7e-38: they cannot change s >= 1 in float32, so logits more than 87 below a
# row's maximum count as 87 below it (entropy of an all-but-certain row: ~1e-36 instead of ~0).
EXP_FLOOR = -87.0
DESCENDING = frozenset({"entropy"})  # selected largest-first; every other measure smallest-first


def check_aggregate(aggregate) -> str:
    from alq.errors import BadInputError

    agg = "min" if aggregate is None else str(aggregate)
    if agg not in AGGREGATES:
        raise BadInputError(f"--aggregate={aggregate!r} must be one of {', '.join(AGGREGATES)}")
    return agg


def measures_from_logits(z: torch.Tensor, *, multilabel: bool, aggregate: str = "min",
                         which: tuple[str, ...] = MEASURES, inplace: bool = False,
                         work: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Uncertainty measures of a logits block ``z`` (n, C) -> {name: (n,) float64}.

    Computed in ``z``'s dtype (float32) and returned as float64, so the value
    written to a scores file is exactly the one a streamed selection ranks by
    (the same operations whatever ``which``, ``inplace`` or ``work``).
    ``inplace`` lets the computation overwrite ``z``; ``work`` is an (n, C)
    scratch tensor for the entropy (see ``alq.scoring.stream.Buffers``).
    """
    out: dict[str, torch.Tensor] = {}
    if multilabel:
        if "margin" in which or "least_confidence" in which:
            m = torch.tanh(z * 0.5).abs()
            agg = m.min(dim=1).values if aggregate == "min" else m.mean(dim=1)
            if "margin" in which:
                out["margin"] = agg.double()
            if "least_confidence" in which:
                out["least_confidence"] = ((1 + agg) * 0.5).double()
        if "entropy" in which:
            zc = z.clamp(min=EXP_FLOOR)
            out["entropy"] = (torch.nn.functional.softplus(zc) - zc * torch.sigmoid(zc)).sum(dim=1).double()
        return out
    if z.shape[1] < 2:
        ones = torch.ones(z.shape[0], dtype=torch.float64, device=z.device)
        return {k: (ones if k != "entropy" else ones * 0) for k in which}
    # Passes over the (n, C) block: margin 7, entropy 6, least-confidence 5; no sort, no topk.
    if "margin" in which:
        zmax, arg = z.max(dim=1)
    else:
        zmax, arg = z.amax(dim=1), None
    shifted = z if inplace else z.clone()
    shifted.sub_(zmax[:, None])  # <= 0, exactly 0 at the maximum
    if arg is not None:
        shifted.scatter_(1, arg[:, None], float("-inf"))
        z2 = shifted.amax(dim=1)  # z(2) - z(1): 0 when the maximum is tied
        shifted.scatter_(1, arg[:, None], 0.0)
    shifted.clamp_(min=EXP_FLOOR)
    if "entropy" in which:
        e = torch.exp(shifted, out=work) if work is not None else torch.exp(shifted)
        s = e.sum(dim=1)
        out["entropy"] = (torch.log(s) - e.mul_(shifted).sum(dim=1) / s).double()
    else:
        s = shifted.exp_().sum(dim=1)
    if arg is not None:
        out["margin"] = ((1 - torch.exp(z2.clamp(min=EXP_FLOOR))) / s).double()
    if "least_confidence" in which:
        out["least_confidence"] = (1 / s).double()
    return {k: out[k] for k in which if k in out}


def selection_key(measure: str, values):
    """Ascending sort key of a measure: ``-entropy`` (largest first), else the value itself."""
    return -values if measure in DESCENDING else values
