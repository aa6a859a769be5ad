"""``alq select`` as a library call: exclusions, budget checks, strategy, output.

The pipeline: open the pool, mark labeled and pending rows as excluded,
check the budget against the unlabeled count, build a strategy
:class:`~alq.strategies.Context`, run it, check its contract (exact budget,
distinct, never excluded), and write the selection Parquet atomically with
its provenance in the key-value metadata.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from alq import __version__
from alq.device import torch_device
from alq.errors import AlqFailure, BadInputError, BudgetError
from alq.model.head import Head, load_head
from alq.staging import shown
from alq.store import Pool, open_pool
from alq.store.labels import read_id_list, read_labels
from alq.strategies import Context, Selection, get_strategy

KIND = "selection"


@dataclass
class SelectRequest:
    pool: str | Path
    strategy: str
    budget: int
    seed: int = 0
    head: str | Path | None = None
    labels: str | Path | None = None
    pending: list[str | Path] = field(default_factory=list)
    clusters: str | Path | None = None
    dedup: str | Path | None = None  # --dedup DUPS/ (alq.dedup.constrain)
    min_distance: float | None = None  # --min-distance D (alq.dedup.constrain)
    options: dict = field(default_factory=dict)
    allow_smaller: bool = False
    round: int | None = None
    engine: str = "local"
    engine_options: dict = field(default_factory=dict)
    scores: str | Path | None = None  # scores directory from `alq score`: reused when fresh
    with_columns: list[str] = field(default_factory=list)  # pool metadata columns added to the selection
    force_head: bool = False  # use a head trained on another pool of the same dim (refused otherwise)
    escape_formulas: bool = True  # CSV output: cells a spreadsheet would run as formulas get a leading '
    where: str | None = None  # SQL predicate over the pool's metadata: other rows are excluded (alq.filters)
    balance_by: str | None = None  # pool column or "predicted": the batch spread evenly over its values


def exclusion_mask(pool: Pool, labels: str | Path | None, pending: list) -> tuple[np.ndarray, np.ndarray, int]:
    """(excluded mask, labeled indices, pending count). Unknown ids are errors naming the file."""
    excluded = np.zeros(pool.count, dtype=bool)
    labeled = np.empty(0, dtype=np.int64)
    if labels is not None:
        from alq.store.provenance import check_labels_pool

        check_labels_pool(labels, pool)
        labeled = read_labels(labels).resolve(pool, source=str(labels))
        excluded[labeled] = True
    n_pending = 0
    for p in pending:
        ids = read_id_list(p)
        try:
            idx = pool.lookup(ids)
        except BadInputError as exc:  # an id type mismatch: say which --pending file
            raise BadInputError(f"{p}: pending {exc}", hint=exc.hint) from None
        if (idx < 0).any():
            r = int(np.flatnonzero(idx < 0)[0])
            raise BadInputError(f"{p}: row {r}: pending id {ids[r].item() if hasattr(ids[r], 'item') else ids[r]!r} "
                                "is not in the pool")
        n_pending += int(np.count_nonzero(~excluded[idx]))
        excluded[idx] = True
    return excluded, labeled, n_pending


def check_budget(budget: int, n_unlabeled: int, *, allow_smaller: bool, pool_rows: int | None = None) -> int:
    if budget < 1:
        raise BudgetError(f"--budget={budget} must be >= 1")
    if pool_rows == 0:
        raise BudgetError("the pool is empty: nothing to select", hint="add rows with `alq embed`")
    if n_unlabeled == 0:
        raise BudgetError("the pool has no unlabeled rows left (all labeled or pending)",
                          hint="add rows with `alq embed --append` or clear --pending")
    if budget > n_unlabeled:
        if allow_smaller:
            return n_unlabeled
        raise BudgetError(f"--budget={budget} exceeds the {n_unlabeled} unlabeled rows",
                          hint="lower --budget or pass --allow-smaller to take them all")
    return budget


def check_selection(sel: Selection, ctx: Context, strategy: str) -> None:
    """Guard the strategy contract: a violation is a bug, never a silent bad batch."""
    idx = np.asarray(sel.indices, dtype=np.int64)
    if len(idx) != ctx.budget or len(sel.scores) != len(idx):
        raise AlqFailure(f"strategy {strategy} returned {len(idx)} rows for budget {ctx.budget}")
    if len(np.unique(idx)) != len(idx):
        raise AlqFailure(f"strategy {strategy} returned duplicate rows")
    if idx.size and (idx.min() < 0 or idx.max() >= ctx.pool.count or ctx.excluded[idx].any()):
        raise AlqFailure(f"strategy {strategy} returned labeled, pending or out-of-range rows")
    ids = np.asarray(ctx.pool.ids(idx))
    if len(np.unique(ids if ids.dtype.kind in "iu" else ids.astype(str))) != len(ids):
        raise AlqFailure(f"strategy {strategy} returned distinct rows holding the same id",
                         hint="the pool holds duplicate ids: check it with `alq info POOL --verify`")


def build_context(req: SelectRequest, pool: Pool, *, progress=None) -> tuple[Context, dict]:
    strat = get_strategy(req.strategy)
    if strat.simulation_only:
        raise BadInputError(f"--strategy {req.strategy} reads true labels and only runs inside `alq simulate`")
    head: Head | None = None
    if req.head is not None:
        head = load_head(req.head)
        head.check_pool(pool, path=str(req.head))
    elif strat.needs_head:
        from alq.strategies import load_all

        cold = sorted(n for n, c in load_all().items() if not c.needs_head and not c.simulation_only)
        raise BadInputError(f"--strategy {req.strategy} needs a head (--head HEAD.pt from `alq train`)",
                            hint=f"strategies that need none: {', '.join(cold)}")
    excluded, labeled, n_pending = exclusion_mask(pool, req.labels, req.pending)
    from alq.engine import get_engine

    engine = get_engine(req.engine, **req.engine_options)
    filters = _filters(req, pool, excluded, engine, needs_head=head is None)  # --where / --balance-by
    if head is not None and req.labels is not None and strat.needs_head:
        head.check_classes(read_labels(req.labels).classes, path=str(req.head))
    n_unlabeled = int(pool.count - np.count_nonzero(excluded))
    budget = check_budget(int(req.budget), n_unlabeled, allow_smaller=req.allow_smaller, pool_rows=pool.count)
    notes: dict = dict(filters)
    if head is not None and head.pool_fingerprint and head.pool_fingerprint != pool.fingerprint:
        manifest = getattr(pool, "manifest", None)
        if manifest is not None and head.pool_fingerprint in manifest.lineage():
            notes["head_note"] = (f"head was trained on this pool before rows were appended (pool "
                                  f"{head.pool_fingerprint}, now {pool.fingerprint})")
        elif not req.force_head:
            from alq.errors import StaleError

            raise StaleError(f"{req.head}: head was trained on another pool (pool fingerprint "
                             f"{head.pool_fingerprint}; this pool is {pool.fingerprint} and never was), of the "
                             "same dimension", hint="train a head on this pool with `alq train`, or pass --force-head "
                                                    "to score with this one anyway")
        else:  # forced: said on stderr even under -q (see alq.cli.select), and recorded in the summary
            notes["head_warning"] = (f"--force-head: head {req.head} was trained on another pool "
                                     f"({head.pool_fingerprint}; this pool is {pool.fingerprint})")
    scores = None
    if req.scores is not None:
        from alq.scoring.store import ScoresStore

        store = ScoresStore(req.scores)
        reason = store.stale_reason(pool, head, req.options.get("aggregate"))
        if reason is None:
            scores = store
            notes["scores"] = {"path": str(req.scores), "fresh": True}
        else:
            notes["scores"] = {"path": str(req.scores), "fresh": False, "reason": reason + "; recomputed from the head"}
    clusters = None
    if strat.needs_clusters:
        from alq.cluster.store import load_clusters

        if req.clusters is None:
            raise BadInputError(f"--strategy {req.strategy} needs --clusters (from `alq cluster`)")
        clusters = load_clusters(req.clusters, pool)
    ctx = Context(pool=pool, budget=budget, seed=int(req.seed), excluded=excluded, labeled=labeled, head=head,
                  clusters=clusters, options=dict(req.options), engine=engine,
                  device=None if req.engine == "ray" else torch_device(), progress=progress, scores=scores)
    info = {"pool_rows": pool.count, "labeled": int(len(labeled)), "pending": n_pending,
            "unlabeled": n_unlabeled, "budget_requested": int(req.budget), "budget": budget, **notes}
    return ctx, info


def _filters(req: SelectRequest, pool: Pool, excluded: np.ndarray, engine, *, needs_head: bool) -> dict:
    """--where excludes (in place) the rows outside it; --balance-by is checked here, applied in run_select."""
    if req.where is None and req.balance_by is None:
        return {}
    from alq.filters import PREDICTED, apply_where, balance_column

    if req.balance_by is not None:
        balance_column(pool, req.balance_by)
        if req.balance_by == PREDICTED and needs_head:
            raise BadInputError("--balance-by predicted needs a head (--head HEAD.pt from `alq train`)")
    return apply_where(pool, req.where, excluded, engine)


def predicted_classes(head: Head | None, pool: Pool, indices: np.ndarray) -> list | None:
    if head is None or len(indices) == 0:
        return None
    x = torch.from_numpy(pool.take(indices, dtype=np.float32))
    z = head.to("cpu").logits(x)
    return [head.classes[i] for i in z.argmax(dim=1).tolist()]


def selection_table(pool: Pool, sel: Selection, req: SelectRequest, predicted: list | None) -> pa.Table:
    n = len(sel.indices)
    ids = pool.ids(sel.indices)
    cols = {
        "id": pa.array(ids.tolist(), type=pa.int64() if pool.id_type == "int64" else pa.string()),
        "rank": pa.array(np.arange(n, dtype=np.int64)),
        "score": pa.array(np.asarray(sel.scores, dtype=np.float64)),
        "strategy": pa.array([req.strategy] * n, type=pa.string()),
        "budget": pa.array(np.full(n, int(req.budget), dtype=np.int64)),
        "seed": pa.array(np.full(n, int(req.seed), dtype=np.int64)),
        "round": pa.array([req.round] * n, type=pa.int64()),
        "predicted_class": _class_array(predicted, n),
        "row": pa.array(np.asarray(sel.indices, dtype=np.int64)),
    }
    for name, values in sel.columns.items():
        cols[name] = pa.array(np.asarray(values))
    return pa.table(cols)


def _class_array(predicted: list | None, n: int) -> pa.Array:
    """Always a string column (class names as text; null without a head): one schema for every strategy."""
    if predicted is None:
        return pa.nulls(n, type=pa.string())
    return pa.array([str(c) for c in predicted], type=pa.string())


def run_select(req: SelectRequest, out: str | Path | None = None, *, progress=None,
               pool: Pool | None = None) -> tuple[pa.Table, dict]:
    """Select a batch; write it to ``out`` (atomically) when given. Returns (table, summary)."""
    t0 = time.perf_counter()
    pool = pool if pool is not None else open_pool(req.pool)
    if req.with_columns:  # before the (long) selection: a wrong name is an input error
        from alq.export import available_columns, pool_columns

        pool_columns(pool, np.empty(0, np.int64), req.with_columns) if available_columns(pool) else None
    if req.dedup is not None or req.min_distance is not None:  # --dedup / --min-distance: checked before work
        from alq.dedup import constrain

        constrain.validate(req.dedup, req.min_distance)
    ctx, info = build_context(req, pool, progress=progress)
    strat = get_strategy(req.strategy)
    t_sel = time.perf_counter()
    if req.balance_by is not None and (req.dedup is not None or req.min_distance is not None):
        raise BadInputError("--balance-by cannot be combined with --dedup or --min-distance yet",
                            hint="select balanced and deduplicated batches in two steps, or drop one option")
    if req.dedup is not None or req.min_distance is not None:  # filter the strategy's ranking
        sel = constrain.constrained_select(strat, ctx, dedup=req.dedup, min_distance=req.min_distance,
                                           pending=req.pending, allow_smaller=req.allow_smaller)
        info["budget"] = ctx.budget
    elif req.balance_by is not None:  # each value's share filled by the strategy's own ranking (alq.filters)
        from alq.filters import balanced_select

        sel = balanced_select(strat, ctx, req.balance_by)
    else:
        sel = strat.select(ctx)
    select_seconds = time.perf_counter() - t_sel
    check_selection(sel, ctx, req.strategy)
    predicted = predicted_classes(ctx.head, pool, sel.indices)
    table = selection_table(pool, sel, req, predicted)
    if req.with_columns:
        from alq.export import pool_columns

        extra = pool_columns(pool, sel.indices, req.with_columns)
        for name in extra.column_names:
            if name in table.column_names:
                raise BadInputError(f"--with-columns {name!r} clashes with the selection's own column")
            table = table.append_column(extra.schema.field(name), extra.column(name))
    hist: dict = {}
    if predicted is not None:
        for c in predicted:
            hist[str(c)] = hist.get(str(c), 0) + 1
        hist = dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))
    summary = {"strategy": req.strategy, "seed": int(req.seed), "round": req.round, **info,
               "selected": int(len(sel.indices)), "predicted_class_histogram": hist,
               "options": {k: v for k, v in req.options.items() if v is not None},
               "select_seconds": round(select_seconds, 4), **sel.summary}
    meta = {"kind": KIND, "strategy": req.strategy, "budget": int(req.budget), "seed": int(req.seed),
            "round": req.round, "pool": str(req.pool), "pool_fingerprint": pool.fingerprint,
            "head": shown(req.head) if req.head else None,  # a staged copy is named by its URI
            "head_fingerprint": ctx.head.fingerprint if ctx.head is not None else None,
            "labels": shown(req.labels) if req.labels else None, "pending": [shown(p) for p in req.pending],
            "clusters": shown(req.clusters) if req.clusters else None, "options": summary["options"],
            "dedup": shown(req.dedup) if req.dedup else None, "min_distance": req.min_distance,
            "scores": shown(req.scores) if req.scores else None, "scores_fresh": ctx.scores is not None,
            "score_meaning": get_strategy(req.strategy).score_meaning,
            "where": req.where, "balance_by": req.balance_by,
            "alq_version": __version__, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if out is not None:
        from alq.export import write_rows

        summary["format"] = write_rows(table, out, meta=meta, escape_formulas=req.escape_formulas)
        summary["output"] = str(out)
    summary["seconds"] = round(time.perf_counter() - t0, 4)
    return table, summary
