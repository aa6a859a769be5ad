"""BALD: mutual information against hand-computed values; ensemble and seeded MC dropout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _diversity import context, head_for, mixture, pools

from alq.errors import BadInputError
from alq.model.train import TrainOptions, train_head
from alq.store import MemoryPool
from alq.strategies import get_strategy
from alq.strategies.bald import dropout_masks, mutual_information


def test_mutual_information_hand_computed():
    # two members disagree completely: H[mean] = log 2, mean H = 0 -> MI = log 2
    p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert float(mutual_information(p)[0]) == pytest.approx(math.log(2))
    # members agree: MI = 0 whatever the entropy
    q = torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]])
    assert float(mutual_information(q)[0]) == pytest.approx(0.0, abs=1e-12)
    # (0.9, 0.1) and (0.5, 0.5): H(0.7, 0.3) - (H(0.9, 0.1) + log 2) / 2
    r = torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]]])

    def h(*ps):
        return -sum(x * math.log(x) for x in ps)

    assert float(mutual_information(r)[0]) == pytest.approx(h(0.7, 0.3) - (h(0.9, 0.1) + h(0.5, 0.5)) / 2)
    # multi-label: sum over classes of binary MI; class 2 agrees (MI 0)
    m = torch.tensor([[[0.9, 0.3]], [[0.1, 0.3]]])
    assert float(mutual_information(m, multilabel=True)[0]) == pytest.approx(h(0.5, 0.5) - h(0.9, 0.1))


def test_bald_ensemble_selects_top_mi(tmp_path):
    x, y = mixture(400, 8, c=3, sep=1.0, seed=3)
    labeled = np.arange(0, 400, 8)
    head = train_head(x[labeled], y[labeled], [0, 1, 2], multilabel=False,
                      opts=TrainOptions(ensemble=3, bootstrap=True, seed=1))
    for pool in pools(x, tmp_path).values():
        ctx = context(pool, 20, labeled, head=head)
        sel = get_strategy("bald").select(ctx)
        with torch.no_grad():
            probs = torch.stack([torch.softmax(n(torch.from_numpy(x)), 1) for n in head.nets]).double().numpy()
        mean = probs.mean(0)
        ent = lambda p: -(p * np.log(np.where(p > 0, p, 1))).sum(-1)  # noqa: E731
        mi = ent(mean) - ent(probs).mean(0)
        mi[ctx.excluded] = -np.inf
        want = np.lexsort((np.arange(400), -mi))[:20]
        np.testing.assert_array_equal(sel.indices, want)
        np.testing.assert_allclose(sel.scores, mi[want], rtol=1e-5, atol=1e-7)


def test_bald_mc_dropout_is_seeded_and_matches_manual_masks():
    x, y = mixture(300, 8, c=3, sep=1.0, seed=4)
    labeled = np.arange(0, 300, 6)
    head = head_for(x, y, labeled, hidden=16, dropout=0.3)
    pool = MemoryPool(x, shard_rows=37)
    ctx = context(pool, 15, labeled, head=head, seed=5, mc_samples=8)
    sel = get_strategy("bald").select(ctx)
    masks = dropout_masks(16, 0.3, 8, 5)
    np.testing.assert_allclose(np.unique(masks.numpy()), [0.0, 1 / 0.7], rtol=1e-6)
    with torch.no_grad():
        h = head.net.features(torch.from_numpy(x))
        probs = torch.stack([torch.softmax(head.net.out(h * m), 1) for m in masks]).double()
    mi = mutual_information(probs).numpy()
    mi[ctx.excluded] = -np.inf
    np.testing.assert_array_equal(sel.indices, np.lexsort((np.arange(300), -mi))[:15])
    again = get_strategy("bald").select(context(MemoryPool(x), 15, labeled, head=head, seed=5, mc_samples=8))
    np.testing.assert_array_equal(sel.indices, again.indices)  # block size does not matter
    torch.manual_seed(123)  # the global RNG plays no part
    third = get_strategy("bald").select(context(pool, 15, labeled, head=head, seed=5, mc_samples=8))
    np.testing.assert_array_equal(sel.indices, third.indices)


def test_bald_single_linear_head_is_a_clear_error():
    x, y = mixture(100, 4)
    head = head_for(x, y, np.arange(0, 100, 5))
    with pytest.raises(BadInputError, match="--ensemble K"):
        get_strategy("bald").select(context(MemoryPool(x), 5, head=head))
