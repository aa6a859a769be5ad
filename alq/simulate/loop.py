"""The oracle loop of ``alq simulate`` (DISTIL; Emam et al. 2021, Sec. 4).

For each repeat r: choose a seed set s0 and train the initial head (shared
by every strategy of that repeat), then for each strategy and round k:
select b rows with the head of round k-1, reveal their true labels, train
the head (from scratch with ``reset``, warm-started with ``update``),
evaluate it on the held-out test set, and commit the round (see
:mod:`alq.simulate.rundir`). Every random choice draws from a seed derived
from (seed, strategy, repeat, round), so rounds are independent of
execution order and a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from alq import __version__
from alq.device import torch_device
from alq.errors import BadInputError, BudgetError, MissingFeatureError
from alq.io import sha256_file, write_parquet
from alq.metrics import balance_metrics, evaluate
from alq.model.head import Head, load_head
from alq.model.train import TrainOptions, train_head
from alq.select import check_selection
from alq.simulate.oracle import RowLabels, row_labels, union_classes
from alq.simulate.rundir import SEED_SET, RunDir, derive_seed
from alq.staging import shown
from alq.store import Pool, open_pool
from alq.store.labels import read_labels
from alq.strategies import Context, get_strategy, load_all

KIND = "simulation-results"
HEAD_MODES = ("reset", "update")
SECONDS_COLUMNS = ("select_seconds", "train_seconds")

SCHEMA = pa.schema([
    ("strategy", pa.string()), ("repeat", pa.int64()), ("round", pa.int64()),
    ("n_labeled", pa.int64()), ("n_selected", pa.int64()),
    ("top1", pa.float64()), ("top5", pa.float64()), ("macro_accuracy", pa.float64()),
    ("per_class_accuracy", pa.list_(pa.float64())), ("map", pa.float64()), ("pooled_ap", pa.float64()),
    # class name -> labeled rows, in the run's class order (a reader needs no metadata to know which is which)
    ("class_counts", pa.map_(pa.string(), pa.int64())), ("imbalance_ratio", pa.float64()),
    ("empty_classes", pa.int64()),
    ("class_entropy", pa.float64()),
    ("select_seconds", pa.float64()), ("train_seconds", pa.float64()),
    ("train_loss", pa.float64()), ("train_accuracy", pa.float64()), ("selection_seed", pa.int64()),
    # stopping signal (alq.stopping): kappa vs the previous round's head on the repeat's fixed stop set
    ("stop_kappa", pa.float64()), ("stop_mean_margin", pa.float64()), ("cv_accuracy", pa.float64()),
])


@dataclass
class SimulationConfig:
    """What ``alq simulate`` runs. ``budget`` per round for ``rounds`` rounds, or up to ``total_budget``."""

    pool: str | Path
    labels: str | Path
    test_pool: str | Path
    test_labels: str | Path
    strategies: list[str]
    seed_size: int
    budget: int
    rounds: int | None = None
    total_budget: int | None = None
    repeats: int = 3
    seed: int = 0
    seed_strategy: str = "random"
    head_mode: str = "reset"
    train: TrainOptions = field(default_factory=TrainOptions)
    options: dict = field(default_factory=dict)  # "key" for all strategies, "strategy.key" for one
    clusters: str | Path | None = None
    where: str | None = None  # SQL predicate: only matching pool rows are ever labeled (alq.filters)
    balance_by: str | None = None  # pool column or "predicted": each round's batch balanced over its values
    stop_set_size: int = 2000  # rows of the fixed, seeded stop set per repeat (alq.stopping)

    def budgets(self) -> list[int]:
        """Labels bought in each round 1..R."""
        if self.budget < 1:
            raise BudgetError(f"--budget={self.budget} must be >= 1")
        if (self.rounds is None) == (self.total_budget is None):
            raise BadInputError("give exactly one of --rounds and --total-budget")
        if self.rounds is not None:
            if self.rounds < 1:
                raise BadInputError(f"--rounds={self.rounds} must be >= 1")
            return [int(self.budget)] * int(self.rounds)
        if self.total_budget < 1:
            raise BudgetError(f"--total-budget={self.total_budget} must be >= 1")
        full, rest = divmod(int(self.total_budget), int(self.budget))
        return [int(self.budget)] * full + ([rest] if rest else [])

    def strategy_options(self, name: str) -> dict:
        key = name.replace("-", "_")
        out = {k: v for k, v in self.options.items() if "." not in k}
        for k, v in self.options.items():
            if "." in k:
                owner, opt = k.split(".", 1)
                if owner.replace("-", "_") == key:
                    out[opt] = v
        return out


@dataclass
class Oracle:
    """Everything a simulation reads, loaded once: pool, true labels, test set."""

    pool: Pool
    truth: RowLabels
    test_x: np.ndarray  # float32 (n_test, d)
    test_y: np.ndarray  # (n_test,) class indices or (n_test, C) multi-hot
    classes: list
    multilabel: bool
    fingerprints: dict
    clusters: np.ndarray | None = None
    standardizer: tuple | None = None  # the pool's (mean, scale) for normalize="standardize", computed once
    allowed: np.ndarray | None = None  # bool (N,): rows --where lets be labeled (None: all)


def load_oracle(cfg: SimulationConfig, *, need_clusters: bool = False) -> Oracle:
    """Open and check every input; the pool's standardisation statistics are computed here, once."""
    pool = open_pool(cfg.pool)
    test_pool = open_pool(cfg.test_pool)
    if test_pool.dim != pool.dim:
        raise BadInputError(f"{cfg.test_pool}: test pool has dim {test_pool.dim}, the pool has dim {pool.dim}")
    lab = read_labels(cfg.labels)
    test_lab = read_labels(cfg.test_labels)
    if lab.multilabel != test_lab.multilabel:
        raise BadInputError(f"{cfg.test_labels}: test labels are {'multi' if test_lab.multilabel else 'single'}-label "
                            f"but {cfg.labels} is {'multi' if lab.multilabel else 'single'}-label")
    classes = union_classes(lab, test_lab)
    if len(classes) < 2:
        raise BadInputError(f"{cfg.labels}: a simulation needs at least 2 classes (found {classes})")
    truth, _ = row_labels(pool, lab, classes, source=str(cfg.labels), require_all=True)
    test_truth, test_rows = row_labels(test_pool, test_lab, classes, source=str(cfg.test_labels), require_all=False)
    if len(test_rows) == 0:
        raise BadInputError(f"{cfg.test_labels}: no labeled test rows")
    test_x = test_pool.take(test_rows, dtype=np.float32)
    test_y = test_truth.targets(np.arange(len(test_rows)))
    clusters = None
    if need_clusters:
        if cfg.clusters is None:
            raise BadInputError("a chosen strategy needs --clusters (from `alq cluster` on the pool)")
        try:
            from alq.cluster.store import load_clusters
        except ImportError:
            raise MissingFeatureError("this install has no `alq cluster` support (alq.cluster.store)") from None
        clusters = load_clusters(cfg.clusters, pool)
    fingerprints = {"pool": pool.fingerprint, "labels": sha256_file(cfg.labels)[:16],
                    "test_pool": test_pool.fingerprint, "test_labels": sha256_file(cfg.test_labels)[:16]}
    standardizer = None
    if cfg.train.normalize == "standardize":
        from alq.model.standardize import pool_column_stats

        standardizer = pool_column_stats(pool).standardizer()
    allowed = None
    if cfg.where is not None:  # --where: evaluated once (the pool does not change during a run)
        from alq.filters import where_mask

        allowed = where_mask(pool, cfg.where)
    if cfg.balance_by is not None:
        from alq.filters import balance_column

        balance_column(pool, cfg.balance_by)
    return Oracle(pool=pool, truth=truth, test_x=test_x, test_y=test_y, classes=classes,
                  multilabel=lab.multilabel, fingerprints=fingerprints, clusters=clusters,
                  standardizer=standardizer, allowed=allowed)


def _config_json(cfg: SimulationConfig, oracle: Oracle, budgets: list[int]) -> dict:
    train = asdict(cfg.train)
    train.pop("seed", None)
    return {
        "kind": "simulation-run",
        "experiment": {
            "strategies": list(cfg.strategies), "repeats": int(cfg.repeats), "budgets": budgets,
            "seed_size": int(cfg.seed_size), "seed": int(cfg.seed), "seed_strategy": cfg.seed_strategy,
            "head_mode": cfg.head_mode, "train": train, "options": dict(sorted(cfg.options.items())),
            "fingerprints": oracle.fingerprints, "classes": [str(c) for c in oracle.classes],
            "multilabel": oracle.multilabel, "clusters": shown(cfg.clusters) if cfg.clusters else None,
            "where": cfg.where, "balance_by": cfg.balance_by,
            **({"stop_set_size": int(cfg.stop_set_size)} if cfg.stop_set_size != 2000 else {}),
        },  # shown(): a staged copy of a remote input is recorded by its URI (resume compares these)
        "inputs": {"pool": str(cfg.pool), "labels": shown(cfg.labels), "test_pool": str(cfg.test_pool),
                   "test_labels": shown(cfg.test_labels)},
        "alq_version": __version__,
    }


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
        config = self.run_dir.open(_config_json(cfg, oracle, budgets), resume=self.resume, overwrite=self.overwrite)
        exp = config["experiment"]
        names, repeats, budgets = list(exp["strategies"]), int(exp["repeats"]), list(exp["budgets"])
        self.oracle, self.budgets, self.names, self.repeats = oracle, budgets, names, repeats
        self.records: dict[tuple, dict] = {}
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
                        self._write_results(config)
                        self.checkpoint()
            self._write_results(config, final=True)
        except BaseException:
            self.run_dir.abandon(created=self.run_dir.created)  # nothing committed: no partial run is left
            raise
        finally:
            self.run_dir.release()
        return self._summary(config, skipped=skipped, ran=done - skipped, seconds=time.perf_counter() - t0)

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

    def _evaluate(self, head: Head) -> dict:
        step = 1 << 15
        parts = []
        dev = next(head.net.parameters()).device  # a strategy may have moved the head to the GPU
        for lo in range(0, len(self.oracle.test_x), step):
            x = torch.from_numpy(self.oracle.test_x[lo:lo + step]).to(dev)
            parts.append(head.logits(x).double().cpu().numpy())
        logits = np.concatenate(parts) if parts else np.empty((0, len(self.oracle.classes)))
        return evaluate(logits, self.oracle.test_y, multilabel=self.oracle.multilabel)

    def _record(self, strategy: str, repeat: int, rnd: int, rows: np.ndarray, n_selected: int, head: Head,
                select_s: float, train_s: float, selection_seed: int) -> dict:
        rec = {"strategy": strategy, "repeat": repeat, "round": rnd, "n_labeled": int(len(rows)),
               "n_selected": int(n_selected)}
        rec.update(self._evaluate(head))
        rec.update(balance_metrics(self.oracle.truth.counts(rows)))
        metrics = head.meta.get("metrics", {})
        rec.update(select_seconds=float(select_s), train_seconds=float(train_s),
                   train_loss=float(metrics.get("train_loss", math.nan)),
                   train_accuracy=float(metrics.get("train_accuracy", math.nan)), selection_seed=int(selection_seed))
        return rec

    def _selection_table(self, rows: np.ndarray, scores: np.ndarray) -> pa.Table:
        pool = self.oracle.pool
        ids = pool.ids(rows)
        labels = self.oracle.truth.labels_of(rows)
        classes = self.oracle.classes
        scalar = pa.int64() if all(isinstance(c, int) and not isinstance(c, bool) for c in classes) else pa.string()
        cast = int if scalar == pa.int64() else str
        if self.oracle.multilabel:
            label_arr = pa.array([[cast(c) for c in row] for row in labels], type=pa.list_(scalar))
        else:
            label_arr = pa.array([cast(c) for c in labels], type=scalar)
        return pa.table({
            "id": pa.array(ids.tolist(), type=pa.int64() if pool.id_type == "int64" else pa.string()),
            "rank": pa.array(np.arange(len(rows), dtype=np.int64)),
            "score": pa.array(np.asarray(scores, dtype=np.float64)),
            "row": pa.array(np.asarray(rows, dtype=np.int64)),
            "label": label_arr,
        })

    def _seed_round(self, r: int) -> tuple[np.ndarray, Head]:
        """Seed set and initial head of repeat r: computed once, shared by every strategy."""
        rd = self.run_dir
        if rd.committed_rounds(SEED_SET, r, 0) == 0:
            rows = _read_rows(rd.selection_path(SEED_SET, r, 0))
            head = load_head(rd.head_path(SEED_SET, r, 0))
            self.records[(SEED_SET, r, 0)] = rd.read_record(SEED_SET, r, 0)
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
        rec = self._record(SEED_SET, r, 0, rows, len(rows), head, select_s, train_s, sel_seed)
        self._stop_signal(rec, self._stop_set(r, rows), head, None)  # round 0: margin and CV accuracy, no kappa
        rd.commit(SEED_SET, r, 0, rec, selection_table=self._selection_table(rows, sel.scores), head=head)
        self.records[(SEED_SET, r, 0)] = rec
        return rows, head

    def _strategy_rounds(self, name: str, r: int, seed_rows: np.ndarray, head0: Head):
        """Run (or reload) rounds 1..R of one strategy in one repeat; yield after each newly run round."""
        rd, cfg, budgets = self.run_dir, self.cfg, self.budgets
        strat = get_strategy(name)
        k_done = rd.committed_rounds(name, r, len(budgets))
        parts = [seed_rows]
        for k in range(1, k_done + 1):
            parts.append(_read_rows(rd.selection_path(name, r, k)))
            self.records[(name, r, k)] = rd.read_record(name, r, k)
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
            rec = self._record(name, r, k, rows, len(new), head, select_s, train_s, sel_seed)
            prev_pred = self._stop_signal(rec, stop, head, prev_pred)
            rd.commit(name, r, k, rec, selection_table=self._selection_table(new, sel.scores), head=head)
            self.records[(name, r, k)] = rec
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

    # -- output ---------------------------------------------------------------------------------
    def results_table(self) -> pa.Table:
        rows = []
        for name in self.names:
            for r in range(self.repeats):
                seed_rec = self.records.get((SEED_SET, r, 0))
                if seed_rec is None:
                    continue
                rows.append({**seed_rec, "strategy": name})
                for k in range(1, len(self.budgets) + 1):
                    rec = self.records.get((name, r, k))
                    if rec is None:
                        break
                    rows.append(rec)
        cols = {f.name: [row.get(f.name) for row in rows] for f in SCHEMA}
        names = [str(c) for c in self.oracle.classes]
        cols["class_counts"] = [None if c is None else list(zip(names, c)) for c in cols["class_counts"]]
        return pa.table(cols, schema=SCHEMA)

    def _write_results(self, config: dict, *, final: bool = False) -> None:
        exp = config["experiment"]
        meta = {"kind": KIND, "complete": final, "classes": self.oracle.classes, "multilabel": self.oracle.multilabel,
                "strategies": self.names, "repeats": self.repeats, "budgets": self.budgets,
                "seed_size": exp["seed_size"], "seed": exp["seed"], "seed_strategy": exp["seed_strategy"],
                "head_mode": exp["head_mode"], "train": exp["train"], "options": exp["options"],
                "where": exp.get("where"), "balance_by": exp.get("balance_by"),
                "inputs": config["inputs"], "fingerprints": exp["fingerprints"], "alq_version": __version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        write_parquet(self.run_dir.results_path, self.results_table(), meta)

    def _summary(self, config: dict, *, skipped: int, ran: int, seconds: float) -> dict:
        metric = "map" if self.oracle.multilabel else "top1"
        final = {}
        last = len(self.budgets)
        for name in self.names:
            vals = [self.records[(name, r, last)][metric] for r in range(self.repeats) if (name, r, last) in self.records]
            final[name] = {metric: float(np.mean(vals)) if vals else None, "repeats": len(vals)}
        return {"run_dir": str(self.run_dir.path), "results": str(self.run_dir.results_path),
                "strategies": self.names, "repeats": self.repeats, "rounds": len(self.budgets),
                "budgets": self.budgets, "seed_size": int(config["experiment"]["seed_size"]),
                "classes": len(self.oracle.classes), "multilabel": self.oracle.multilabel,
                "pool_rows": self.oracle.pool.count, "test_rows": int(len(self.oracle.test_x)),
                "rounds_run": ran, "rounds_resumed": skipped, "final": final, "seconds": round(seconds, 3)}


def _read_rows(path: Path) -> np.ndarray:
    from alq.io import read_parquet

    return read_parquet(path, columns=["row"]).column("row").to_numpy().astype(np.int64)


def run_simulation(cfg: SimulationConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
                   progress=None, checkpoint=None) -> dict:
    """Run (or resume) a simulation into ``out``; return the summary. ``checkpoint()`` runs after every
    committed round (the CLI publishes a run staged for object storage with it)."""
    return Simulation(cfg, out, resume=resume, overwrite=overwrite, progress=progress,
                      checkpoint=checkpoint).run()


class RemoteCheckpoint:
    """Publish a locally staged run directory to its URI every ``interval`` seconds of rounds.

    A killed run then loses at most that much work: ``--resume`` downloads the
    last published generation and continues from its committed rounds. The
    run's local lock file is not published (it names a process on this host).
    """

    def __init__(self, local_dir: Path, uri: str, *, interval: float | None = None):
        from alq.config import env_number
        from alq.simulate.rundir import LOCK

        self.local_dir, self.uri, self.lock = Path(local_dir), uri, LOCK
        self.interval = env_number("ALQ_CHECKPOINT_SECONDS", 60.0, what="seconds", minimum=-1) \
            if interval is None else float(interval)
        self.last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last < self.interval:
            return
        from alq import fs

        fs.publish_dir(self.local_dir, self.uri, skip={self.lock})
        self.last = time.monotonic()
