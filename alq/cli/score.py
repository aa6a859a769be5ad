"""``alq score``: stream the pool through a head once, per-shard scores on disk."""

from __future__ import annotations

import typer

from alq.cli._uris import URI_NOTE, Staged, path, where
from alq.cli.app import (
    ENGINE_OPTION,
    JSON_OPTION,
    QUIET_OPTION,
    RAY_ADDRESS_OPTION,
    RAY_GPUS_OPTION,
    app,
    emit,
    engine_options,
)


def score_cmd(
    pool: str = typer.Argument(..., parser=path, help="Pool directory (from `alq embed`)."),
    head: str = typer.Option(..., "--head", parser=path, help="Head file from `alq train`."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Scores directory to write (replaced atomically)."),
    top_k: int = typer.Option(5, "--top-k", help="How many top classes and probabilities to keep per row."),
    aggregate: str | None = typer.Option(None, "--aggregate", metavar="min|mean", help="Multi-label margin aggregate: min (default) or mean."),
    engine: str = ENGINE_OPTION,
    ray_address: str | None = RAY_ADDRESS_OPTION,
    ray_gpus_per_task: float = RAY_GPUS_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.device import torch_device
    from alq.engine import get_engine
    from alq.guard import Output, check_outputs
    from alq.model.head import load_head
    from alq.scoring.store import write_scores
    from alq.store import open_pool

    pool, head, out = where(pool), where(head), where(out)
    check_outputs([Output(out, "scores")], [("POOL", pool), ("--head", head)], overwrite=None)
    pool_obj = open_pool(pool)
    from alq.store.debris import sole_writer

    with Staged() as st:
        head_obj = load_head(st.input(head, "head file"))
        head_obj.check_pool(pool_obj, path=str(head))
        # with Ray, each worker picks its own device (CUDA on GPU workers)
        with sole_writer(out, what="`alq score`"):
            # scores on object storage are written in place (each task its shards, then the pointer)
            summary = write_scores(pool_obj, head_obj, out, top_k=top_k, aggregate=aggregate,
                                   engine=get_engine(engine, **engine_options(engine, ray_address, ray_gpus_per_task)),
                                   device=None if engine == "ray" else torch_device(), pool_path=str(pool))
    summary["head"] = str(head)
    emit(summary, as_json=as_json, quiet=quiet)


score_cmd.__doc__ = (
    "Score every pool row with a head: predicted class, top-k classes and probabilities, margin, "
    "entropy and least-confidence, one Parquet per pool shard.\n\n"
    "`alq select --scores DIR` reuses the file while pool and head are unchanged (fingerprints match) "
    "and recomputes from the head when they are not.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq score pool/ --head head.pt --out scores/ --json\n\n"
    "  alq score pool/ --head head.pt --out scores/ --engine ray --ray-address auto\n\n"
    "  alq select pool/ --head head.pt --scores scores/ --labels labels.parquet --strategy margin --budget 1000 --out batch.parquet"
)
app.command("score")(score_cmd)
