"""``alq split``: one labeled pool -> an experiment pool and a held-out test set."""

from __future__ import annotations

import typer

from alq.cli._uris import URI_NOTE, Staged, path, where
from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit, progress_bar


def split_cmd(
    pool: str = typer.Argument(..., parser=path, help="Labeled pool directory (read only)."),
    labels: str = typer.Option(..., "--labels", parser=path, help="Labels of the pool's rows (the test set is drawn from them)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of the labeled rows held out for test "
                                        "(stratified by class)."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Folder to write: pool/, pool_labels.parquet, test/, "
                             "test_labels.parquet."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw: same inputs + seed = same split."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier split in --out."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.simulate.split import split_pool

    with Staged() as st, progress_bar(quiet=quiet) as progress:
        summary = split_pool(where(pool), st.input(where(labels), "labels file"), where(out),
                             fraction=test_fraction, seed=seed, overwrite=overwrite, progress=progress)
    emit(summary, as_json=as_json, quiet=quiet)


split_cmd.__doc__ = (
    "Split a labeled pool into an experiment pool and a test set from the same distribution.\n\n"
    "`alq simulate` scores each round's head on a test set; one from another encoder or another data set "
    "leaves every strategy at chance. This draws --test-fraction of the labeled rows (stratified by class; "
    "uniformly for multi-label), keeps their ids and metadata columns, and writes OUT/pool/, "
    "OUT/pool_labels.parquet, OUT/test/ and OUT/test_labels.parquet.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq split pool/ --labels all_labels.parquet --test-fraction 0.2 --out exp/\n\n"
    "  alq simulate --pool exp/pool --labels exp/pool_labels.parquet --test-pool exp/test "
    "--test-labels exp/test_labels.parquet --strategies random,margin --seed-size 100 --budget 100 "
    "--rounds 10 --out runs/exp1"
)
app.command("split")(split_cmd)
