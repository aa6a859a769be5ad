"""Uncertainty strategies (least-confidence, margin, entropy) against brute-force references.

The reference recomputes the head in float64 with numpy (full softmax or
sigmoid over the whole pool), scores every selectable row and takes the first
b of a full ``np.lexsort`` by (key, row index): the documented tie-break.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import gaussian_pool

from alq.engine import LocalEngine
from alq.errors import BadInputError
from alq.model.train import TrainOptions, train_head
from alq.scoring.uncertainty import measures_from_logits
from alq.store import MemoryPool, PoolWriter, open_pool
from alq.strategies import Context, get_strategy, load_all

UNCERTAINTY = {"margin": "margin", "entropy": "entropy", "least-confidence": "least_confidence"}
MINE = ["random", "margin", "entropy", "least-confidence", "mase", "base"]


# -- references ------------------------------------------------------------------
def ref_features(head, x):
    """float64 features (input of the last linear layer) from the head's weights."""
    net = head.net
    x = np.asarray(x, dtype=np.float64)
    if net.normalize == "l2":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    elif net.normalize == "standardize":
        x = (x - net.mean.double().numpy()) / net.scale.double().numpy()
    if net.hidden:
        lin = net.body[0]
        x = np.maximum(x @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy(), 0)
    return x


def ref_logits(head, x):
    w = head.net.out.weight.detach().double().numpy()
    return ref_features(head, x) @ w.T + head.net.out.bias.detach().double().numpy()


def ref_measure(z, measure, multilabel, aggregate="min"):
    if multilabel:
        p = 1 / (1 + np.exp(-z))
        m = np.abs(2 * p - 1)
        agg = m.min(1) if aggregate == "min" else m.mean(1)
        if measure == "margin":
            return agg
        if measure == "least_confidence":
            return (1 + agg) / 2
        pc = np.clip(p, 1e-300, 1 - 1e-16)
        return -(pc * np.log(pc) + (1 - pc) * np.log1p(-pc)).sum(1)
    e = np.exp(z - z.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)  # the full softmax
    srt = np.sort(p, axis=1)[:, ::-1]
    if measure == "margin":
        return srt[:, 0] - srt[:, 1]
    if measure == "least_confidence":
        return srt[:, 0]
    return -(p * np.log(np.maximum(p, 1e-300))).sum(1)


def ref_select(key, excluded, b):
    """First b selectable rows of a full sort by (key, row)."""
    rows = np.flatnonzero(~excluded)
    order = np.lexsort((rows, key[rows]))
    return rows[order[:b]], key[rows[order[:b]]]


def assert_clear_cut(key, excluded, b, picked):
    """Precondition: no near-tie (< 1e-6) straddles the cut except exact duplicates, so float32 vs
    float64 rounding cannot change which rows a correct implementation picks."""
    rows = np.flatnonzero(~excluded)
    srt = np.sort(key[rows])
    if b < len(srt):
        gap = srt[b] - srt[b - 1]
        assert gap == 0 or gap > 1e-6, f"test data has a near-tie at the cut ({gap})"


# -- worlds ----------------------------------------------------------------------
def _world(multilabel: bool, seed: int = 0, n: int = 700, hidden: int = 0):
    x, y = gaussian_pool(n, d=12, c=5, seed=seed, sep=1.2)
    rng = np.random.default_rng(seed)
    labeled = rng.choice(n, 80, replace=False)
    if multilabel:
        t = np.zeros((n, 5), np.float32)
        t[np.arange(n), y] = 1
        t[np.arange(n), (y + 2) % 5] = rng.random(n) < 0.4
        head = train_head(x[labeled], t[labeled], list(range(5)), multilabel=True,
                          opts=TrainOptions(holdout=0.0, hidden=hidden))
    else:
        head = train_head(x[labeled], y[labeled], [f"c{i}" for i in range(5)], multilabel=False,
                          opts=TrainOptions(holdout=0.0, hidden=hidden, weight_decay=1e-2))
    excluded = np.zeros(n, bool)
    excluded[labeled] = True
    pending = rng.choice(np.flatnonzero(~excluded), 30, replace=False)
    excluded[pending] = True
    return x, y, head, excluded, labeled


def _ctx(pool, head, excluded, labeled, budget, *, seed=0, options=None, engine=None):
    return Context(pool=pool, budget=budget, seed=seed, excluded=excluded, labeled=np.asarray(labeled, np.int64),
                   head=head, options=dict(options or {}), engine=engine or LocalEngine(), device=torch.device("cpu"))


@pytest.fixture(scope="module")
def multiclass_world():
    return _world(False)


@pytest.fixture(scope="module")
def multilabel_world():
    return _world(True, seed=3)


# -- kernels -----------------------------------------------------------------------
@pytest.mark.parametrize("multilabel", [False, True])
def test_measures_from_logits_match_float64(multilabel):
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(500, 7)) * rng.choice([0.1, 1, 5, 20], size=(500, 1))).astype(np.float32)
    got = measures_from_logits(torch.from_numpy(z), multilabel=multilabel)
    for name in ("margin", "least_confidence", "entropy"):
        want = ref_measure(z.astype(np.float64), name, multilabel)
        assert got[name].dtype == torch.float64
        np.testing.assert_allclose(got[name].numpy(), want, rtol=2e-5, atol=2e-6, err_msg=name)


def test_multilabel_values_hand_computed():
    p = np.array([[0.9, 0.5, 0.2], [0.99, 0.01, 0.7]])
    z = torch.from_numpy(np.log(p / (1 - p)))  # logits of these probabilities
    mn = measures_from_logits(z, multilabel=True, aggregate="min")
    mean = measures_from_logits(z, multilabel=True, aggregate="mean")
    # |2p - 1| = [[0.8, 0, 0.6], [0.98, 0.98, 0.4]]
    np.testing.assert_allclose(mn["margin"].numpy(), [0.0, 0.4], atol=1e-12)
    np.testing.assert_allclose(mean["margin"].numpy(), [1.4 / 3, 2.36 / 3], atol=1e-12)
    np.testing.assert_allclose(mn["least_confidence"].numpy(), [0.5, 0.7], atol=1e-12)
    np.testing.assert_allclose(mean["least_confidence"].numpy(), [(1 + 1.4 / 3) / 2, (1 + 2.36 / 3) / 2], atol=1e-12)
    # H(0.9) + H(0.5) + H(0.2) = 0.325083 + 0.693147 + 0.500402; H(0.99) + H(0.01) + H(0.7) = 2 x 0.056002 + 0.610864
    np.testing.assert_allclose(mn["entropy"].numpy(), [1.518633, 0.722867], atol=2e-6)


# -- strategies vs brute force -------------------------------------------------------
@pytest.mark.parametrize("strategy", list(UNCERTAINTY))
@pytest.mark.parametrize("world_name,aggregate", [("multiclass_world", None), ("multilabel_world", "min"),
                                                  ("multilabel_world", "mean")])
@pytest.mark.parametrize("budget", [1, 37])
def test_matches_bruteforce(request, strategy, world_name, aggregate, budget):
    x, _, head, excluded, labeled = request.getfixturevalue(world_name)
    measure = UNCERTAINTY[strategy]
    values = ref_measure(ref_logits(head, x), measure, head.multilabel, aggregate or "min")
    key = -values if measure == "entropy" else values
    want_rows, want_key = ref_select(key, excluded, budget)
    assert_clear_cut(key, excluded, budget, want_rows)
    pool = MemoryPool(x, shard_rows=97)
    sel = get_strategy(strategy).select(_ctx(pool, head, excluded, labeled, budget,
                                              options={"aggregate": aggregate}))
    np.testing.assert_array_equal(sel.indices, want_rows)
    want_scores = -want_key if measure == "entropy" else want_key
    np.testing.assert_allclose(sel.scores, want_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", list(UNCERTAINTY))
def test_ties_go_to_the_smaller_row(multiclass_world, strategy):
    """Copies of the most uncertain row, scattered over shards, are taken in row order."""
    x, _, head, excluded, labeled = multiclass_world
    measure = UNCERTAINTY[strategy]
    values = ref_measure(ref_logits(head, x), measure, False)
    key = np.where(excluded, np.inf, -values if measure == "entropy" else values)
    best = int(np.argmin(key))
    x = x.copy()
    copies = np.array([5, 96, 97, 98, 400, 699])
    copies = copies[~excluded[copies]]
    x[copies] = x[best]
    sel = get_strategy(strategy).select(_ctx(MemoryPool(x, shard_rows=97), head, excluded, labeled, len(copies) + 1))
    tied = np.sort(np.append(copies, best))
    np.testing.assert_array_equal(sel.indices, tied)
    assert len(set(sel.scores.tolist())) == 1


# -- streamed == in memory --------------------------------------------------------------
class _ThreeTasks(LocalEngine):
    def default_tasks(self, pool):
        return 3


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_streamed_equals_in_memory(tmp_path, monkeypatch, multiclass_world, dtype):
    """Every strategy gives bitwise the same rows and scores for any ALQ_WORKING_MEMORY, on disk
    or in memory, in one task or three."""
    x, _, head, excluded, labeled = multiclass_world
    x = x.astype(dtype)
    w = PoolWriter(tmp_path / "pool", shard_rows=101, dtype=dtype)
    w.add(x)
    w.close()
    disk = open_pool(tmp_path / "pool")
    mem = MemoryPool(x, shard_rows=101)
    load_all()
    want = {s: get_strategy(s).select(_ctx(mem, head, excluded, labeled, 33, seed=4)) for s in MINE}
    for mib in ("0.005", "0.05", "1", "256"):
        monkeypatch.setenv("ALQ_WORKING_MEMORY", mib)
        for engine in (LocalEngine(), _ThreeTasks()):
            for s in MINE:
                got = get_strategy(s).select(_ctx(disk, head, excluded, labeled, 33, seed=4, engine=engine))
                np.testing.assert_array_equal(got.indices, want[s].indices, err_msg=f"{s} at {mib} MiB")
                np.testing.assert_array_equal(got.scores, want[s].scores, err_msg=f"{s} at {mib} MiB")


def test_mlp_head_uncertainty_matches_bruteforce():
    x, _, head, excluded, labeled = _world(False, seed=5, hidden=16)
    values = ref_measure(ref_logits(head, x), "margin", False)
    want, _ = ref_select(values, excluded, 25)
    assert_clear_cut(values, excluded, 25, want)
    sel = get_strategy("margin").select(_ctx(MemoryPool(x, shard_rows=64), head, excluded, labeled, 25))
    np.testing.assert_array_equal(sel.indices, want)


def test_bad_aggregate_refused(multilabel_world):
    x, _, head, excluded, labeled = multilabel_world
    with pytest.raises(BadInputError, match="--aggregate='max'"):
        get_strategy("margin").select(_ctx(MemoryPool(x), head, excluded, labeled, 3, options={"aggregate": "max"}))


@pytest.mark.parametrize("kw", [dict(), dict(hidden=16), dict(normalize="l2"), dict(normalize="standardize", hidden=8)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_reused_buffers_give_bitwise_the_head_outputs(kw, dtype):
    """The streamed passes write logits into reused scratch memory: same kernels, same bits as net(x)."""
    from alq.model.head import HeadNet
    from alq.scoring.stream import Buffers, forward_into

    net = HeadNet(12, 5, **kw).eval()
    with torch.no_grad():
        net.mean.normal_(generator=torch.Generator().manual_seed(0))
        net.scale.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(1))
    buffers = Buffers(torch.device("cpu"))
    for n in (64, 300, 37, 128):  # shrinking and growing blocks reuse the buffers
        x = np.random.default_rng(n).normal(size=(n, 12)).astype(dtype)
        feats, z = forward_into(net, x, buffers)
        with torch.no_grad():
            xt = torch.from_numpy(x).float()
            assert torch.equal(z, net(xt)) and torch.equal(feats, net.features(xt))


def test_extreme_logits_stay_finite_and_ordered():
    """Gaps far beyond float32's exp range (clamped at -87 to avoid denormals) give finite, ordered values."""
    z = torch.tensor([[0.0, -200.0, -300.0], [0.0, -90.0, -1.0], [0.0, -50.0, -60.0], [0.0, 0.0, -500.0]])
    m = measures_from_logits(z.clone(), multilabel=False, inplace=True)
    assert torch.isfinite(m["entropy"]).all() and (m["entropy"] >= 0).all()
    assert m["margin"][0] == 1.0 and m["least_confidence"][0] == 1.0 and m["entropy"][0] < 1e-30
    assert m["margin"][3] == 0.0  # tied maximum
    assert m["entropy"][1] > m["entropy"][2] > m["entropy"][0]
    ml = measures_from_logits(torch.tensor([[200.0, -200.0, 0.5]]), multilabel=True)
    assert torch.isfinite(ml["entropy"]).all() and ml["margin"][0] == pytest.approx(np.tanh(0.25))
