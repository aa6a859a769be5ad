"""``alq transform``: derive an experiment pool (imbalanced, redundant, capped) from a labeled one."""

from __future__ import annotations

import typer

from alq.cli._uris import URI_NOTE, Staged, path, where
from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit, progress_bar


def transform_cmd(
    pool: str = typer.Argument(..., parser=path, help="Input pool directory (read only)."),
    labels: str = typer.Option(..., "--labels", parser=path, help="Labels of every input pool row."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="New pool directory to write."),
    labels_out: str = typer.Option(..., "--labels-out", parser=path, help="New labels file to write (id, label, source_id)."),
    per_class_cap: int | None = typer.Option(None, "--per-class-cap", help="Keep at most N random rows per class."),
    imbalance_ratio: float | None = typer.Option(None, "--imbalance-ratio", help="Exponential class-size decay "
                                                    "to a largest/smallest class ratio of R."),
    max_class_size: int | None = typer.Option(None, "--max-class-size", help="Size of the largest class with "
                                                 "--imbalance-ratio (default: the largest every class can supply)."),
    class_order: str = typer.Option("sorted", "--class-order", metavar="sorted|random|size", help="Which classes stay large with "
                                    "--imbalance-ratio: sorted (first class largest), random, or size (current sizes)."),
    redundancy: int | None = typer.Option(None, "--redundancy", help="K: a fixed stratified subset appears K "
                                             "times (original + K-1 copies); the pool keeps about its size."),
    unique_rows: int | None = typer.Option(None, "--unique-rows", help="With --redundancy: rows kept exactly "
                                              "once (default 10% of the rows)."),
    noise: float = typer.Option(0.0, "--noise", help="With --redundancy: Gaussian noise on copies, std = NOISE x "
                                "the pool's per-coordinate std (0 = exact duplicates)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random row choices and noise."),
    shard_rows: int | None = typer.Option(None, "--shard-rows", help="Rows per output shard (default: the input's)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out and --labels-out if they exist."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.guard import Output, check_outputs
    from alq.simulate.transforms import TransformSpec, transform_pool

    pool, labels, out, labels_out = where(pool), where(labels), where(out), where(labels_out)
    check_outputs([Output(out, "pool"), Output(labels_out, "labels", "--labels-out")],
                  [("POOL", pool), ("--labels", labels)], overwrite=overwrite)

    spec = TransformSpec(per_class_cap=per_class_cap, imbalance_ratio=imbalance_ratio, max_class_size=max_class_size,
                         class_order=class_order, redundancy=redundancy, unique_rows=unique_rows, noise=noise,
                         seed=seed)
    with Staged() as st, progress_bar(quiet=quiet) as progress:
        summary = transform_pool(pool, st.input(labels, "labels file"), out, st.output(labels_out, "file", resume=True), spec,
                                 shard_rows=shard_rows, overwrite=overwrite, progress=progress)
    summary["output"] = str(out)  # the output-path key every command shares
    emit(summary, as_json=as_json, quiet=quiet)


transform_cmd.__doc__ = (
    "Write a new pool + labels for an experiment: per-class caps, class imbalance, redundancy.\n\n"
    "Applied in that order when combined. --per-class-cap N keeps at most N random rows per class (DISTIL P6). "
    "--imbalance-ratio R makes class sizes decay exponentially, round(M R^(-j/(C-1))) for the class of rank j "
    "(BASE setting B). --redundancy K keeps --unique-rows rows once and a disjoint class-stratified set K times "
    "each (DISTIL P5), optionally with --noise on the copies. The input is never modified; copies get new ids "
    "and the labels file's source_id column says which row each came from. Transform only the pool, not the "
    "test set.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq transform pool/ --labels pool_labels.parquet --imbalance-ratio 10 --out pool_lt/ "
    "--labels-out pool_lt_labels.parquet --json"
)
app.command("transform")(transform_cmd)
