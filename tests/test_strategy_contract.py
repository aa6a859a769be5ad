"""The strategy contract, run against every registered strategy (``alq.strategies.load_all()``).

Each strategy gets a :class:`Context` built directly: an in-memory pool cut
into virtual shards, a trained head (an ensemble of two MLP members with
dropout, so ensemble/MC-dropout strategies work), labeled rows, pending rows,
``clusters`` (the mixture component of each row) and, for simulation-only
strategies, the true labels. It must return exactly ``budget`` distinct,
selectable rows with one score each, the same for the same seed; strategies
that need no head must also work with no head and no labels.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import gaussian_pool

from alq.engine import LocalEngine
from alq.errors import BudgetError
from alq.io import write_parquet
from alq.model.train import TrainOptions, train_head
from alq.select import SelectRequest, check_budget, run_select
from alq.simulate.oracle import RowLabels
from alq.store import MemoryPool, PoolWriter
from alq.store.labels import LabelSet
from alq.strategies import REGISTRY, Context, get_strategy, load_all

load_all()
NAMES = sorted(REGISTRY)
N, C = 600, 4


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    x, y = gaussian_pool(N, d=16, c=C, seed=0, sep=3.0)
    rng = np.random.default_rng(0)
    labeled = np.sort(rng.choice(N, 60, replace=False))
    # every class labeled at least twice, so the head knows all C classes
    assert set(np.bincount(y[labeled], minlength=C).tolist()).isdisjoint({0, 1})
    head = train_head(x[labeled], y[labeled], list(range(C)), multilabel=False,
                      opts=TrainOptions(hidden=16, dropout=0.2, ensemble=2, bootstrap=True, epochs=30, holdout=0.0))
    pending = np.sort(rng.choice(np.setdiff1d(np.arange(N), labeled), 25, replace=False))
    excluded = np.zeros(N, bool)
    excluded[labeled] = True
    excluded[pending] = True
    d = tmp_path_factory.mktemp("contract")
    w = PoolWriter(d / "pool", shard_rows=90, dtype="float32")
    w.add(x)
    w.close()
    head.save(d / "head.pt")
    LabelSet(ids=labeled.astype(np.int64), labels=y[labeled].tolist()).write(d / "labels.parquet")
    write_parquet(d / "pending.parquet", pa.table({"id": pa.array(pending.astype(np.int64))}))
    return SimpleNamespace(x=x, y=y, pool=MemoryPool(x, shard_rows=90), head=head, labeled=labeled, pending=pending,
                           excluded=excluded, clusters=y.astype(np.int64), dir=d,
                           true_labels=RowLabels(classes=sorted(set(y.tolist())), y=y.astype(np.int64)))


def make_ctx(world, budget: int, seed: int = 0, *, with_head: bool = True) -> Context:
    if with_head:
        head, labeled, excluded = world.head, world.labeled, world.excluded.copy()
    else:  # no head, no labels: only the pending rows are off limits
        head, labeled = None, np.empty(0, np.int64)
        excluded = np.zeros(N, bool)
        excluded[world.pending] = True
    return Context(pool=world.pool, budget=budget, seed=seed, excluded=excluded, labeled=labeled, head=head,
                   clusters=world.clusters, true_labels=world.true_labels, options={}, engine=LocalEngine(),
                   device=torch.device("cpu"))


def check_contract(sel, ctx):
    idx = np.asarray(sel.indices)
    assert np.issubdtype(idx.dtype, np.integer)
    assert len(idx) == ctx.budget, f"{len(idx)} rows for budget {ctx.budget}"
    assert len(np.asarray(sel.scores)) == ctx.budget
    assert len(np.unique(idx)) == len(idx), "duplicate rows"
    assert idx.min() >= 0 and idx.max() < ctx.pool.count
    assert not ctx.excluded[idx].any(), "selected a labeled or pending row"
    for name, col in sel.columns.items():
        assert len(col) == ctx.budget, f"extra column {name} has the wrong length"


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry_is_described(name):
    cls = REGISTRY[name]
    assert cls.name == name
    assert cls.help and "\n" not in cls.help
    assert cls.score_meaning, f"{name}: say what the score column holds (score_meaning)"
    assert cls.distributed in ("sharded", "partitioned", "driver")


@pytest.mark.parametrize("budget", [1, 25])
@pytest.mark.parametrize("name", NAMES)
def test_exact_budget_unique_selectable_and_deterministic(world, name, budget):
    first = get_strategy(name).select(make_ctx(world, budget, seed=7))
    check_contract(first, make_ctx(world, budget, seed=7))
    again = get_strategy(name).select(make_ctx(world, budget, seed=7))
    np.testing.assert_array_equal(np.asarray(again.indices), np.asarray(first.indices))
    np.testing.assert_array_equal(np.asarray(again.scores), np.asarray(first.scores))


@pytest.mark.parametrize("name", NAMES)
def test_budget_equal_to_every_selectable_row(world, name):
    ctx = make_ctx(world, int((~world.excluded).sum()))
    sel = get_strategy(name).select(ctx)
    check_contract(sel, ctx)
    assert set(np.asarray(sel.indices).tolist()) == set(np.flatnonzero(~world.excluded).tolist())


@pytest.mark.parametrize("name", [n for n in NAMES if not REGISTRY[n].needs_head])
def test_cold_start_without_head_or_labels(world, name):
    ctx = make_ctx(world, 30, seed=3, with_head=False)
    sel = get_strategy(name).select(ctx)
    check_contract(sel, ctx)
    again = get_strategy(name).select(make_ctx(world, 30, seed=3, with_head=False))
    np.testing.assert_array_equal(np.asarray(again.indices), np.asarray(sel.indices))


@pytest.mark.parametrize("name", NAMES)
def test_too_large_budget_is_refused(world, name):
    n_unlabeled = int((~world.excluded).sum())
    with pytest.raises(BudgetError, match=f"exceeds the {n_unlabeled} unlabeled rows"):
        check_budget(n_unlabeled + 1, n_unlabeled, allow_smaller=False)
    if REGISTRY[name].simulation_only:
        return  # `alq select` refuses these before any budget check
    req = SelectRequest(pool=world.dir / "pool", strategy=name, budget=n_unlabeled + 1, head=world.dir / "head.pt",
                        labels=world.dir / "labels.parquet", pending=[world.dir / "pending.parquet"])
    with pytest.raises(BudgetError, match=f"exceeds the {n_unlabeled} unlabeled rows"):
        run_select(req, world.dir / f"{name}.parquet")
    assert not (world.dir / f"{name}.parquet").exists()
