"""``alq synth`` / alq.synth: determinism, priors, redundancy, labels, streaming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alq.errors import BadInputError
from alq.store import open_pool
from alq.store.labels import read_labels
from alq.synth import SynthSpec, centres, class_priors, iter_groups, synth_arrays, synth_pool


def test_priors_follow_the_imbalance_ratio():
    p = class_priors(5, 16.0)
    assert p.sum() == pytest.approx(1.0) and p[0] / p[-1] == pytest.approx(16.0)
    assert np.all(np.diff(p) < 0)
    np.testing.assert_allclose(p[1:] / p[:-1], 16.0 ** (-1 / 4))  # geometric
    np.testing.assert_allclose(class_priors(4, 1.0), 0.25)


def test_empirical_class_shares_match_priors():
    spec = SynthSpec(n=40_000, dim=4, classes=4, imbalance_ratio=8.0, seed=3)
    _, y = synth_arrays(spec)
    share = np.bincount(y, minlength=4) / len(y)
    np.testing.assert_allclose(share, class_priors(4, 8.0), atol=0.01)


@pytest.mark.parametrize("n,k", [(1000, 1), (1000, 3), (1001, 4), (7, 10)])
def test_redundancy_makes_k_copies(n, k):
    spec = SynthSpec(n=n, dim=8, classes=3, redundancy=k, seed=1)
    x, y = synth_arrays(spec)
    assert x.shape == (n, 8) and y.shape == (n,)
    uniq, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    assert len(uniq) == -(-n // k)
    assert counts.max() == min(k, n) and (counts == k).sum() >= len(uniq) - 1  # only the last point may be short
    for u in range(len(uniq)):  # copies share one label
        assert len(set(y[inverse.ravel() == u].tolist())) == 1


def test_groups_cover_rows_in_order():
    spec = SynthSpec(n=10_000, dim=300, classes=2, redundancy=2)  # several groups
    starts, total = [], 0
    for row0, x, _ in iter_groups(spec):
        assert row0 == total
        starts.append(row0)
        total += len(x)
    assert total == 10_000 and len(starts) > 1


def test_well_separated_classes_are_learnable():
    spec = SynthSpec(n=3000, dim=32, classes=5, separation=8.0, seed=2)
    x, y = synth_arrays(spec)
    mu = centres(spec)
    pred = np.argmin(((x[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)  # nearest true centre
    assert (pred == y).mean() > 0.99


def test_cli_writes_pool_and_labels_deterministically(tmp_path, cli, monkeypatch):
    args = ["-n", "2500", "-d", "12", "-c", "4", "--seed", "5", "--imbalance-ratio", "3", "--redundancy", "2",
            "--shard-rows", "700", "--dtype", "float32"]
    code, out, err = cli("synth", "--out", tmp_path / "a", "--labels-out", tmp_path / "a.parquet", *args, "--json")
    assert code == 0, err
    s = json.loads(out)
    monkeypatch.setenv("ALQ_WORKING_MEMORY", "0.01")  # block sizes must not change the output
    assert cli("synth", "--out", tmp_path / "b", "--labels-out", tmp_path / "b.parquet", *args, "-q")[0] == 0
    a, b = open_pool(tmp_path / "a"), open_pool(tmp_path / "b")
    assert a.fingerprint == b.fingerprint == s["fingerprint"] and a.count == 2500 and a.n_shards == 4
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    x, y = synth_arrays(SynthSpec(n=2500, dim=12, classes=4, seed=5, imbalance_ratio=3, redundancy=2))
    np.testing.assert_array_equal(a.take(np.arange(2500)), x)
    labels = read_labels(tmp_path / "a.parquet")
    np.testing.assert_array_equal(labels.ids, np.arange(2500))
    assert labels.labels == y.tolist()
    assert sum(s["class_counts"].values()) == 2500
    assert a.manifest.extra["synth"]["redundancy"] == 2
    code, out, _ = cli("synth", "--out", tmp_path / "c", *args[:6], "--seed", "6", "--json")
    assert json.loads(out)["fingerprint"] != s["fingerprint"]


def test_string_ids_and_bad_spec(tmp_path, cli):
    assert cli("synth", "--out", tmp_path / "p", "-n", "5", "-d", "2", "--id-prefix", "s", "-q")[0] == 0
    assert open_pool(tmp_path / "p").ids().tolist() == ["s0", "s1", "s2", "s3", "s4"]
    code, _, err = cli("synth", "--out", tmp_path / "q", "-n", "5", "-d", "2", "--imbalance-ratio", "0.5")
    assert code == 2 and "--imbalance-ratio=0.5 must be >= 1" in err and not (tmp_path / "q").exists()
    with pytest.raises(BadInputError, match="--redundancy=0"):
        synth_pool(SynthSpec(n=5, dim=2, classes=2, redundancy=0), tmp_path / "r")
    code, _, err = cli("synth", "--out", tmp_path / "p", "-n", "5", "-d", "2", "--labels-out", tmp_path / "l.parquet")
    assert code == 2 and "already exists" in err and not (tmp_path / "l.parquet").exists()
