"""The results of ``alq simulate``: one record per (strategy, repeat, round), the results file, the summary.

A record holds the head's test-set measures (:mod:`alq.metrics`), the
labeled set's class balance, timings and the stopping signal; the results
file (:data:`SCHEMA`) has one row per record, the seed set's round 0
repeated under every strategy.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from alq import __version__
from alq.io import write_parquet
from alq.metrics import balance_metrics, evaluate
from alq.model.head import Head
from alq.simulate.rundir import SEED_SET

KIND = "simulation-results"
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


class Results:
    """Every round's record, kept by (strategy, repeat, round), and what is made of them."""

    def __init__(self, oracle, names: list[str], repeats: int, budgets: list[int]):
        self.oracle, self.names, self.repeats, self.budgets = oracle, names, repeats, budgets
        self.records: dict[tuple, dict] = {}

    def evaluate(self, head: Head) -> dict:
        """The head's test-set measures (:func:`alq.metrics.evaluate`), in bounded blocks of test rows."""
        step = 1 << 15
        parts = []
        dev = next(head.net.parameters()).device  # a strategy may have moved the head to the GPU
        for lo in range(0, len(self.oracle.test_x), step):
            x = torch.from_numpy(self.oracle.test_x[lo:lo + step]).to(dev)
            parts.append(head.logits(x).double().cpu().numpy())
        logits = np.concatenate(parts) if parts else np.empty((0, len(self.oracle.classes)))
        return evaluate(logits, self.oracle.test_y, multilabel=self.oracle.multilabel)

    def record(self, strategy: str, repeat: int, rnd: int, rows: np.ndarray, n_selected: int, head: Head,
               select_s: float, train_s: float, selection_seed: int) -> dict:
        """The record of one round: ``head`` trained on the labeled ``rows``, ``n_selected`` of them new."""
        rec = {"strategy": strategy, "repeat": repeat, "round": rnd, "n_labeled": int(len(rows)),
               "n_selected": int(n_selected)}
        rec.update(self.evaluate(head))
        rec.update(balance_metrics(self.oracle.truth.counts(rows)))
        metrics = head.meta.get("metrics", {})
        rec.update(select_seconds=float(select_s), train_seconds=float(train_s),
                   train_loss=float(metrics.get("train_loss", math.nan)),
                   train_accuracy=float(metrics.get("train_accuracy", math.nan)), selection_seed=int(selection_seed))
        return rec

    def selection_table(self, rows: np.ndarray, scores: np.ndarray) -> pa.Table:
        """One round's picks, ranked, with their true labels: ``id, rank, score, row, label``."""
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

    def table(self) -> pa.Table:
        """The results table (:data:`SCHEMA`): every committed round, round 0 repeated under each strategy."""
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

    def write(self, path: Path, config: dict, *, final: bool = False) -> None:
        """The results file (``complete`` in its metadata once ``final``), written atomically."""
        exp = config["experiment"]
        meta = {"kind": KIND, "complete": final, "classes": self.oracle.classes, "multilabel": self.oracle.multilabel,
                "strategies": self.names, "repeats": self.repeats, "budgets": self.budgets,
                "seed_size": exp["seed_size"], "seed": exp["seed"], "seed_strategy": exp["seed_strategy"],
                "head_mode": exp["head_mode"], "train": exp["train"], "options": exp["options"],
                "where": exp.get("where"), "balance_by": exp.get("balance_by"),
                "inputs": config["inputs"], "fingerprints": exp["fingerprints"], "alq_version": __version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        write_parquet(path, self.table(), meta)

    def summary(self, run_dir, config: dict, *, skipped: int, ran: int, seconds: float) -> dict:
        """The run's ``--json`` summary; ``run_dir``: its :class:`~alq.simulate.rundir.RunDir`."""
        metric = "map" if self.oracle.multilabel else "top1"
        final = {}
        last = len(self.budgets)
        for name in self.names:
            vals = [self.records[(name, r, last)][metric] for r in range(self.repeats) if (name, r, last) in self.records]
            final[name] = {metric: float(np.mean(vals)) if vals else None, "repeats": len(vals)}
        return {"run_dir": str(run_dir.path), "results": str(run_dir.results_path),
                "strategies": self.names, "repeats": self.repeats, "rounds": len(self.budgets),
                "budgets": self.budgets, "seed_size": int(config["experiment"]["seed_size"]),
                "classes": len(self.oracle.classes), "multilabel": self.oracle.multilabel,
                "pool_rows": self.oracle.pool.count, "test_rows": int(len(self.oracle.test_x)),
                "rounds_run": ran, "rounds_resumed": skipped, "final": final, "seconds": round(seconds, 3)}
