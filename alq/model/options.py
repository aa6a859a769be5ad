"""The options of head training (``alq train``, ``alq simulate``), checked at the edge.

:class:`TrainOptions` holds every knob of :func:`alq.model.train.train_head`;
:func:`check_options` refuses bad values with the flag's name;
:func:`resolve_optimizer` turns ``auto`` into the optimiser a head gets
(:mod:`alq.model.fit` explains the choice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from alq.errors import BadInputError

OPTIMIZERS = ("auto", "lbfgs", "adam")


@dataclass
class TrainOptions:
    hidden: int = 0  # 0 = linear head
    dropout: float = 0.0
    weight_decay: float | None = None  # None = chosen by k-fold cross-validation (alq.model.cv)
    normalize: str | None = "standardize"  # None | "standardize" (pool statistics) | "l2"
    class_weighted: bool = False
    max_iter: int = 500  # L-BFGS iterations (Adam: see epochs)
    tol: float = 1e-4  # L-BFGS: max |gradient| of the mean objective at convergence (scikit-learn's default)
    seed: int = 0
    ensemble: int = 1
    bootstrap: bool = False
    optimizer: str = "auto"  # auto | lbfgs | adam
    holdout: float = 0.0  # fraction of labels held out for early stopping (0 = off: every label trains)
    cv_folds: int = 5  # folds for choosing weight_decay when it is None
    patience: int = 5  # holdout checks without improvement before stopping
    eval_every: int = 10  # L-BFGS iterations between holdout checks
    lr: float = 1e-2  # Adam peak learning rate (cosine decay to 0)
    epochs: int = 200  # Adam epochs
    batch_size: int = 256  # Adam minibatch rows


def resolve_optimizer(opts: TrainOptions) -> str:
    if opts.optimizer not in OPTIMIZERS:
        raise BadInputError(f"--optimizer={opts.optimizer!r} must be one of {', '.join(OPTIMIZERS)}")
    if opts.optimizer == "auto":
        return "adam" if opts.dropout > 0 else "lbfgs"
    if opts.optimizer == "lbfgs" and opts.dropout > 0:
        raise BadInputError("--optimizer lbfgs cannot train with --dropout (its line search needs a "
                            "deterministic objective)", hint="use --optimizer adam or auto")
    return opts.optimizer


def check_options(opts: TrainOptions) -> None:
    if opts.hidden < 0:
        raise BadInputError(f"--hidden={opts.hidden} must be >= 0")
    if not 0.0 <= opts.dropout < 1.0:
        raise BadInputError(f"--dropout={opts.dropout} must be in [0, 1)")
    if opts.weight_decay is not None and not (math.isfinite(opts.weight_decay) and opts.weight_decay >= 0):
        raise BadInputError(f"--weight-decay={opts.weight_decay} must be 'auto' or a finite number >= 0")
    if opts.cv_folds < 2:
        raise BadInputError(f"--cv-folds={opts.cv_folds} must be >= 2")
    if not 0.0 <= opts.holdout < 0.9:
        raise BadInputError(f"--holdout={opts.holdout} must be in [0, 0.9)")
    if opts.ensemble < 1:
        raise BadInputError(f"--ensemble={opts.ensemble} must be >= 1")
    if opts.max_iter < 1 or opts.epochs < 1 or opts.patience < 1 or opts.eval_every < 1 or opts.batch_size < 1:
        raise BadInputError("--max-iter, epochs, patience, eval_every and batch_size must be >= 1")
    resolve_optimizer(opts)
