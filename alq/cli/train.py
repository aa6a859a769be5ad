"""``alq train``: fit a head on the labeled rows of a pool."""

from __future__ import annotations

from pathlib import Path

import typer

from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit, log

DEFAULT_HIDDEN = 256


def train_cmd(
    pool: Path = typer.Argument(..., help="Pool directory (from `alq embed`)."),
    labels: Path = typer.Argument(..., help="Labels file (from `alq labels`): id, label."),
    out: Path = typer.Option(..., "--out", "-o", help="Head file to write (atomically)."),
    mlp: bool = typer.Option(False, "--mlp", help=f"One hidden ReLU layer (width --hidden, default {DEFAULT_HIDDEN})."),
    hidden: int | None = typer.Option(None, "--hidden", help="Hidden width (implies --mlp; 0 = linear)."),
    multilabel: str = typer.Option("auto", "--multilabel", help="auto (from the labels), yes (sigmoid) or no (softmax)."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="L2 penalty on the weights (not biases)."),
    class_weighted: bool = typer.Option(False, "--class-weighted", help="Weight the loss by inverse class frequency."),
    normalize: str = typer.Option("none", "--normalize", help="Input normalisation stored in the head: none, standardize or l2."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of labels held out for early stopping (0 = off)."),
    optimizer: str = typer.Option("auto", "--optimizer", help="auto (L-BFGS; Adam with --dropout), lbfgs or adam."),
    max_iter: int = typer.Option(500, "--max-iter", help="L-BFGS iteration cap."),
    epochs: int = typer.Option(200, "--epochs", help="Adam epoch cap."),
    lr: float = typer.Option(1e-2, "--lr", help="Adam peak learning rate (cosine schedule)."),
    ensemble: int = typer.Option(1, "--ensemble", help="Train K heads (for BALD); member 0 is used by other strategies."),
    bootstrap: bool = typer.Option(False, "--bootstrap", help="Ensemble members 2..K train on bootstrap resamples."),
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout before the last layer (MC dropout for BALD)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same inputs + seed = same head."),
    metrics: Path | None = typer.Option(None, "--metrics", help="Also write the training metrics as JSON here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --out/--metrics replace a file of another kind."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.device import torch_device
    from alq.errors import BadInputError
    from alq.guard import Output, check_outputs
    from alq.io import sha256_file, write_json
    from alq.model.train import TrainOptions, train_on_pool
    from alq.store import open_pool
    from alq.store.labels import read_labels

    check_outputs([Output(out, "head"), Output(metrics, "metrics", "--metrics")],
                  [("POOL", pool), ("LABELS", labels)], overwrite=overwrite)
    if normalize not in ("none", "standardize", "l2"):
        raise BadInputError(f"--normalize={normalize!r} must be none, standardize or l2")
    width = hidden if hidden is not None else (DEFAULT_HIDDEN if mlp else 0)
    opts = TrainOptions(hidden=width, dropout=dropout, weight_decay=weight_decay,
                        normalize=None if normalize == "none" else normalize, class_weighted=class_weighted,
                        max_iter=max_iter, seed=seed, ensemble=ensemble, bootstrap=bootstrap, optimizer=optimizer,
                        holdout=holdout, lr=lr, epochs=epochs)
    pool_obj = open_pool(pool)
    from alq.store.provenance import check_labels_pool

    check_labels_pool(labels, pool_obj, pool_path=pool)
    label_set = read_labels(labels)
    device = torch_device()
    log(f"training on {len(label_set)} labels ({device})", quiet=quiet or as_json)
    head = train_on_pool(pool_obj, label_set, opts, multilabel=multilabel, device=device, source=str(labels),
                         meta={"pool": str(pool), "labels": str(labels), "labels_sha256": sha256_file(labels)[:16]})
    head.save(out)
    summary = {"output": str(out), "fingerprint": head.fingerprint, "pool_fingerprint": pool_obj.fingerprint,
               "multilabel": head.multilabel, "hidden": width, "ensemble": len(head.nets),
               **head.meta["metrics"]}
    if metrics is not None:
        write_json(metrics, summary)
    emit(summary, as_json=as_json, quiet=quiet)


train_cmd.__doc__ = (
    "Train a head on the embeddings of the labeled rows.\n\n"
    "Linear (default) or one-hidden-layer MLP, softmax or sigmoid (multi-label, detected from the labels), "
    "trained to convergence (full-batch L-BFGS) with weight decay and early stopping on a held-out slice "
    "of the labels. The head file records its classes, input normalisation, the pool fingerprint and the "
    "training metrics; it loads without running pickled code.\n\n"
    "Example:\n\n"
    "  alq train pool/ labels.parquet --out head.pt --normalize standardize --json\n\n"
    "  alq train pool/ labels.parquet --out ens.pt --ensemble 5 --bootstrap --seed 1"
)
app.command("train")(train_cmd)
