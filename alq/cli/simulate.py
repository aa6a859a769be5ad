"""``alq simulate``: replay active learning on a fully labeled pool (oracle experiment)."""

from __future__ import annotations

import typer

from alq.cli import head_options as ho
from alq.cli._strategies import catalog, check_strategy_options
from alq.cli._uris import URI_NOTE, Staged, path, where
from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit, log, parse_options, progress_bar


def split_names(values: list[str]) -> list[str]:
    """``--strategies a,b --strategies c`` -> [a, b, c]."""
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


def _strategy_list() -> str:
    return ", ".join(name + (" (simulation only)" if cls.simulation_only else "")
                     for name, cls in catalog().items())


def simulate_cmd(
    pool: str = typer.Option(..., "--pool", parser=path, help="Pool directory (from `alq embed`); every row must be labeled."),
    labels: str = typer.Option(..., "--labels", parser=path, help="Labels of ALL pool rows (the oracle)."),
    test_pool: str = typer.Option(..., "--test-pool", parser=path, help="Held-out test pool directory."),
    test_labels: str = typer.Option(..., "--test-labels", parser=path, help="Labels of the test rows (unlabeled test rows are ignored)."),
    strategies: list[str] = typer.Option(..., "--strategies", "-s", help="Comma-separated strategy names (repeatable)."),
    seed_size: int = typer.Option(..., "--seed-size", help="Size of the seed set s0 (labeled before round 1)."),
    budget: int = typer.Option(..., "--budget", "-b", help="Labels bought per round."),
    out: str = typer.Option(..., "--out", "-o", parser=path, help="Run directory (results.parquet, selections/, state/)."),
    rounds: int | None = typer.Option(None, "--rounds", help="Number of selection rounds."),
    total_budget: int | None = typer.Option(None, "--total-budget", help="Labels to buy after the seed set, "
                                               "instead of --rounds (the last round takes what remains)."),
    repeats: int = typer.Option(3, "--repeats", help="Repeats (seeds); every strategy shares s0 and the initial head "
                                "within a repeat."),
    seed: int = typer.Option(0, "--seed", help="Run seed: every random choice derives from (seed, strategy, "
                             "repeat, round)."),
    seed_strategy: str = typer.Option("random", "--seed-strategy", metavar="NAME", help="Cold-start strategy choosing s0 "
                                      "(random, kcenter, ... any that needs no head)."),
    head_mode: str = typer.Option("reset", "--head-mode", metavar="reset|update", help="reset: retrain the head from scratch each round; "
                                  "update: warm-start from the previous round's head."),
    mlp: bool = ho.MLP,
    hidden: int | None = ho.HIDDEN,
    weight_decay: str = ho.WEIGHT_DECAY,
    cv_folds: int = ho.CV_FOLDS,
    normalize: str = ho.NORMALIZE,
    holdout: float = ho.HOLDOUT,
    optimizer: str = ho.OPTIMIZER,
    max_iter: int = ho.MAX_ITER,
    epochs: int = ho.EPOCHS,
    lr: float = ho.LR,
    ensemble: int = ho.ENSEMBLE,
    bootstrap: bool = ho.BOOTSTRAP,
    dropout: float = ho.DROPOUT,
    class_weighted: bool = ho.CLASS_WEIGHTED,
    clusters: str | None = typer.Option(None, "--clusters", parser=path, help="Clusters of the pool (from `alq cluster`), "
                                            "for strategies that need them."),
    where_sql: str | None = typer.Option(None, "--where", help="SQL condition over the pool's kept metadata columns "
                                         "and id: only rows where it is true are ever labeled (seed set included), "
                                         "e.g. --where \"camera = 'front'\"."),
    balance_by: str | None = typer.Option(None, "--balance-by", help="Balance every round's batch over a pool "
                                          "column's values or the head's predicted class, as `alq select "
                                          "--balance-by`, for every strategy, e.g. --balance-by predicted."),
    stop_set_size: int = typer.Option(2000, "--stop-set-size", help="Rows of each repeat's fixed, seeded stop set: "
                                      "results hold stop_kappa (this round's head vs the last one's predictions "
                                      "there) for `alq report`'s stopping rule, e.g. --stop-set-size 5000."),
    option: list[str] = typer.Option([], "--option", help="Strategy option key=value, or STRATEGY.key=value for one "
                                     "strategy (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out: finished rounds are kept; "
                                "more strategies or repeats, or more rounds of the same budget, may be added."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard the run already in --out and start over."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.guard import Output, check_outputs
    from alq.simulate import SimulationConfig, run_simulation

    pool, labels, test_pool, test_labels, out, clusters = map(where, (pool, labels, test_pool, test_labels, out,
                                                                      clusters))
    check_outputs([Output(out, "run")], [("--pool", pool), ("--labels", labels), ("--test-pool", test_pool),
                  ("--test-labels", test_labels), ("--clusters", clusters)], overwrite=overwrite)
    train = ho.build_train_options(mlp=mlp, hidden=hidden, weight_decay=weight_decay, cv_folds=cv_folds,
                                   normalize=normalize, holdout=holdout, optimizer=optimizer, max_iter=max_iter,
                                   epochs=epochs, lr=lr, ensemble=ensemble, bootstrap=bootstrap, dropout=dropout,
                                   class_weighted=class_weighted)
    with Staged() as st:
        cfg = SimulationConfig(pool=pool, labels=st.input(labels, "labels file"), test_pool=test_pool,
                               test_labels=st.input(test_labels, "test labels file"),
                               strategies=split_names(strategies), seed_size=seed_size, budget=budget,
                               rounds=rounds, total_budget=total_budget, repeats=repeats, seed=seed,
                               seed_strategy=seed_strategy, head_mode=head_mode, train=train,
                               options=parse_options(option), clusters=clusters, where=where_sql,
                               balance_by=balance_by, stop_set_size=stop_set_size)
        check_strategy_options([*cfg.strategies, cfg.seed_strategy], cfg.options)
        run_dir = st.output(out, "dir", resume=True)  # a run is resumed or checked, never blindly replaced
        from alq import fs

        checkpoint = None
        if fs.is_remote(out):  # publish the staged run as it goes: a killed run resumes from the last one
            from alq.simulate.rundir import RemoteCheckpoint

            checkpoint = RemoteCheckpoint(run_dir, out)
        with progress_bar(quiet=quiet) as progress:
            summary = run_simulation(cfg, run_dir, resume=resume, overwrite=overwrite, progress=progress,
                                     checkpoint=checkpoint)
    summary["output"] = str(out)  # the output-path key every command shares
    from alq.report.checks import simulation_warnings

    summary["warnings"] = simulation_warnings(summary)
    for w in summary["warnings"]:
        log(f"[yellow]warning:[/] {w}", quiet=quiet or as_json)
    emit(summary, as_json=as_json, quiet=quiet)


simulate_cmd.__doc__ = (
    "Oracle experiment: which strategy saves the most labels on YOUR embeddings?\n\n"
    "Starts from a seed set, then each round selects --budget rows with each strategy, reveals their true labels "
    "from --labels, retrains the head and scores it on the test set. Repeated --repeats times. Writes "
    "OUT/results.parquet (one row per strategy, repeat and round: accuracy, class balance, timings) and each "
    "round's selected ids under OUT/selections/. The head takes every option of `alq train`, with the same "
    "defaults (pool standardisation, L2 strength cross-validated each round). Checkpoints every round: a killed run continues with --resume "
    "and gives the same results. Summarise with `alq report`.\n\n"
    + URI_NOTE + "\n\nExample:\n\n"
    "  alq simulate --pool pool/ --labels pool_labels.parquet --test-pool test/ --test-labels test_labels.parquet "
    "--strategies random,margin,badge,balanced-random --seed-size 100 --budget 100 --rounds 10 --repeats 5 "
    "--out runs/exp1 && alq report runs/exp1/results.parquet --out runs/exp1/report\n\n"
    "Strategies: " + _strategy_list()
)
app.command("simulate")(simulate_cmd)
