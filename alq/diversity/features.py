"""What the head contributes to the diversity strategies.

``feature_transform``: the input of the head's last linear layer (the space
of coreset and FASS for a trained head; Sener & Savarese use the model's
last-layer activations). ``None`` when that is the embedding itself (linear
head, no normalisation), so the pool is read as is.

``badge_transform``: BADGE's factors ``[a_i, h'_i]`` with
``a_i = p_i - e_{yhat_i}`` (the gradient of the cross-entropy at the
predicted label with respect to the logits) and ``h'_i = [h_i, 1]`` (the
last layer's input and its bias), width ``C + e + 1``. Multi-label heads use
the binary cross-entropy gradient at the thresholded prediction:
``a_ic = p_ic - 1[p_ic > 0.5]``.
"""

from __future__ import annotations

import torch

from alq.model.head import Head
from alq.scoring.stream import aligned_forward, pad_rows


def feature_width(head: Head) -> int:
    return head.net.hidden or head.dim


def feature_transform(head: Head, device):
    """Callable float32 (m, d) -> (m, e) head features, or None for the identity."""
    net = head.to(device).net.eval()
    if net.hidden == 0 and net.normalize is None:
        return None

    def transform(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return aligned_forward(net, x)[0]

    return transform


def badge_factors(head: Head, h: torch.Tensor) -> torch.Tensor:
    """Features ``h`` (m, e) -> factors ``[a, h, 1]`` (m, C + e + 1)."""
    net = head.net
    z = net.out(h)
    if head.multilabel:
        p = torch.sigmoid(z)
        a = p - (p > 0.5).to(p.dtype)
    else:
        p = torch.softmax(z, dim=1)
        a = p.clone()
        a[torch.arange(len(a), device=a.device), z.argmax(dim=1)] -= 1.0
    ones = torch.ones((len(h), 1), dtype=h.dtype, device=h.device)
    return torch.cat([a, h, ones], dim=1)


def badge_transform(head: Head, device):
    """Callable float32 (m, d) -> BADGE factors (m, C + e + 1), and that width."""
    net = head.to(device).net.eval()

    def transform(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # on zero-padded rows, like every head product (alq.scoring.stream)
            return badge_factors(head, net.features(pad_rows(x)))[:len(x)]

    return transform, head.n_classes + feature_width(head) + 1
