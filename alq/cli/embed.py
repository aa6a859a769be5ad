"""``alq embed``: build or extend a pool store from vectors or raw inputs."""

from __future__ import annotations

import typer

from alq.cli._uris import path
from alq.cli.app import (
    ENGINE_OPTION,
    JSON_OPTION,
    QUIET_OPTION,
    RAY_ADDRESS_OPTION,
    RAY_GPUS_OPTION,
    app,
    emit,
    engine_options,
    progress_bar,
)
from alq.config import DEFAULT_SHARD_ROWS


def embed_cmd(
    inputs: list[str] = typer.Argument(..., parser=path, help="Input files or directories (local, s3:// or gs://): .npy, "
                                       ".npz, .parquet, or a pool."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Pool directory or s3:// / gs:// prefix to create (or "
                            "extend with --append)."),
    ids: list[str] = typer.Option([], "--ids", parser=path, help="Ids file (.npy, .parquet with `id`, or text/CSV one per "
                                   "line): once for all inputs in order, or once per input."),
    id_column: str | None = typer.Option(None, "--id-column", help="Id column (Parquet) or array (.npz); "
                                            "default `id` or `ids`, else the one column named `*_id` (e.g. "
                                            "image_id; several are refused), else ids are generated (0, 1, ...)."),
    vector_column: str | None = typer.Option(None, "--vector-column", help="Vector column (Parquet) or array "
                                                "(.npz); default `embedding`, `vector`... or the only list column."),
    encoder: str | None = typer.Option(None, "--encoder", parser=path, help="Encoder applied in batches to raw .npy/.npz "
                                           "inputs (CUDA when present): TorchScript, or a torch.export program (.pt2)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Encoder batch size."),
    shard_rows: int = typer.Option(DEFAULT_SHARD_ROWS, "--shard-rows", help="Rows per shard."),
    dtype: str = typer.Option("float16", "--dtype", metavar="float16|float32", help="Stored dtype: float16 or float32 (appends keep the pool's)."),
    normalize: str | None = typer.Option(None, "--normalize", metavar="l2", help="`l2`: store unit-length vectors "
                                         "(default: vectors stored as given)."),
    append: bool = typer.Option(False, "--append", help="Add new shards to an existing pool (ids stay unique)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing pool at --out."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="With --append: skip rows whose id and "
                                       "vector are already in the pool (a rerun of the same night); the same id "
                                       "with another vector is still an error."),
    keep_columns: str | None = typer.Option(None, "--keep-columns", help="Comma-separated input columns kept beside "
                                            "the ids in each shard (default: every plain scalar column, e.g. "
                                            "file_path, url; `none` keeps none)."),
    trust_encoder: bool = typer.Option(False, "--trust-encoder", help="Load a .pt2 encoder even if its archive "
                                       "carries pickles that are not plain tensors (they run code on load: only for "
                                       "files you made yourself)."),
    engine: str = ENGINE_OPTION,
    ray_address: str | None = RAY_ADDRESS_OPTION,
    ray_gpus: float = RAY_GPUS_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.embed import EmbedRequest, embed
    from alq.guard import Output, check_outputs

    check_outputs([Output(out, "pool")], [*(("INPUTS", p) for p in inputs), *(("--ids", p) for p in ids),
                  ("--encoder", encoder)], overwrite=overwrite)

    from alq.engine import get_engine

    eng = get_engine(engine, **engine_options(engine, ray_address, ray_gpus))
    req = EmbedRequest(inputs=list(inputs), out=out, ids=list(ids), id_column=id_column,
                       vector_column=vector_column, encoder=encoder, batch_size=batch_size, shard_rows=shard_rows,
                       dtype=dtype, normalize=normalize, append=append, overwrite=overwrite,
                       skip_existing=skip_existing, keep_columns=_columns_arg(keep_columns),
                       trust_encoder=trust_encoder)
    with progress_bar(quiet=quiet) as progress:
        summary = embed(req, progress=progress, engine=eng)
    emit(summary, as_json=as_json, quiet=quiet, render=_render)


def _columns_arg(value: str | None) -> list[str] | None:
    if value is None:
        return None
    if value.strip().lower() == "none":
        return []
    return [c.strip() for c in value.split(",") if c.strip()]


def _render(s: dict) -> None:
    verb = "appended to" if s["appended"] else "built"
    skipped = f" ({s['rows_skipped']} already there, skipped)" if s.get("rows_skipped") else ""
    typer.echo(f"{verb} pool {s['pool']}: {s['rows_added']} rows added{skipped}, {s['count']} rows x {s['dim']} "
               f"{s['dtype']} in {s['shards']} shards (ids {s['id_type']}"
               + (f", {s['normalize']}-normalised" if s["normalize"] else "")
               + f", fingerprint {s['fingerprint']}) in {s['seconds']:.2f}s"
               + (f"; keeps columns {', '.join(s['columns'])}" if s.get("columns") else ""))


embed_cmd.__doc__ = (
    "Build a pool from precomputed vectors or raw inputs, or --append new rows to one.\n\n"
    "Reads .npy (2-D), .npz (vectors + optional ids), Parquet (a list<float> or fixed_size_list vector column + "
    "an id column) and whole directories of them, streaming: memory stays bounded by ALQ_WORKING_MEMORY. "
    "Ids come from an id column, a separate --ids file, or are generated (0, 1, ... continuing the pool). "
    "NaN/Inf, ragged or mismatched dimensions, duplicate ids (within the input or against the pool), empty "
    "or truncated files are refused with one line naming the file and row; the pool is then left untouched.\n\n"
    "Example:\n\n"
    "  alq embed vectors/ --out pool/ --dtype float16 --normalize l2\n\n"
    "  alq embed today.parquet --id-column image_id --out pool/ --append --json\n\n"
    "  alq embed images.npy --ids names.txt --encoder encoder.pt --out pool/\n\n"
    "  alq embed s3://bkt/raw/ --encoder s3://bkt/encoder.pt --out s3://bkt/pool --engine ray "
    "--ray-gpus-per-task 1\n\n"
    "With --engine ray, Ray tasks read their slices of the inputs, encode them (on a GPU with "
    "--ray-gpus-per-task) and write whole shards; this process commits them in one manifest. Local paths "
    "must then be on a filesystem every worker sees.\n\n"
    "Encoders: a TorchScript module or a torch.export program (.pt2) runs its own graph on your inputs (that is "
    "what an encoder is), so use encoders you trust. No pickle runs on load: a .pt2 whose archive carries "
    "pickles that are not plain tensors is refused unless --trust-encoder."
)
app.command("embed")(embed_cmd)
