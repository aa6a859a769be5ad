"""``alq synth``: write a synthetic Gaussian-mixture pool (and its true labels) at any scale."""

from __future__ import annotations

import typer

from alq.cli._uris import URI_NOTE, Staged, path, where
from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit, progress_bar
from alq.config import DEFAULT_SHARD_ROWS


def synth_cmd(
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Pool directory to write."),
    n: int = typer.Option(..., "-n", "--rows", help="Number of rows."),
    dim: int = typer.Option(..., "-d", "--dim", help="Embedding dimension."),
    classes: int = typer.Option(10, "-c", "--classes", help="Number of classes."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same spec + seed = same bytes."),
    imbalance_ratio: float = typer.Option(1.0, "--imbalance-ratio", help="Largest / smallest class prior "
                                          "(geometric in between; 1 = balanced)."),
    redundancy: int = typer.Option(1, "--redundancy", help="Copies of every distinct point (1 = no duplicates)."),
    separation: float = typer.Option(4.0, "--separation", help="Distance between component centres, in noise "
                                     "standard deviations."),
    modes: int = typer.Option(1, "--modes", help="Gaussian components per class."),
    labels_out: str | None = typer.Option(None, "--labels-out", parser=path, help="Write every row's true label here "
                                              "(labels Parquet, for `alq simulate`)."),
    shard_rows: int = typer.Option(DEFAULT_SHARD_ROWS, "--shard-rows", help="Rows per shard."),
    dtype: str = typer.Option("float16", "--dtype", metavar="float16|float32", help="float16 or float32."),
    id_prefix: str | None = typer.Option(None, "--id-prefix", help="String ids PREFIX0, PREFIX1... "
                                            "(default: integer ids 0..n-1)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing pool at --out."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.guard import Output, check_outputs
    from alq.synth import SynthSpec, synth_pool

    out, labels_out = where(out), where(labels_out)
    check_outputs([Output(out, "pool"), Output(labels_out, "labels", "--labels-out")], overwrite=overwrite)

    spec = SynthSpec(n=n, dim=dim, classes=classes, seed=seed, imbalance_ratio=imbalance_ratio,
                     redundancy=redundancy, separation=separation, modes=modes)
    with Staged() as st, progress_bar(quiet=quiet) as progress:
        summary = synth_pool(spec, out, labels_out=st.output(labels_out, "file"), shard_rows=shard_rows,
                             dtype=dtype, id_prefix=id_prefix, overwrite=overwrite, progress=progress)
    summary["output"] = str(out)  # the output-path key every command shares
    emit(summary, as_json=as_json, quiet=quiet)


synth_cmd.__doc__ = (
    "Write a synthetic pool: a Gaussian mixture with C classes, imbalance and duplicated rows.\n\n"
    "Written shard by shard (never whole in memory), so it scales to any N the disk holds; deterministic for "
    "a given spec and --seed. Use it to try alq at scale or to benchmark strategies against known labels.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq synth --out big/ -n 1000000 -d 256 -c 100 --imbalance-ratio 10 --redundancy 3 "
    "--labels-out big_labels.parquet --seed 0"
)
app.command("synth")(synth_cmd)
