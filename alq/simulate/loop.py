"""The oracle loop of ``alq simulate`` (DISTIL; Emam et al. 2021, Sec. 4).

For each repeat r: choose a seed set s0 and train the initial head (shared
by every strategy of that repeat), then for each strategy and round k:
select b rows with the head of round k-1, reveal their true labels, train
the head (from scratch with ``reset``, warm-started with ``update``),
evaluate it on the held-out test set, and commit the round (see
:mod:`alq.simulate.rundir`). Every random choice draws from a seed derived
from (seed, strategy, repeat, round), so rounds are independent of
execution order and a resumed run reproduces an uninterrupted one.

What a run is (:mod:`alq.simulate.config`), what it reads
(:mod:`alq.simulate.inputs`) and what it writes per round
(:mod:`alq.simulate.results`) live beside this loop.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from alq.device import torch_device
from alq.errors import BadInputError, BudgetError
from alq.model.head import Head, load_head
from alq.model.train import TrainOptions, train_head
from alq.select import check_selection
from alq.simulate.config import HEAD_MODES, SimulationConfig, config_json
from alq.simulate.inputs import load_oracle
from alq.simulate.results import Results
from alq.simulate.rundir import SEED_SET, RunDir, derive_seed
from alq.strategies import Context, get_strategy, load_all


class Simulation:
    """One run: :meth:`run` does every round not yet committed in ``out``."""

    def __init__(self, cfg: SimulationConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
                 progress=None, checkpoint=None):
        self.cfg = cfg
        self.run_dir = RunDir(out)
        self.progress = progress or (lambda task, done, total: None)
        self.checkpoint = checkpoint or (lambda: None)  # after each committed round (a staged run publishes it)
        self.resume, self.overwrite = resume, overwrite
        self.device = torch_device()

    # -- setup ----------------------------------------------------------------------------------
    def _check_strategies(self) -> list:
        cfg = self.cfg
        load_all()
        if not cfg.strategies:
            raise BadInputError("--strategies is empty")
        dup = sorted({s for s in cfg.strategies if cfg.strategies.count(s) > 1})
        if dup:
            raise BadInputError(f"--strategies lists {dup[0]!r} twice")
        strats = [get_strategy(s) for s in cfg.strategies]
        seed_strat = get_strategy(cfg.seed_strategy)
        if seed_strat.needs_head:
            raise BadInputError(f"--seed-strategy {cfg.seed_strategy} needs a head, but the seed set is chosen "
                                "before any head exists", hint="use random, or another cold-start strategy")
        if cfg.head_mode not in HEAD_MODES:
            raise BadInputError(f"--head-mode={cfg.head_mode!r} must be one of {', '.join(HEAD_MODES)}")
        if cfg.repeats < 1:
            raise BadInputError(f"--repeats={cfg.repeats} must be >= 1")
        if cfg.seed_size < 1:
            raise BadInputError(f"--seed-size={cfg.seed_size} must be >= 1")
        return strats

    def run(self) -> dict:
        t0 = time.perf_counter()
        cfg = self.cfg
        strats = self._check_strategies()
        budgets = cfg.budgets()
        need_clusters = any(s.needs_clusters for s in strats) or get_strategy(cfg.seed_strategy).needs_clusters
        oracle = load_oracle(cfg, need_clusters=need_clusters)
        need = cfg.seed_size + sum(budgets)
        have = oracle.pool.count if oracle.allowed is None else int(np.count_nonzero(oracle.allowed))
        if need > have:
            rows = f"{have} rows matching --where" if oracle.allowed is not None else f"{have} rows"
            raise BudgetError(f"--seed-size {cfg.seed_size} + {sum(budgets)} labels over {len(budgets)} rounds = "
                              f"{need} exceeds the pool's {rows}",
                              hint="lower --budget/--rounds/--total-budget or --seed-size")
        config = self.run_dir.open(config_json(cfg, oracle, budgets), resume=self.resume, overwrite=self.overwrite)
        exp = config["experiment"]
        names, repeats, budgets = list(exp["strategies"]), int(exp["repeats"]), list(exp["budgets"])
        self.oracle, self.budgets, self.names, self.repeats = oracle, budgets, names, repeats
        self.results = Results(oracle, names, repeats, budgets)
        total = len(names) * repeats * len(budgets)
        skipped = sum(max(self.run_dir.committed_rounds(n, r, len(budgets)), 0)
                      for r in range(repeats) for n in names)
        done = skipped
        try:
            self.progress("simulate", done, total)
            for r in range(repeats):
                seed_rows, head0 = self._seed_round(r)
                for name in names:
                    for k in self._strategy_rounds(name, r, seed_rows, head0):
                        done += 1
                        self.progress(f"simulate|simulate {name}: repeat {r + 1}/{repeats}, round {k}/{len(budgets)}",
                                      done, total)
                        self.results.write(self.run_dir.results_path, config)
                        self.checkpoint()
            self.results.write(self.run_dir.results_path, config, final=True)
        except BaseException:
            self.run_dir.abandon(created=self.run_dir.created)  # nothing committed: no partial run is left
            raise
        finally:
            self.run_dir.release()
        return self.results.summary(self.run_dir, config, skipped=skipped, ran=done - skipped,
                                    seconds=time.perf_counter() - t0)

    # -- rounds ---------------------------------------------------------------------------------
    def _context(self, *, budget: int, seed: int, excluded: np.ndarray, labeled: np.ndarray, head,
                 strategy: str) -> Context:
        from alq.engine import get_engine

        return Context(pool=self.oracle.pool, budget=int(budget), seed=int(seed), excluded=excluded, labeled=labeled,
                       head=head, clusters=self.oracle.clusters, true_labels=self.oracle.truth,
                       options=self.cfg.strategy_options(strategy), engine=get_engine("local"), device=self.device)

    def _train(self, rows: np.ndarray, seed: int, init: Head | None) -> tuple[Head, float]:
        opts = TrainOptions(**{**asdict(self.cfg.train), "seed": int(seed)})
        x = self.oracle.pool.take(rows, dtype=np.float32)
        y = self.oracle.truth.targets(rows)
        t = time.perf_counter()
        head = train_head(x, y, self.oracle.classes, multilabel=self.oracle.multilabel, opts=opts,
                          device=self.device, init=init, standardizer=self.oracle.standardizer,
                          meta={"pool_fingerprint": self.oracle.fingerprints["pool"]})
        return head, time.perf_counter() - t

    def _seed_round(self, r: int) -> tuple[np.ndarray, Head]:
        """Seed set and initial head of repeat r: computed once, shared by every strategy."""
        rd = self.run_dir
        if rd.committed_rounds(SEED_SET, r, 0) == 0:
            rows = _read_rows(rd.selection_path(SEED_SET, r, 0))
            head = load_head(rd.head_path(SEED_SET, r, 0))
            self.results.records[(SEED_SET, r, 0)] = rd.read_record(SEED_SET, r, 0)
            return rows, head
        cfg = self.cfg
        n = self.oracle.pool.count
        sel_seed = derive_seed(cfg.seed, "seed-set", cfg.seed_strategy, r)
        ctx = self._context(budget=cfg.seed_size, seed=sel_seed, excluded=self._outside(n),
                            labeled=np.empty(0, dtype=np.int64), head=None, strategy=cfg.seed_strategy)
        t = time.perf_counter()
        sel = get_strategy(cfg.seed_strategy).select(ctx)
        select_s = time.perf_counter() - t
        check_selection(sel, ctx, cfg.seed_strategy)
        rows = np.asarray(sel.indices, dtype=np.int64)
        try:
            head, train_s = self._train(rows, derive_seed(cfg.seed, "train", r, 0), None)
        except BadInputError as exc:
            raise BadInputError(f"seed set of repeat {r}: {exc}", hint="raise --seed-size") from None
        rec = self.results.record(SEED_SET, r, 0, rows, len(rows), head, select_s, train_s, sel_seed)
        self._stop_signal(rec, self._stop_set(r, rows), head, None)  # round 0: margin and CV accuracy, no kappa
        rd.commit(SEED_SET, r, 0, rec, selection_table=self.results.selection_table(rows, sel.scores), head=head)
        self.results.records[(SEED_SET, r, 0)] = rec
        return rows, head

    def _strategy_rounds(self, name: str, r: int, seed_rows: np.ndarray, head0: Head):
        """Run (or reload) rounds 1..R of one strategy in one repeat; yield after each newly run round."""
        rd, cfg, budgets = self.run_dir, self.cfg, self.budgets
        strat = get_strategy(name)
        k_done = rd.committed_rounds(name, r, len(budgets))
        parts = [seed_rows]
        for k in range(1, k_done + 1):
            parts.append(_read_rows(rd.selection_path(name, r, k)))
            self.results.records[(name, r, k)] = rd.read_record(name, r, k)
        head = head0 if k_done == 0 else load_head(rd.head_path(name, r, k_done))
        rows = np.concatenate(parts)
        excluded = self._outside(self.oracle.pool.count)
        excluded[rows] = True
        stop = self._stop_set(r, seed_rows)
        prev_pred = self._stop_predictions(stop, head)[0]
        for k in range(k_done + 1, len(budgets) + 1):
            sel_seed = derive_seed(cfg.seed, "select", name, r, k)
            ctx = self._context(budget=budgets[k - 1], seed=sel_seed, excluded=excluded, labeled=rows,
                                head=head, strategy=name)
            t = time.perf_counter()
            sel = self._select(strat, ctx)
            select_s = time.perf_counter() - t
            check_selection(sel, ctx, name)
            new = np.asarray(sel.indices, dtype=np.int64)
            rows = np.concatenate([rows, new])
            excluded[new] = True
            head, train_s = self._train(rows, derive_seed(cfg.seed, "train", r, k),
                                        head if cfg.head_mode == "update" else None)
            rec = self.results.record(name, r, k, rows, len(new), head, select_s, train_s, sel_seed)
            prev_pred = self._stop_signal(rec, stop, head, prev_pred)
            rd.commit(name, r, k, rec, selection_table=self.results.selection_table(new, sel.scores), head=head)
            self.results.records[(name, r, k)] = rec
            yield k

    # -- --where / --balance-by and the stopping signal (alq.filters, alq.stopping) ----------------------
    def _outside(self, n: int) -> np.ndarray:
        """The excluded mask before any label: rows outside --where (none without it)."""
        return np.zeros(n, dtype=bool) if self.oracle.allowed is None else ~self.oracle.allowed

    def _select(self, strat, ctx: Context):
        if self.cfg.balance_by is None:
            return strat.select(ctx)
        from alq.filters import balanced_select

        return balanced_select(strat, ctx, self.cfg.balance_by)

    def _stop_set(self, r: int, seed_rows: np.ndarray) -> np.ndarray:
        """Repeat r's stop set: seeded rows outside its seed set; the same for every strategy and round."""
        from alq.stopping import draw_stop_set

        n = self.oracle.pool.count
        excluded = np.zeros(n, dtype=bool)
        excluded[seed_rows] = True
        size = min(int(self.cfg.stop_set_size), n - len(seed_rows))
        rows = draw_stop_set(n, excluded, max(size, 1), derive_seed(self.cfg.seed, "stop-set", r))
        return rows

    def _stop_predictions(self, rows: np.ndarray, head: Head):
        from alq.stopping import predictions

        return predictions(head, self.oracle.pool.take(rows, dtype=np.float32))

    def _stop_signal(self, rec: dict, rows: np.ndarray, head: Head, prev_pred) -> np.ndarray:
        """Fill rec's stop_kappa (vs the previous round's head), stop_mean_margin, cv_accuracy."""
        from alq.stopping import agreement

        pred, margins = self._stop_predictions(rows, head)
        rec["stop_kappa"] = float(agreement(prev_pred, pred)[0]) if prev_pred is not None else None  # round 0
        rec["stop_mean_margin"] = float(np.mean(margins))
        cv = head.meta.get("metrics", {}).get("cv_accuracy")
        rec["cv_accuracy"] = float(cv) if cv is not None else None  # a fixed --weight-decay: no CV
        return pred


def _read_rows(path: Path) -> np.ndarray:
    from alq.io import read_parquet

    return read_parquet(path, columns=["row"]).column("row").to_numpy().astype(np.int64)


def run_simulation(cfg: SimulationConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
                   progress=None, checkpoint=None) -> dict:
    """Run (or resume) a simulation into ``out``; return the summary. ``checkpoint()`` runs after every
    committed round (the CLI publishes a run staged for object storage with it)."""
    return Simulation(cfg, out, resume=resume, overwrite=overwrite, progress=progress,
                      checkpoint=checkpoint).run()


