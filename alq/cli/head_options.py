"""The head's training options, shared by ``alq train`` and ``alq simulate`` (same names, same defaults).

A simulation is only worth its numbers if its head is the one a user gets from
``alq train``: both commands take every training option, with one default.
"""

from __future__ import annotations

import math

import typer

DEFAULT_HIDDEN = 256

MLP = typer.Option(False, "--mlp", help=f"One hidden ReLU layer (width --hidden, default {DEFAULT_HIDDEN}).")
HIDDEN = typer.Option(None, "--hidden", help="Hidden width (implies --mlp; 0 = linear).")
WEIGHT_DECAY = typer.Option("auto", "--weight-decay", metavar="auto|FLOAT",
                            help="L2 penalty on the weights (not biases): auto = chosen by k-fold cross-validation "
                                 "on the labels, then refitted on all of them; or a fixed number.")
CV_FOLDS = typer.Option(5, "--cv-folds", help="Folds for --weight-decay auto.")
NORMALIZE = typer.Option("standardize", "--normalize", metavar="standardize|l2|none",
                         help="Input normalisation stored in the head: standardize (mean/std of the whole pool, "
                              "one streamed pass), l2 or none.")
HOLDOUT = typer.Option(0.0, "--holdout", help="Fraction of labels held out for early stopping (0 = off: every "
                                              "label trains).")
OPTIMIZER = typer.Option("auto", "--optimizer", metavar="auto|lbfgs|adam", help="auto (L-BFGS; Adam with --dropout), lbfgs or adam.")
MAX_ITER = typer.Option(500, "--max-iter", help="L-BFGS iteration cap.")
EPOCHS = typer.Option(200, "--epochs", help="Adam epoch cap.")
LR = typer.Option(1e-2, "--lr", help="Adam peak learning rate (cosine schedule).")
ENSEMBLE = typer.Option(1, "--ensemble", help="Train K heads (for BALD); member 0 is used by other strategies.")
BOOTSTRAP = typer.Option(False, "--bootstrap", help="Ensemble members 2..K train on bootstrap resamples.")
DROPOUT = typer.Option(0.0, "--dropout", help="Dropout before the last layer (MC dropout for BALD).")
CLASS_WEIGHTED = typer.Option(False, "--class-weighted", help="Weight the loss by inverse class frequency.")


def parse_weight_decay(value: str) -> float | None:
    """``auto`` -> None (cross-validated); otherwise a finite number >= 0."""
    from alq.errors import BadInputError

    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        wd = float(text)
    except ValueError:
        raise BadInputError(f"--weight-decay={value!r} must be 'auto' or a number >= 0") from None
    if not (math.isfinite(wd) and wd >= 0):
        raise BadInputError(f"--weight-decay={value!r} must be 'auto' or a finite number >= 0")
    return wd


def build_train_options(*, mlp: bool, hidden: int | None, weight_decay: str, cv_folds: int, normalize: str,
                        holdout: float, optimizer: str, max_iter: int, epochs: int, lr: float, ensemble: int,
                        bootstrap: bool, dropout: float, class_weighted: bool, seed: int = 0):
    """TrainOptions from the command-line values, validated (one clear line on a bad value)."""
    from alq.errors import BadInputError
    from alq.model.options import TrainOptions, check_options

    norm = str(normalize).strip().lower()
    if norm not in ("none", "standardize", "l2"):
        raise BadInputError(f"--normalize={normalize!r} must be standardize, l2 or none")
    if not (math.isfinite(lr) and lr > 0):  # checked even when L-BFGS ignores it: a typo must not pass silently
        raise BadInputError(f"--lr={lr} must be a finite number > 0")
    width = hidden if hidden is not None else (DEFAULT_HIDDEN if mlp else 0)
    opts = TrainOptions(hidden=width, dropout=dropout, weight_decay=parse_weight_decay(weight_decay),
                        cv_folds=cv_folds, normalize=None if norm == "none" else norm, class_weighted=class_weighted,
                        max_iter=max_iter, seed=seed, ensemble=ensemble, bootstrap=bootstrap, optimizer=optimizer,
                        holdout=holdout, lr=lr, epochs=epochs)
    check_options(opts)
    return opts
