"""partitioned-coreset / partitioned-badge: union of per-partition picks, exact budget split, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from _diversity import context, head_for, mixture, pools
from test_badge import naive_badge
from test_coreset import naive_kcenter

from alq.diversity.partition import plan, random_parts, split_budget
from alq.engine import LocalEngine
from alq.errors import BadInputError
from alq.strategies import get_strategy
from alq.strategies.partitioned import _STREAM


@pytest.mark.parametrize("budget,parts", [(10, 3), (7, 7), (100, 1), (5, 2)])
def test_budget_split_exact(budget, parts):
    split = split_budget(budget, parts)
    assert split.sum() == budget and split.max() - split.min() <= 1 and np.all(np.diff(split) <= 0)


def test_parts_cover_rows_and_fit_their_budget():
    rows = np.arange(3, 1000, 7)
    parts = random_parts(rows, 6, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), rows)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    # the hardest case: budget == every unlabeled row
    for u, _, b in plan(rows, np.arange(0, 10), len(rows), 6, np.random.default_rng(1)):
        assert b == len(u)


@pytest.mark.parametrize("kind", ["coreset", "badge"])
@pytest.mark.parametrize("where", ["memory", "disk"])
def test_partitioned_is_union_of_naive_per_part_runs(tmp_path, kind, where):
    x, y = mixture(420, 8, c=3, sep=1.5, seed=9)
    pool = pools(x, tmp_path)[where]
    labeled = np.arange(0, 420, 10)
    head = head_for(x, y, labeled)
    ctx = context(pool, 31, labeled, pending=[3], head=head, seed=4, partitions=4, processes=1)
    sel = get_strategy(f"partitioned-{kind}").select(ctx)
    assert len(sel.indices) == 31 and len(np.unique(sel.indices)) == 31 and not ctx.excluded[sel.indices].any()
    tasks = plan(np.flatnonzero(~ctx.excluded), np.flatnonzero(ctx.excluded), 31, 4, ctx.rng(_STREAM))
    assert [t[2] for t in tasks] == [8, 8, 8, 7]
    for k, (u, c, b) in enumerate(tasks):
        rng = np.random.default_rng([4, _STREAM + 1, k])
        if kind == "coreset":
            want = naive_kcenter(x, u, c, b, first=None)
        else:
            want = naive_badge(head, x, u, b, rng)
        got = sel.indices[sel.columns["partition"] == k]
        np.testing.assert_array_equal(got, want)
    assert sel.summary[f"partitioned-{kind}"]["part_budgets"] == [8, 8, 8, 7]


def test_process_pool_gives_the_same_selection(tmp_path):
    x, y = mixture(300, 8, c=3, seed=2)
    pool = pools(x, tmp_path)["disk"]
    labeled = np.arange(0, 300, 10)
    head = head_for(x, y, labeled)
    one = get_strategy("partitioned-coreset").select(context(pool, 20, labeled, head=head, partitions=3, processes=1))
    two = get_strategy("partitioned-coreset").select(context(pool, 20, labeled, head=head, partitions=3, processes=2))
    assert two.summary["partitioned-coreset"]["processes"] == 2
    np.testing.assert_array_equal(one.indices, two.indices)
    np.testing.assert_array_equal(one.scores, two.scores)
    assert LocalEngine(processes=2).map(divmod, [(7, 2), (9, 4), (1, 1)]) == [(3, 1), (2, 1), (1, 0)]


def test_bad_partitions_are_clear_errors():
    x, y = mixture(100, 4)
    head = head_for(x, y, np.arange(0, 100, 5))
    from alq.store import MemoryPool

    pool = MemoryPool(x)
    with pytest.raises(BadInputError, match="--partitions=9 exceeds --budget=5"):
        get_strategy("partitioned-badge").select(context(pool, 5, head=head, partitions=9))
    with pytest.raises(BadInputError, match="--partitions"):
        get_strategy("partitioned-badge").select(context(pool, 5, head=head, partitions=0))
