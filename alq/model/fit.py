"""Fit one head network to convergence on tensors: the objective, the optimisers, early stopping.

The objective is the mean cross-entropy (softmax, or per-class binary for
multi-label heads), optionally class-weighted, plus ``weight_decay / 2`` times
the squared norm of the weight matrices (biases are not penalised).

Optimiser (``TrainOptions.optimizer``): ``auto`` = full-batch L-BFGS with a
strong-Wolfe line search, except for heads with dropout, whose objective is
stochastic (the line search needs a deterministic one): those use Adam with
a cosine schedule. Measured (tests/bench/bench_train.py, same objective, one
thread, median of 3): on digits (300 and 1200 labels) and a d=256, C=100
mixture (5k and 20k labels), linear L-BFGS reached the lowest objective every
time in 0.17-2.7 s, while Adam (lr 1e-2, batch 256) after 100 epochs was
still 2e-5..0.3 above it and took 0.75-4.5x as long; 300 epochs closed most
of the gap at 2.3-8.9x the time, and lr 1e-3 did worse. For the 256-unit MLP
L-BFGS also reached the lowest objective, but Adam came within 3e-3..9e-3
(test accuracy 0-1 point lower) in 0.27-0.29x the time: ``--optimizer adam`` is the
faster choice there. The BASE paper's point (Emam et al. 2021, appendix D)
is that an under-trained head makes every strategy look alike, so the
default goes for the optimum.

Early stopping (BASE appendix A.1): a stratified ``holdout`` fraction of the
labels is set aside; the loss on it is checked every ``eval_every`` L-BFGS
iterations (every 5 Adam epochs) and training stops after ``patience``
checks without improvement, keeping the best weights. With fewer than
``MIN_HOLDOUT`` held-out rows early stopping is off and every label trains.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from alq.model.head import HeadNet
from alq.model.options import TrainOptions, resolve_optimizer
from alq.model.precondition import LinearBasis, PreconditionedLinear
from alq.model.standardize import ColumnStats

MIN_HOLDOUT = 10
ADAM_EVAL_EPOCHS = 5


def class_weights(y: np.ndarray, n_classes: int, multilabel: bool) -> np.ndarray:
    """Multi-class: n / (C * count_c) ("balanced"; 0 for absent classes).
    Multi-label: the BCE positive weight n_neg / n_pos per class (1 where a class has no positive)."""
    if multilabel:
        pos = y.sum(axis=0).astype(np.float64)
        neg = len(y) - pos
        w = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
        return w.astype(np.float32)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


_class_weights = class_weights  # earlier name


def holdout_split(y: np.ndarray, fraction: float, *, multilabel: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, holdout rows): a stratified random ``fraction`` of each class, sorted.

    Every class keeps at least one training row; multi-label rows are split
    at random. Fewer than ``MIN_HOLDOUT`` held-out rows -> no holdout.
    """
    n = len(y)
    everything = np.arange(n, dtype=np.int64)
    if fraction <= 0 or n < 2:
        return everything, everything[:0]
    rng = np.random.default_rng([seed, 0x401D])
    if multilabel:
        m = int(math.floor(fraction * n))
        held = np.sort(rng.permutation(n)[:m]) if m >= MIN_HOLDOUT else everything[:0]
    else:
        parts = []
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            m = min(int(math.floor(fraction * len(rows) + 0.5)), len(rows) - 1)
            if m > 0:
                parts.append(rng.permutation(rows)[:m])
        held = np.sort(np.concatenate(parts)).astype(np.int64) if parts else everything[:0]
        if len(held) < MIN_HOLDOUT:
            held = everything[:0]
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    return everything[mask], held


class _Objective:
    """Data loss (mean, optionally weighted) + L2 penalty on weight matrices."""

    def __init__(self, net: HeadNet, multilabel: bool, weights: torch.Tensor | None, weight_decay: float):
        self.net, self.multilabel, self.weight_decay = net, multilabel, weight_decay
        self.decay = [m.weight for m in net.modules() if isinstance(m, nn.Linear)]
        if multilabel:
            self.data_loss = nn.BCEWithLogitsLoss(pos_weight=weights)
        else:
            self.data_loss = nn.CrossEntropyLoss(weight=weights)
        # Held-out loss is never weighted: it measures fit, not the training emphasis.
        self.plain = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.data_loss(self.net(x), y)
        if self.weight_decay:
            loss = loss + 0.5 * self.weight_decay * sum((w * w).sum() for w in self.decay)
        return loss

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """(plain loss, accuracy) in eval mode; multi-label accuracy = per-label accuracy."""
        was = self.net.training
        self.net.eval()
        z = self.net(x)
        self.net.train(was)
        loss = float(self.plain(z, y))
        acc = float(((z > 0).float() == y).float().mean()) if self.multilabel else float((z.argmax(1) == y).float().mean())
        return loss, acc


class _EarlyStop:
    def __init__(self, objective: _Objective, x_val, y_val, patience: int):
        self.objective, self.x_val, self.y_val, self.patience = objective, x_val, y_val, patience
        self.best = math.inf
        self.best_state = None
        self.best_step = 0
        self.bad = 0
        self.active = x_val is not None and len(x_val) > 0

    def check(self, step: int) -> bool:
        """Record the current weights if best; True when training should stop."""
        if not self.active:
            return False
        loss, _ = self.objective.evaluate(self.x_val, self.y_val)
        if self.best_state is None or loss < self.best - 1e-9 * max(1.0, abs(self.best)):
            self.best, self.best_step, self.bad = loss, step, 0
            self.best_state = copy.deepcopy(self.objective.net.state_dict())
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self) -> None:
        if self.active and self.best_state is not None:
            self.objective.net.load_state_dict(self.best_state)


def _init_net(x: torch.Tensor, n_classes: int, opts: TrainOptions, generator: torch.Generator,
              init: HeadNet | None = None, stats: tuple | None = None) -> HeadNet:
    """A seeded random init, or a warm start from ``init`` (``alq simulate --head-mode update``).

    ``stats``: the standardisation (mean, scale), normally the pool's
    (:mod:`alq.model.standardize`); without it, the training rows' own (floored the same way).
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
        if stats is None:
            stats = ColumnStats.of(x.cpu().numpy()).standardizer()
        net.mean.copy_(torch.as_tensor(stats[0], dtype=torch.float32))
        net.scale.copy_(torch.as_tensor(stats[1], dtype=torch.float32))
    return net.to(x.device)


def _fit_lbfgs(objective: _Objective, x, y, stopper: _EarlyStop, opts: TrainOptions,
               basis: LinearBasis | None = None) -> dict:
    """Full-batch L-BFGS; a linear head with ``basis`` is fitted in whitened coordinates (same optimum)."""
    net = objective.net
    if basis is not None:
        pre = PreconditionedLinear(net, basis, objective.weight_decay)
        params, sync = pre.params, pre.sync
        # L-BFGS's own gradient test would be in whitened units; the test in (W, b) units is below
        inner_tol, converged = opts.tol * 1e-3, lambda: pre.original_gradient_max() <= opts.tol

        def loss_fn():
            return objective.data_loss(pre.logits(), y) + pre.penalty()
    else:
        params = [p for p in net.parameters() if p.requires_grad]
        inner_tol = opts.tol

        def converged():
            return False

        def sync():
            return None

        def loss_fn():
            return objective(x, y)
    # max_eval generous: a chunk must end on max_iter or on a tolerance, never on the eval count,
    # so that a short chunk means "converged".
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=opts.eval_every, max_eval=opts.eval_every * 25,
                            tolerance_grad=inner_tol, tolerance_change=inner_tol * 1e-2, history_size=20,
                            line_search_fn="strong_wolfe")
    evals = {"n": 0}

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        evals["n"] += 1
        return loss

    net.train()
    done, stopped = 0, "max-iter"
    while done < opts.max_iter:
        before = opt.state[params[0]].get("n_iter", 0) if params[0] in opt.state else 0
        opt.step(closure)
        after = opt.state[params[0]].get("n_iter", 0)
        done = after
        sync()
        if stopper.check(done):
            stopped = "early-stopped"
            break
        if after - before < opts.eval_every or converged():  # a tolerance met inside this chunk
            stopped = "converged"
            break
    return {"iterations": int(done), "evaluations": evals["n"], "stopped": stopped}


def _fit_adam(objective: _Objective, x, y, stopper: _EarlyStop, opts: TrainOptions, generator: torch.Generator) -> dict:
    net = objective.net
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=opts.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=opts.epochs)
    n = len(x)
    bs = min(opts.batch_size, n)
    stopped = "max-iter"
    epoch = 0
    net.train()
    for epoch in range(1, opts.epochs + 1):
        order = torch.randperm(n, generator=generator).to(x.device)
        for i in range(0, n, bs):
            rows = order[i:i + bs]
            opt.zero_grad()
            objective(x[rows], y[rows]).backward()
            opt.step()
        sched.step()
        if epoch % ADAM_EVAL_EPOCHS == 0 and stopper.check(epoch):
            stopped = "early-stopped"
            break
    return {"iterations": epoch, "evaluations": epoch * math.ceil(n / bs), "stopped": stopped}


def fit_net(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, multilabel: bool, opts: TrainOptions,
            generator: torch.Generator, weights: torch.Tensor | None = None,
            x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
            init: HeadNet | None = None, stats: tuple | None = None,
            with_metrics: bool = True, basis: LinearBasis | None = None) -> tuple[HeadNet, dict]:
    """Fit one HeadNet on tensors already on the target device. No validation.

    ``init``: warm start from these weights (same shape) instead of a seeded random init.
    ``stats``: standardisation (mean, scale) for ``normalize="standardize"``.
    ``with_metrics=False`` skips the final objective/accuracy (cross-validation path fits).
    ``basis``: the :class:`~alq.model.precondition.LinearBasis` of ``x`` when the caller reuses
    it (a regularisation path); a linear L-BFGS fit computes it otherwise.

    ``x``: (n, d) float32; ``y``: (n,) int64 class indices or (n, C) float
    multi-hot. ``x_val``/``y_val``: the held-out slice for early stopping.
    """
    net = _init_net(x, n_classes, opts, generator, init, stats)
    objective = _Objective(net, multilabel, weights, opts.weight_decay or 0.0)
    stopper = _EarlyStop(objective, x_val, y_val, opts.patience)
    optimizer = resolve_optimizer(opts)
    if optimizer == "lbfgs":
        if net.hidden == 0 and basis is None:
            basis = LinearBasis.of(net, x)
        fit = _fit_lbfgs(objective, x, y, stopper, opts, basis if net.hidden == 0 else None)
    else:
        fit = _fit_adam(objective, x, y, stopper, opts, generator)
    if stopper.active and fit["stopped"] != "early-stopped":
        stopper.check(fit["iterations"])  # the final weights compete too
    stopper.restore()
    net.eval()
    if not with_metrics:
        fit.update(optimizer=optimizer)
        return net, fit
    with torch.no_grad():
        final = float(objective(x, y))
    train_loss, train_acc = objective.evaluate(x, y)
    fit.update(optimizer=optimizer, objective=final, train_loss=train_loss, train_accuracy=train_acc)
    if stopper.active:
        val_loss, val_acc = objective.evaluate(x_val, y_val)
        fit.update(holdout_loss=val_loss, holdout_accuracy=val_acc, best_iteration=int(stopper.best_step))
    return net, fit
