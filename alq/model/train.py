"""Train a head (or an ensemble) on the embeddings of labeled rows: :func:`train_head`.

The steps, each in its own module: options checked (:mod:`alq.model.options`),
a stratified holdout set aside (:func:`alq.model.fit.holdout_split`), the L2
strength chosen by k-fold cross-validation when not given
(:mod:`alq.model.cv`), then every member fitted at it
(:func:`alq.model.fit.fit_net`: objective, optimisers and early stopping are
described there). The head records its options and training metrics.
This module takes arrays: reading a pool's labeled rows is
:func:`alq.train.train_on_pool`'s job.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np
import torch

from alq import __version__
from alq.device import serial
from alq.errors import BadInputError
from alq.model.cv import select_weight_decay, sklearn_c
from alq.model.fit import class_weights, fit_net, holdout_split
from alq.model.head import Head
from alq.model.options import TrainOptions, check_options
from alq.model.standardize import ColumnStats

__all__ = ["TrainOptions", "check_options", "train_head"]


# Below this many input values (rows x dim) a CPU fit runs on one thread: its matrix products are
# skinny (C outputs) and short, and torch's intra-op threads only spin. Measured: 1,000 x 512
# Fashion-MNIST labels, full CV fit, 2 threads on a loaded 2-core machine 74 s, 1 thread 7.8 s.
SINGLE_THREAD_MAX_VALUES = 1 << 23


def train_head(x: np.ndarray, y: np.ndarray, classes: list, *, multilabel: bool, opts: TrainOptions,
               device=None, meta: dict | None = None, init: Head | None = None,
               standardizer: tuple[np.ndarray, np.ndarray] | None = None) -> Head:
    """Train a head (or an ensemble); see :func:`_train_head`. Small CPU fits run on one thread."""
    with serial(device or torch.device("cpu"), enable=int(np.size(x)) <= SINGLE_THREAD_MAX_VALUES):
        return _train_head(x, y, classes, multilabel=multilabel, opts=opts, device=device, meta=meta, init=init,
                           standardizer=standardizer)


def _train_head(x: np.ndarray, y: np.ndarray, classes: list, *, multilabel: bool, opts: TrainOptions,
                device=None, meta: dict | None = None, init: Head | None = None,
                standardizer: tuple[np.ndarray, np.ndarray] | None = None) -> Head:
    """Train a head (or an ensemble) on embeddings ``x`` (n, d) and targets ``y``.

    ``y``: class indices (n,) for multi-class, multi-hot (n, C) for multi-label.
    ``init``: a head of the same shape to warm-start from (member k from ``init.nets[k]``).
    ``standardizer``: (mean, scale) of the pool for ``normalize="standardize"``
    (:func:`alq.model.standardize.pool_column_stats`); without it the labeled rows' own.
    ``opts.weight_decay=None``: the strength is chosen by k-fold cross-validation
    on the training rows (:mod:`alq.model.cv`), then every training row is fitted at it.
    Member 0 trains on every training row; with ``ensemble=K`` members
    1..K-1 differ by seed and, with ``bootstrap``, by a bootstrap resample
    of the training rows (a linear head's optimum is unique, so without
    bootstrap or dropout its members would coincide). Deterministic for a seed.
    """
    check_options(opts)
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) == 0:
        raise BadInputError("no labeled rows to train on", hint="import labels with `alq labels`")
    if len(classes) < 2:
        raise BadInputError(f"labels hold a single class ({classes[0]!r} only); a classifier needs >= 2"
                            if classes else "labels hold no classes")
    if not multilabel and len(np.unique(y)) < 2:
        raise BadInputError(f"labels hold a single class ({classes[int(y[0])]!r}); a classifier needs >= 2")
    if not np.isfinite(x).all():
        raise BadInputError("labeled embeddings contain NaN or Inf")
    device = device or torch.device("cpu")
    t0 = time.perf_counter()
    train_rows, held = holdout_split(y, opts.holdout, multilabel=multilabel, seed=opts.seed)
    xt_all = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    yt_all = torch.as_tensor(y, device=device)
    if multilabel:
        yt_all = yt_all.float()
    tr = torch.as_tensor(train_rows, device=device)
    xt, yt = xt_all[tr], yt_all[tr]
    x_val = y_val = None
    if len(held):
        hv = torch.as_tensor(held, device=device)
        x_val, y_val = xt_all[hv], yt_all[hv]
    w = None
    if opts.class_weighted:
        w = torch.as_tensor(class_weights(y[train_rows], len(classes), multilabel), device=device)
    stats, stats_source = None, None
    if opts.normalize == "standardize":
        stats_source = "pool" if standardizer is not None else "labeled rows"
        stats = standardizer if standardizer is not None else ColumnStats.of(x[train_rows]).standardizer()
    cv = cv_net = None
    cuda = [device] if torch.device(device).type == "cuda" else []
    if opts.weight_decay is None:
        with torch.random.fork_rng(devices=cuda):  # dropout in the fold fits: seeded, caller's RNG kept
            torch.manual_seed(opts.seed * 1_000_003 + 0xC5)
            wd, cv, cv_net = select_weight_decay(xt, yt, len(classes), multilabel=multilabel, opts=opts,
                                                 weights=w, stats=stats)
        fit_opts = replace(opts, weight_decay=wd)
    else:
        fit_opts = opts
    nets, fits = [], []
    for k in range(opts.ensemble):
        gen = torch.Generator().manual_seed(opts.seed * 1_000_003 + k)
        xs, ys = xt, yt
        if k > 0 and opts.bootstrap:
            idx = torch.randint(len(xt), (len(xt),), generator=gen).to(device)
            xs, ys = xt[idx], yt[idx]
        # warm start: the caller's head (simulate --head-mode update), else member 0 from the CV fit at the
        # chosen strength (same convex objective, far fewer iterations to its optimum)
        warm = init.nets[min(k, len(init.nets) - 1)] if init is not None else (cv_net if k == 0 else None)
        # nn.Dropout draws from torch's global RNG (seeded at random per process): seed it for this member
        # on the training device, and restore the caller's RNG state afterwards
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(opts.seed * 1_000_003 + k)
            net, fit = fit_net(xs, ys, len(classes), multilabel=multilabel, opts=fit_opts, generator=gen,
                               weights=w, x_val=x_val, y_val=y_val, init=warm, stats=stats)
        nets.append(net.cpu())
        fits.append(fit)
    first = fits[0]
    metrics = {"n_labeled": int(len(x)), "n_train": int(len(train_rows)), "n_holdout": int(len(held)),
               "classes": len(classes), "optimizer": first["optimizer"], "iterations": first["iterations"],
               "evaluations": first["evaluations"], "stopped": first["stopped"], "objective": first["objective"],
               "train_loss": first["train_loss"], "train_accuracy": first["train_accuracy"],
               "holdout_loss": first.get("holdout_loss"), "holdout_accuracy": first.get("holdout_accuracy"),
               "best_iteration": first.get("best_iteration"), "device": str(device),
               "weight_decay": float(fit_opts.weight_decay),
               "weight_decay_chosen_by": "cross-validation" if cv is not None and cv["folds"] else (
                   "fallback (too few labels for cross-validation)" if cv is not None else "given"),
               "c_equivalent": _c_equivalent(fit_opts, len(train_rows), len(classes), multilabel),
               "cv_folds": cv["folds"] if cv else None,
               "cv_repeats": cv.get("repeats") if cv else None,
               "cv_accuracy": cv.get("cv_accuracy") if cv else None,
               "cv_evaluations": cv.get("evaluations") if cv else None,
               "standardize_stats": stats_source,
               "seconds": round(time.perf_counter() - t0, 4)}
    if cv and cv.get("grid"):
        metrics["cv_grid"] = cv["grid"]
    if opts.ensemble > 1:
        metrics["members"] = [{k: f.get(k) for k in ("iterations", "stopped", "train_accuracy", "holdout_accuracy")}
                              for f in fits]
    head_meta = {"options": asdict(opts), "metrics": metrics, "alq_version": __version__, **(meta or {})}
    head = Head(nets=nets, classes=list(classes), multilabel=multilabel, meta=head_meta)
    head.meta.pop("fingerprint", None)
    head.meta["fingerprint"] = head.fingerprint
    return head


def _c_equivalent(opts: TrainOptions, n: int, n_classes: int, multilabel: bool) -> float | None:
    """scikit-learn's ``C`` for the same objective (linear heads; None for an MLP or no penalty)."""
    if opts.hidden or not opts.weight_decay:
        return None
    return sklearn_c(float(opts.weight_decay), n, n_classes, multilabel=multilabel)
