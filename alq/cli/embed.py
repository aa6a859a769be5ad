"""``alq embed``: build or extend a pool store from vectors or raw inputs."""

from __future__ import annotations

from pathlib import Path

import typer

from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit, progress_bar
from alq.config import DEFAULT_SHARD_ROWS
from alq.errors import BadInputError, MissingFeatureError


def embed_cmd(
    inputs: list[Path] = typer.Argument(..., help="Input files or directories: .npy, .npz, .parquet, or a pool."),
    out: Path = typer.Option(..., "--out", "-o", help="Pool directory to create (or extend with --append)."),
    ids: list[Path] = typer.Option([], "--ids", help="Ids file (.npy, .parquet with `id`, or text/CSV one per "
                                   "line): once for all inputs in order, or once per input."),
    id_column: str | None = typer.Option(None, "--id-column", help="Id column (Parquet) or array (.npz); "
                                            "default `id` if present, else ids are generated."),
    vector_column: str | None = typer.Option(None, "--vector-column", help="Vector column (Parquet) or array "
                                                "(.npz); default `embedding`, `vector`... or the only list column."),
    encoder: Path | None = typer.Option(None, "--encoder", help="Encoder applied in batches to raw .npy/.npz "
                                           "inputs (CUDA when present): TorchScript, or a torch.export program (.pt2)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Encoder batch size."),
    shard_rows: int = typer.Option(DEFAULT_SHARD_ROWS, "--shard-rows", help="Rows per shard."),
    dtype: str = typer.Option("float16", "--dtype", help="Stored dtype: float16 or float32 (appends keep the pool's)."),
    normalize: str | None = typer.Option(None, "--normalize", help="`l2`: store unit-length vectors."),
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
    engine: str = typer.Option("local", "--engine", help="local. (ray is not available for embed yet: see README, "
                               "Scale-out.)"),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.embed import EmbedRequest, embed
    from alq.guard import Output, check_outputs

    check_outputs([Output(out, "pool")], [*(("INPUTS", p) for p in inputs), *(("--ids", p) for p in ids),
                  ("--encoder", encoder)], overwrite=overwrite)

    if engine == "ray":
        raise MissingFeatureError(
            "alq embed --engine ray is not there yet: encoding runs on this machine (on its GPU when present)",
            hint="score, cluster and select take --engine ray; to spread encoding, run `alq embed --encoder` on "
                 "separate machines into separate pools and join them with `alq embed partA/ partB/ --out pool/`")
    if engine != "local":
        raise BadInputError(f"--engine {engine!r} is not known; choose from: local, ray")
    req = EmbedRequest(inputs=list(inputs), out=out, ids=list(ids), id_column=id_column,
                       vector_column=vector_column, encoder=encoder, batch_size=batch_size, shard_rows=shard_rows,
                       dtype=dtype, normalize=normalize, append=append, overwrite=overwrite,
                       skip_existing=skip_existing, keep_columns=_columns_arg(keep_columns),
                       trust_encoder=trust_encoder)
    with progress_bar(quiet=quiet) as progress:
        summary = embed(req, progress=progress)
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
    "Encoders: a TorchScript module or a torch.export program (.pt2) runs its own graph on your inputs (that is "
    "what an encoder is), so use encoders you trust. No pickle runs on load: a .pt2 whose archive carries "
    "pickles that are not plain tensors is refused unless --trust-encoder."
)
app.command("embed")(embed_cmd)
