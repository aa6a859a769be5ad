"""bald: mutual information between the prediction and the model (Houlsby et al. 2011; Gal et al. 2017).

MI(x) = H[mean_k p^k(x)] - mean_k H[p^k(x)] over K model samples p^k:

- an ensemble head (``alq train --ensemble K``, seeds or ``--bootstrap``):
  the K members;
- else an MLP head trained with dropout (``alq train --hidden H --dropout q``):
  ``--option mc_samples=T`` (default 20) Monte-Carlo dropout samples. Each
  sample is one dropout mask on the hidden layer (kept units scaled by
  1/(1-q)), drawn from a ``torch.Generator`` seeded by ``--seed`` and shared
  by every row: a sample is one sub-network, the same whatever the block
  size, so the scores are deterministic and stream exactly.

Multi-label heads: the sum over classes of the binary MI. The b rows of
largest MI are selected (ties: smaller row), streamed as a map over the pool
plus a top-k merge (``distributed = "sharded"``).
"""

from __future__ import annotations

import numpy as np
import torch

from alq.device import torch_device
from alq.errors import BadInputError
from alq.scoring.stream import head_block_rows, pad_rows, to_tensor
from alq.scoring.topk import StreamingTopK
from alq.strategies.base import Context, Selection, Strategy, register

DEFAULT_MC_SAMPLES = 20


def _entropy(p: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """(..., C) probabilities -> (...) entropy (sum of binary entropies when multi-label), float64."""
    p = p.double()
    h = -torch.special.xlogy(p, p)
    if multilabel:
        h = h - torch.special.xlogy(1 - p, 1 - p)
    return h.sum(dim=-1)


def mutual_information(probs: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    """(K, n, C) per-sample probabilities -> (n,) MI = H[mean_k p^k] - mean_k H[p^k], float64."""
    return _entropy(probs.double().mean(dim=0), multilabel) - _entropy(probs, multilabel).mean(dim=0)


def dropout_masks(hidden: int, p: float, samples: int, seed: int) -> torch.Tensor:
    """(T, hidden) inverted-dropout masks: 0 with probability p, else 1/(1-p). Seeded, no global RNG."""
    gen = torch.Generator().manual_seed(int(seed))
    keep = torch.rand((samples, hidden), generator=gen) >= p
    return keep.float() / (1.0 - p)


def sample_probs(head, x: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """(K, m, C) probabilities of the model samples on a block ``x`` (m, d)."""
    if masks is None:
        zs = torch.stack([net.eval()(x) for net in head.nets])
    else:
        net = head.net.eval()
        h = net.features(x)  # eval: dropout off; the masks below are the samples
        w, b = net.out.weight, net.out.bias  # (C, H), (C,)
        wt = masks[:, None, :] * w[None]  # (T, C, H): one sub-network per mask
        z = h @ wt.reshape(-1, w.shape[1]).T + b.repeat(len(masks))
        zs = z.reshape(len(x), len(masks), -1).transpose(0, 1)
    return torch.sigmoid(zs) if head.multilabel else torch.softmax(zs, dim=-1)


def bald_topk(pool, lo: int, hi: int, head, masks, k: int, device, *, excluded: np.ndarray) -> StreamingTopK:
    """Map step: the k largest-MI unlabeled rows of [lo, hi) (key = -MI)."""
    device = device or torch_device()
    head.to(device)
    masks = None if masks is None else masks.to(device)
    samples = len(head.nets) if masks is None else len(masks)
    rows = head_block_rows(pool, head, extra_per_row=8 * 3 * samples * head.n_classes)
    top = StreamingTopK(k)
    with torch.no_grad():
        for block in pool.iter_blocks(block_rows=rows, lo=lo, hi=hi):
            keep = ~excluded[block.start - lo:block.stop - lo]
            if not keep.any():
                continue
            x = pad_rows(to_tensor(block, device))  # whole tiles: a row's bits never depend on the block
            mi = mutual_information(sample_probs(head, x, masks), head.multilabel)[:len(block.indices)]
            top.push(-mi.cpu().numpy()[keep], block.indices[keep])
    return top


def model_samples(ctx: Context):
    """None for an ensemble, else the MC-dropout masks; a clear error when neither is possible."""
    head = ctx.head
    if len(head.nets) >= 2:
        return None
    net = head.net
    if net.hidden > 0 and net.dropout_p > 0:
        t = ctx.option("mc_samples", DEFAULT_MC_SAMPLES)
        if not isinstance(t, (int, np.integer)) or t < 2:
            raise BadInputError(f"--option mc_samples={t!r} must be a whole number >= 2")
        return dropout_masks(net.hidden, net.dropout_p, int(t), ctx.seed)
    raise BadInputError("--strategy bald needs model samples, but this head is a single network without "
                        "dropout: train with `alq train --ensemble K` (K >= 2), or an MLP head with "
                        "`alq train --hidden H --dropout 0.2`")


@register
class BaldStrategy(Strategy):
    name = "bald"
    help = "mutual information over an ensemble head (--ensemble K) or MC dropout on an MLP head"
    needs_head = True
    score_meaning = "mutual information H[mean p] - mean H[p] (nats; larger first)"
    distributed = "sharded"

    def select(self, ctx: Context) -> Selection:
        from alq.engine import LocalEngine

        masks = model_samples(ctx)
        engine = ctx.engine or LocalEngine()
        parts = engine.map_pool(bald_topk, ctx.pool, ctx.head, masks, ctx.budget, ctx.device,
                                row_arrays={"excluded": ctx.excluded})
        top = StreamingTopK(ctx.budget)
        for part in parts:
            top.merge(part)
        idx, keys = top.result()
        samples = len(ctx.head.nets) if masks is None else len(masks)
        return Selection(indices=idx, scores=-keys,
                         summary={"bald": {"model_samples": samples,
                                           "source": "ensemble" if masks is None else "mc-dropout"}})
