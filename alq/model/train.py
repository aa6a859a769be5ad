"""Train a head to convergence on the embeddings of labeled rows.

Full-batch L-BFGS (strong-Wolfe line search) on the mean cross-entropy plus
an L2 penalty on the weights. On embeddings the problem is small and smooth
(convex for the linear head), so a second-order full-batch method reaches
the optimum in tens of iterations with no learning rate to tune; the BASE
paper's point is that an under-trained head makes every strategy look alike.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from alq import __version__
from alq.errors import BadInputError
from alq.model.head import Head, HeadNet


@dataclass
class TrainOptions:
    hidden: int = 0  # 0 = linear head
    dropout: float = 0.0
    weight_decay: float = 1e-4
    normalize: str | None = None  # None | "standardize" | "l2"
    class_weighted: bool = False
    max_iter: int = 300
    tol: float = 1e-7
    seed: int = 0
    ensemble: int = 1
    bootstrap: bool = False


def _class_weights(y: np.ndarray, n_classes: int, multilabel: bool) -> np.ndarray:
    counts = y.sum(axis=0) if multilabel else np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


def fit_net(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, multilabel: bool, opts: TrainOptions,
            generator: torch.Generator, weights: torch.Tensor | None = None,
            init: HeadNet | None = None) -> tuple[HeadNet, dict]:
    """Fit one HeadNet on tensors already on the target device. No validation.

    ``init``: warm start from these weights (same shape) instead of a seeded
    random init (``alq simulate --head-mode update``, DISTIL Sec. 4.7).
    """
    net = HeadNet(x.shape[1], n_classes, hidden=opts.hidden, dropout=opts.dropout, normalize=opts.normalize)
    with torch.no_grad():  # seeded init, independent of torch's global RNG
        for m in net.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / max(1, m.in_features) ** 0.5
                m.weight.copy_((torch.rand(m.weight.shape, generator=generator) * 2 - 1) * bound)
                m.bias.zero_()
        if init is not None:
            net.load_state_dict({k: v.detach().cpu() for k, v in init.state_dict().items()})
    if opts.normalize == "standardize":
        net.mean.copy_(x.mean(0).cpu())
        net.scale.copy_(x.std(0).clamp_min(1e-6).cpu())
    net.to(x.device)
    params = [p for p in net.parameters() if p.requires_grad]
    decay = [m.weight for m in net.modules() if isinstance(m, nn.Linear)]
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=None) if multilabel else nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=opts.max_iter, tolerance_grad=opts.tol,
                            tolerance_change=opts.tol * 1e-2, history_size=20, line_search_fn="strong_wolfe")
    state = {"evals": 0}

    def closure():
        opt.zero_grad()
        z = net(x)
        if multilabel and weights is not None:
            loss = (nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none") * weights).mean()
        else:
            loss = loss_fn(z, y)
        if opts.weight_decay:
            loss = loss + 0.5 * opts.weight_decay * sum((w * w).sum() for w in decay)
        loss.backward()
        state["evals"] += 1
        return loss

    net.train()
    opt.step(closure)  # returns the loss at the START of the step, not the final one
    evals = state["evals"]
    final = float(closure().detach())
    net.eval()
    return net, {"loss": final, "evaluations": evals}


def train_head(x: np.ndarray, y: np.ndarray, classes: list, *, multilabel: bool, opts: TrainOptions,
               device=None, meta: dict | None = None, init: Head | None = None) -> Head:
    """Train a head (or an ensemble) on embeddings ``x`` (n, d) and targets ``y``.

    ``y``: class indices (n,) for multi-class, multi-hot (n, C) for multi-label.
    ``init``: a head of the same shape to warm-start from (member k from ``init.nets[k]``).
    """
    if len(x) == 0:
        raise BadInputError("no labeled rows to train on", hint="import labels with `alq labels`")
    if not multilabel and len(np.unique(y)) < 2:
        raise BadInputError(f"labels hold a single class ({classes[int(y[0])]!r}); a classifier needs >= 2")
    device = device or torch.device("cpu")
    t0 = time.perf_counter()
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    yt = torch.as_tensor(y, device=device)
    if multilabel:
        yt = yt.float()
    w = None
    if opts.class_weighted:
        w = torch.as_tensor(_class_weights(np.asarray(y), len(classes), multilabel), device=device)
    nets, fits = [], []
    for k in range(max(1, opts.ensemble)):
        gen = torch.Generator().manual_seed(opts.seed * 1_000_003 + k)
        xs, ys = xt, yt
        if k > 0 and opts.bootstrap:
            idx = torch.randint(len(xt), (len(xt),), generator=gen).to(device)
            xs, ys = xt[idx], yt[idx]
        warm = init.nets[min(k, len(init.nets) - 1)] if init is not None else None
        net, fit = fit_net(xs, ys, len(classes), multilabel=multilabel, opts=opts, generator=gen, weights=w,
                           init=warm)
        nets.append(net)
        fits.append(fit)
    with torch.no_grad():
        z = nets[0](xt)
        if multilabel:
            train_acc = float(((z > 0).float() == yt).float().mean())
        else:
            train_acc = float((z.argmax(1) == yt).float().mean())
    metrics = {"train_accuracy": train_acc, "train_loss": fits[0]["loss"], "evaluations": fits[0]["evaluations"],
               "n_train": int(len(x)), "seconds": time.perf_counter() - t0}
    head_meta = {"options": asdict(opts), "metrics": metrics, "alq_version": __version__, **(meta or {})}
    return Head(nets=[n.cpu() for n in nets], classes=list(classes), multilabel=multilabel, meta=head_meta)
