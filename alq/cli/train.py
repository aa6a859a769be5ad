"""``alq train``: fit a head on the labeled rows of a pool."""

from __future__ import annotations

import typer

from alq.cli import head_options as ho
from alq.cli._uris import URI_NOTE, Staged, path, where
from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit, log


def train_cmd(
    pool: str = typer.Argument(..., parser=path, help="Pool directory (from `alq embed`)."),
    labels: str = typer.Argument(..., parser=path, help="Labels file (from `alq labels`): id, label."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Head file to write (atomically)."),
    mlp: bool = ho.MLP,
    hidden: int | None = ho.HIDDEN,
    multilabel: str = typer.Option("auto", "--multilabel", metavar="auto|yes|no", help="auto (from the labels), yes (sigmoid) or no (softmax)."),
    weight_decay: str = ho.WEIGHT_DECAY,
    cv_folds: int = ho.CV_FOLDS,
    class_weighted: bool = ho.CLASS_WEIGHTED,
    normalize: str = ho.NORMALIZE,
    holdout: float = ho.HOLDOUT,
    optimizer: str = ho.OPTIMIZER,
    max_iter: int = ho.MAX_ITER,
    epochs: int = ho.EPOCHS,
    lr: float = ho.LR,
    ensemble: int = ho.ENSEMBLE,
    bootstrap: bool = ho.BOOTSTRAP,
    dropout: float = ho.DROPOUT,
    seed: int = typer.Option(0, "--seed", help="Random seed: same inputs + seed = same head."),
    previous: str | None = typer.Option(None, "--previous", parser=path, help="The previous round's head of the same "
                                        "pool: report the stopping signal against it (kappa of the two heads' "
                                        "predictions on its stop set), e.g. --previous heads/yesterday.pt."),
    stop_set_size: int = typer.Option(2000, "--stop-set-size", help="Unlabeled rows drawn (seeded by --seed) as "
                                      "the stop set when --previous has none; kept in the head for the next round, e.g. "
                                      "--stop-set-size 5000."),
    stop_kappa: float = typer.Option(0.99, "--stop-kappa", help="Stop when kappa >= this for --stop-rounds rounds "
                                     "in a row (Bloodgood & Vijay-Shanker 2009), e.g. --stop-kappa 0.995."),
    stop_rounds: int = typer.Option(2, "--stop-rounds", help="Consecutive rounds kappa must hold, e.g. --stop-rounds 3."),
    metrics: str | None = typer.Option(None, "--metrics", parser=path, help="Also write the training metrics as JSON here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --out/--metrics replace a file of another kind."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.device import torch_device
    from alq.guard import Output, check_outputs
    from alq.io import sha256_file, write_json
    from alq.store import open_pool
    from alq.store.labels import read_labels
    from alq.train import train_on_pool

    pool, labels, out, metrics, previous = where(pool), where(labels), where(out), where(metrics), where(previous)
    check_outputs([Output(out, "head"), Output(metrics, "metrics", "--metrics")],
                  [("POOL", pool), ("LABELS", labels), ("--previous", previous)], overwrite=overwrite)
    opts = ho.build_train_options(mlp=mlp, hidden=hidden, weight_decay=weight_decay, cv_folds=cv_folds,
                                  normalize=normalize, holdout=holdout, optimizer=optimizer, max_iter=max_iter,
                                  epochs=epochs, lr=lr, ensemble=ensemble, bootstrap=bootstrap, dropout=dropout,
                                  class_weighted=class_weighted, seed=seed)
    width = opts.hidden
    pool_obj = open_pool(pool)
    from alq.store.provenance import check_labels_pool

    with Staged() as st:
        local_labels = st.input(labels, "labels file")
        check_labels_pool(local_labels, pool_obj, pool_path=pool)
        label_set = read_labels(local_labels)
        prev = None
        if previous is not None:  # checked before the (long) fit
            from alq.model.head import load_head

            prev = load_head(st.input(previous, "--previous head"))
            prev.check_pool(pool_obj, path=str(previous))
        device = torch_device()
        log(f"training on {len(label_set)} labels ({device})", quiet=quiet or as_json)
        head = train_on_pool(pool_obj, label_set, opts, multilabel=multilabel, device=device, source=str(labels),
                             meta={"pool": str(pool), "labels": str(labels),
                                   "labels_sha256": sha256_file(local_labels)[:16]})
        from alq.stopping import train_signal  # the stopping signal (stop set kept in the head's metadata)

        stopping = train_signal(pool_obj, head, label_set.resolve(pool_obj, source=str(labels)), previous=prev,
                                previous_path=previous, size=stop_set_size, seed=seed, threshold=stop_kappa,
                                rounds=stop_rounds)
        head.save(st.output(out, "file"))
        summary = {"output": str(out), "fingerprint": head.fingerprint, "pool_fingerprint": pool_obj.fingerprint,
                   "multilabel": head.multilabel, "hidden": width, "ensemble": len(head.nets),
                   **head.meta["metrics"], "stopping": stopping}
        if metrics is not None:
            write_json(st.output(metrics, "file"), summary)
    emit(summary, as_json=as_json, quiet=quiet, render=_render)


def _render(s: dict) -> None:
    from alq.cli._render import key_values
    from alq.stopping import signal_line

    key_values({k: v for k, v in s.items() if k != "stopping"})
    typer.echo(signal_line(s["stopping"]))


train_cmd.__doc__ = (
    "Train a head on the embeddings of the labeled rows.\n\n"
    "Linear (default) or one-hidden-layer MLP, softmax or sigmoid (multi-label, detected from the labels), "
    "on inputs standardised with the whole pool's statistics, trained to convergence (full-batch L-BFGS) with "
    "an L2 strength chosen by 5-fold cross-validation on the labels (like scikit-learn's LogisticRegressionCV), "
    "then refitted on every label. --json reports the chosen strength (weight_decay) and the cross-validated "
    "accuracy (cv_accuracy). The head file records its classes, input normalisation, the pool fingerprint and "
    "the training metrics; it loads without running pickled code.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq train pool/ labels.parquet --out head.pt --json\n\n"
    "  alq train pool/ labels.parquet --out head.pt --weight-decay 1e-4 --holdout 0.1   # fixed strength, early stopping\n\n"
    "  alq train pool/ labels.parquet --out ens.pt --ensemble 5 --bootstrap --seed 1\n\n"
    "Stopping signal (stabilizing predictions, Bloodgood & Vijay-Shanker 2009): every head keeps a fixed, seeded "
    "stop set of unlabeled rows; with --previous (last round's head) --json's `stopping` gives kappa (agreement of "
    "the two heads' predictions on it), the mean margin there, the CV accuracy and its trend, and stop=true once "
    "kappa >= --stop-kappa for --stop-rounds rounds in a row:\n\n"
    "  alq train pool/ labels.parquet --out head.pt --previous head_prev.pt --json | jq .stopping.stop"
)
app.command("train")(train_cmd)
