"""``alq cluster``: average-linkage HAC of a pool, once per pool, reused every round."""

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
    log,
    progress_bar,
)


def cluster_cmd(
    pool: str = typer.Argument(..., parser=path, help="Pool directory (from `alq embed`)."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Cluster directory to write (replaced atomically)."),
    threshold: float | None = typer.Option(None, "--threshold", help="Cut where the average-linkage distance "
                                              "exceeds EPS. Default: the median distance from a row to its "
                                              "10th nearest neighbour (scale-free)."),
    n_clusters: int | None = typer.Option(None, "--n-clusters", help="Cut into K clusters instead of --threshold."),
    normalize: str | None = typer.Option(None, "--normalize", help="l2: unit-length rows first, so the "
                                            "distance is cosine-based (sqrt(2 - 2 cos))."),
    method: str = typer.Option("auto", "--method", help="exact (N x N matrix; auto up to 20,000 rows), graph "
                               "(kNN graph with faiss; auto above), or auto."),
    knn: int = typer.Option(10, "--knn", help="Neighbours per row in the kNN graph (graph method)."),
    update: bool = typer.Option(False, "--update", help="Only give rows appended since (`alq embed --append`) "
                                "the cluster of their nearest clustered neighbour; clusters from scratch if "
                                "--out holds none yet."),
    seed: int = typer.Option(0, "--seed", help="Seed for the kNN index's training sample and recall sample."),
    recall: float = typer.Option(0.95, "--recall", help="Target recall@k of the kNN graph, measured on 1,000 "
                                 "sampled rows against exact search; the cheapest index reaching it is used "
                                 "(IVF, or exact search when that is cheaper). A one-line warning says when "
                                 "no affordable index reached it."),
    index: str = typer.Option("auto", "--index", help="kNN index: auto (chosen by measured cost and recall), "
                              "flat (exact search), or ivf (inverted file, nprobe tuned to --recall)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run: reuse its saved index and the "
                                "kNN shards it finished (kept beside --out until the run completes); the "
                                "clusters are the same as an uninterrupted run's."),
    batch: list[int] = typer.Option([], "--batch", help="Report how many clusters a cluster-margin batch of this "
                                    "size would spread over (repeatable; default 100, 1,000, 10,000, 100,000 "
                                    "up to the pool size)."),
    engine: str = ENGINE_OPTION,
    ray_address: str | None = RAY_ADDRESS_OPTION,
    ray_gpus_per_task: float = RAY_GPUS_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.cluster.api import ClusterOptions, cluster_pool
    from alq.cluster.store import is_cluster_dir
    from alq.cluster.update import update_clusters
    from alq.guard import Output, check_outputs
    from alq.store import open_pool

    pool, out = where(pool), where(out)
    check_outputs([Output(out, "clusters")], [("POOL", pool)], overwrite=None)
    opts = ClusterOptions(threshold=threshold, n_clusters=n_clusters, normalize=normalize, method=method,
                          knn=knn, seed=seed, recall=recall, index=index)
    opts.validate()
    p = open_pool(pool)
    from alq.engine import get_engine

    eng = get_engine(engine, **engine_options(engine, ray_address, ray_gpus_per_task))

    def say(msg: str) -> None:
        log(msg, quiet=quiet and not msg.startswith("warning:"))  # warnings survive -q

    from alq.store.debris import sole_writer

    with Staged() as st:
        with sole_writer(out, what="`alq cluster`"), progress_bar(quiet=quiet) as progress:
            work = st.output(out, "dir", resume=update)  # --update reads the clusters it extends
            if update and is_cluster_dir(work):
                if threshold is not None or n_clusters is not None or method != "auto" or normalize is not None:
                    say("note: --update keeps the existing clustering; --threshold/--n-clusters/--method/"
                        "--normalize apply only to a full run (without --update)")
                summary = update_clusters(p, work, engine=eng, progress=progress, log=say)
                if summary["rows_updated"] == 0:
                    say(f"{out}: clusters already cover all {p.count} pool rows; nothing to update")
            else:
                if update:
                    say(f"{out}: no clustering yet; clustering the whole pool")
                summary = cluster_pool(p, work, opts, engine=eng, progress=progress, log=say, resume=resume)
                summary["rows_updated"] = 0
        from alq.cluster.linkage import batch_spread
        from alq.cluster.store import load_clusters

        sizes = list(batch) or [b for b in (100, 1_000, 10_000, 100_000) if b <= p.count]
        summary["batch_spread"] = batch_spread(load_clusters(work, p), sizes)
    short = {k: summary.get(k) for k in ("headline", "pool", "pool_rows", "method", "n_clusters", "threshold", "cut", "sizes",
                                         "rows_clustered", "rows_assigned_by_update", "rows_updated", "note", "batch_spread",
                                         "graph", "seconds") if summary.get(k) is not None}
    short["output"] = str(out)
    emit(short, as_json=as_json, quiet=quiet)


cluster_cmd.__doc__ = (
    "Cluster the pool's embeddings by average-linkage HAC (for --strategy cluster-margin).\n\n"
    "Run once per pool; the clusters are reused every round. Up to 20,000 rows the exact algorithm runs "
    "(NN-chain on the full distance matrix); above, average linkage runs on a k-nearest-neighbour graph built "
    "with faiss (GPU when present). Writes DIR/_clusters.parquet (summary) and one Parquet of (id, cluster) per pool "
    "shard. After `alq embed --append`, --update assigns the new rows without re-clustering; "
    "`alq select` refuses stale clusters and says which command to run.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq cluster pool/ --out clusters/ --json\n\n"
    "  alq embed more.npy --out pool/ --append && alq cluster pool/ --out clusters/ --update\n\n"
    "  timeout 3600 alq cluster pool/ --out clusters/ || alq cluster pool/ --out clusters/ --resume\n\n"
    "With --engine ray the kNN-graph searches and --update assignments run as Ray tasks over shards; "
    "the index build and the HAC merge run on the driver."
)
app.command("cluster")(cluster_cmd)
