"""``alq dedup``: near-duplicate groups of a pool, for ``alq select --dedup``."""

from __future__ import annotations

import typer

from alq.cli._uris import Staged, path, where
from alq.cli.app import (
    ENGINE_OPTION,
    JSON_OPTION,
    QUIET_OPTION,
    RAY_ADDRESS_OPTION,
    RAY_GPUS_OPTION,
    app,
    emit,
    engine_options,
    log,
    progress_bar,
)


def dedup_cmd(
    pool: str = typer.Argument(..., parser=path, help="Pool directory (from `alq embed`)."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Dedup directory to write (replaced atomically)."),
    threshold: float | None = typer.Option(None, "--threshold", help="Rows at distance <= T are near duplicates "
                                           "(Euclidean; with --normalize l2, sqrt(2 - 2 cos)). 0: exact duplicates "
                                           "only. Example: --threshold 0.05"),
    auto: bool = typer.Option(False, "--auto", help="Choose the threshold from the pool's nearest-neighbour "
                              "distances (a sample of 10,000 rows): the valley below a separate near-duplicate "
                              "mode, else 0.1 x the median nearest-neighbour distance."),
    normalize: str | None = typer.Option(None, "--normalize", help="l2: unit-length rows first, so the distance is "
                                         "cosine-based (as `alq cluster --normalize l2`)."),
    clusters: str | None = typer.Option(None, "--clusters", parser=path, help="Reuse the faiss index and kNN graph "
                                        "that `alq cluster POOL --out DIR` saved (DIR.graph/, beside DIR), instead of building "
                                        "and searching again. Example: --clusters clusters/"),
    knn: int = typer.Option(10, "--knn", help="Neighbours searched per row first; a row whose last one is still "
                            "under the threshold is searched again with 4x more, so none is missed by this cap."),
    seed: int = typer.Option(0, "--seed", help="Seed of the index's training sample and the --auto sample."),
    recall: float = typer.Option(0.95, "--recall", help="Target recall@k of the faiss index (as `alq cluster`)."),
    index: str = typer.Option("auto", "--index", help="faiss index: auto (by measured cost and recall), flat "
                              "(exact), or ivf."),
    engine: str = ENGINE_OPTION,
    ray_address: str | None = RAY_ADDRESS_OPTION,
    ray_gpus_per_task: float = RAY_GPUS_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.cluster.api import effective_normalize
    from alq.dedup.groups import DedupOptions, compute_groups
    from alq.dedup.store import write_dedup
    from alq.engine import get_engine
    from alq.guard import Output, check_outputs
    from alq.store import open_pool
    from alq.store.debris import sole_writer

    pool, out, clusters = where(pool), where(out), where(clusters)
    check_outputs([Output(out, "dedup")], [("POOL", pool), ("--clusters", clusters)], overwrite=None)
    opts = DedupOptions(threshold=threshold, auto=auto, normalize=normalize, knn=knn, seed=seed, recall=recall,
                        index=index)
    opts.validate()
    p = open_pool(pool)
    eng = get_engine(engine, **engine_options(engine, ray_address, ray_gpus_per_task))

    def say(msg: str) -> None:
        log(msg, quiet=quiet and not msg.startswith("warning:"))  # warnings survive -q

    with Staged() as st:
        with sole_writer(out, what="`alq dedup`"), progress_bar(quiet=quiet) as progress:
            work = st.output(out, "dir")
            groups, info = compute_groups(p, opts, engine=eng, progress=progress, log=say,
                                          clusters=clusters)
            summary = write_dedup(p, work, groups, info, normalize_requested=normalize,
                                  normalize_applied=effective_normalize(p, normalize))
    short = {k: summary.get(k) for k in ("headline", "pool", "pool_rows", "threshold", "threshold_rule", "n_groups",
                                         "duplicate_groups", "rows_in_duplicate_groups", "rows_redundant",
                                         "largest_group", "edges", "auto", "seconds")
             if summary.get(k) is not None}
    short["index"] = {k: v for k, v in summary.get("index", {}).items()
                      if k in ("index", "nprobe", "recall_at_k", "reused", "k")}
    short["output"] = str(out)
    emit(short, as_json=as_json, quiet=quiet)


dedup_cmd.__doc__ = (
    "Group the pool's near duplicates: rows at distance <= --threshold (or --auto) share a group.\n\n"
    "A map over shards on the faiss index `alq cluster` builds (reused with --clusters when `alq cluster` "
    "already ran), then a union-find of the close pairs. Exact duplicates always group. Writes "
    "DIR/_dedup.parquet (summary, a no-row Parquet) and one Parquet of (id, group, representative, distance) per pool shard; "
    "`alq select --dedup DIR` then takes at most one row per group, and none from a group that already has a "
    "labeled or pending row.\n\n"
    "Example:\n\n"
    "  alq dedup pool/ --out dups/ --auto --json\n\n"
    "  alq cluster pool/ --out clusters/ && alq dedup pool/ --out dups/ --threshold 0.05 --clusters clusters/\n\n"
    "  alq select pool/ --head head.pt --strategy margin --budget 1000 --dedup dups/ --out batch.parquet\n\n"
    "With --engine ray the per-shard searches run as Ray tasks; the index build and the union-find run on the "
    "driver."
)
app.command("dedup")(dedup_cmd)
