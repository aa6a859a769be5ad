"""``alq simulate``: replay active learning on a fully labeled pool (oracle experiment)."""

from __future__ import annotations

from pathlib import Path

import typer

from alq.cli.app import JSON_OPTION, QUIET_OPTION, app, emit, parse_options, progress_bar
from alq.strategies import load_all


def split_names(values: list[str]) -> list[str]:
    """``--strategies a,b --strategies c`` -> [a, b, c]."""
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


def _strategy_list() -> str:
    return ", ".join(name + (" (simulation only)" if cls.simulation_only else "")
                     for name, cls in sorted(load_all().items()))


def simulate_cmd(
    pool: Path = typer.Option(..., "--pool", help="Pool directory (from `alq embed`); every row must be labeled."),
    labels: Path = typer.Option(..., "--labels", help="Labels of ALL pool rows (the oracle)."),
    test_pool: Path = typer.Option(..., "--test-pool", help="Held-out test pool directory."),
    test_labels: Path = typer.Option(..., "--test-labels", help="Labels of the test rows (unlabeled test rows are ignored)."),
    strategies: list[str] = typer.Option(..., "--strategies", "-s", help="Comma-separated strategy names (repeatable)."),
    seed_size: int = typer.Option(..., "--seed-size", help="Size of the seed set s0 (labeled before round 1)."),
    budget: int = typer.Option(..., "--budget", "-b", help="Labels bought per round."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (results.parquet, selections/, state/)."),
    rounds: int | None = typer.Option(None, "--rounds", help="Number of selection rounds."),
    total_budget: int | None = typer.Option(None, "--total-budget", help="Labels to buy after the seed set, "
                                               "instead of --rounds (the last round takes what remains)."),
    repeats: int = typer.Option(3, "--repeats", help="Repeats (seeds); every strategy shares s0 and the initial head "
                                "within a repeat."),
    seed: int = typer.Option(0, "--seed", help="Run seed: every random choice derives from (seed, strategy, "
                             "repeat, round)."),
    seed_strategy: str = typer.Option("random", "--seed-strategy", help="Cold-start strategy choosing s0 "
                                      "(random, kcenter, ... any that needs no head)."),
    head_mode: str = typer.Option("reset", "--head-mode", help="reset: retrain the head from scratch each round; "
                                  "update: warm-start from the previous round's head."),
    hidden: int = typer.Option(0, "--hidden", help="Head: hidden units (0 = linear)."),
    dropout: float = typer.Option(0.0, "--dropout", help="Head: dropout after the hidden layer."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="Head: L2 penalty on the weights."),
    normalize: str = typer.Option("none", "--normalize", help="Head input normalisation: none, standardize or l2."),
    class_weighted: bool = typer.Option(False, "--class-weighted", help="Head: class-weighted loss."),
    max_iter: int = typer.Option(300, "--max-iter", help="Head: L-BFGS iterations."),
    ensemble: int = typer.Option(1, "--ensemble", help="Head: ensemble members (BALD)."),
    bootstrap: bool = typer.Option(False, "--bootstrap", help="Head: bootstrap-resample ensemble members."),
    clusters: Path | None = typer.Option(None, "--clusters", help="Clusters of the pool (from `alq cluster`), "
                                            "for strategies that need them."),
    option: list[str] = typer.Option([], "--option", help="Strategy option key=value, or STRATEGY.key=value for one "
                                     "strategy (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out: finished rounds are kept; "
                                "more strategies or repeats, or more rounds of the same budget, may be added."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard the run already in --out and start over."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    from alq.errors import BadInputError
    from alq.guard import Output, check_outputs
    from alq.model.train import TrainOptions
    from alq.simulate import SimulationConfig, run_simulation

    check_outputs([Output(out, "run")], [("--pool", pool), ("--labels", labels), ("--test-pool", test_pool),
                  ("--test-labels", test_labels), ("--clusters", clusters)], overwrite=overwrite)
    norm = None if normalize.lower() in ("none", "") else normalize.lower()
    if norm not in (None, "standardize", "l2"):
        raise BadInputError(f"--normalize={normalize!r} must be none, standardize or l2")
    train = TrainOptions(hidden=hidden, dropout=dropout, weight_decay=weight_decay, normalize=norm,
                         class_weighted=class_weighted, max_iter=max_iter, ensemble=ensemble, bootstrap=bootstrap)
    cfg = SimulationConfig(pool=pool, labels=labels, test_pool=test_pool, test_labels=test_labels,
                           strategies=split_names(strategies), seed_size=seed_size, budget=budget, rounds=rounds,
                           total_budget=total_budget, repeats=repeats, seed=seed, seed_strategy=seed_strategy,
                           head_mode=head_mode, train=train, options=parse_options(option), clusters=clusters)
    with progress_bar(quiet=quiet) as progress:
        summary = run_simulation(cfg, out, resume=resume, overwrite=overwrite, progress=progress)
    emit(summary, as_json=as_json, quiet=quiet)


simulate_cmd.__doc__ = (
    "Oracle experiment: which strategy saves the most labels on YOUR embeddings?\n\n"
    "Starts from a seed set, then each round selects --budget rows with each strategy, reveals their true labels "
    "from --labels, retrains the head and scores it on the test set. Repeated --repeats times. Writes "
    "OUT/results.parquet (one row per strategy, repeat and round: accuracy, class balance, timings) and each "
    "round's selected ids under OUT/selections/. Checkpoints every round: a killed run continues with --resume "
    "and gives the same results. Summarise with `alq report`.\n\n"
    "Example:\n\n"
    "  alq simulate --pool pool/ --labels pool_labels.parquet --test-pool test/ --test-labels test_labels.parquet "
    "--strategies random,margin,badge,balanced-random --seed-size 100 --budget 100 --rounds 10 --repeats 5 "
    "--out runs/exp1 && alq report runs/exp1/results.parquet --out runs/exp1/report\n\n"
    "Strategies: " + _strategy_list()
)
app.command("simulate")(simulate_cmd)
