"""alq simulate: the oracle loop, shared seed sets, checkpoints, SIGKILL + resume, balanced-random."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO, gaussian_pool

from alq.simulate import SECONDS_COLUMNS
from alq.simulate.oracle import RowLabels
from alq.store import MemoryPool, PoolWriter
from alq.store.labels import LabelSet
from alq.strategies import Context, get_strategy


def _write(tmp, name, x, labels, ids, shard_rows=150):
    w = PoolWriter(tmp / name, shard_rows=shard_rows, dtype="float32")
    w.add(x, ids=ids)
    w.close()
    LabelSet(ids=ids, labels=labels, multilabel=isinstance(labels[0], tuple)).write(tmp / f"{name}_labels.parquet")


@pytest.fixture
def oracle_files(tmp_path):
    x, y = gaussian_pool(900, d=12, c=4, seed=1, sep=1.2)
    names = np.array(["cat", "dog", "eel", "fox"], dtype=object)
    _write(tmp_path, "pool", x[:700], names[y[:700]].tolist(), np.arange(700, dtype=np.int64))
    _write(tmp_path, "test", x[700:], names[y[700:]].tolist(), np.arange(700, 900, dtype=np.int64))
    return tmp_path, x[:700], names[y[:700]]


def _args(tmp, out, *extra, strategies="random,balanced-random", rounds=3, repeats=2, budget=20):
    return ["simulate", "--pool", tmp / "pool", "--labels", tmp / "pool_labels.parquet", "--test-pool", tmp / "test",
            "--test-labels", tmp / "test_labels.parquet", "--strategies", strategies, "--seed-size", "16",
            "--budget", str(budget), "--rounds", str(rounds), "--repeats", str(repeats), "--seed", "7",
            "--max-iter", "40", "--out", out, "-q", *extra]


def _rows(path):
    return pq.read_table(path).to_pylist()


def _comparable(rows):
    return [{k: v for k, v in r.items() if k not in SECONDS_COLUMNS} for r in rows]


def _same_round(a, b):
    """Two results rows equal in everything but strategy name and wall-clock seconds."""
    return _comparable([{**a, "strategy": ""}]) == _comparable([{**b, "strategy": ""}])


def test_simulation_writes_results_and_selections(oracle_files, cli):
    tmp, x, truth = oracle_files
    code, out, err = cli(*_args(tmp, tmp / "run"), "--json")
    assert code == 0, err
    rows = _rows(tmp / "run" / "results.parquet")
    assert len(rows) == 2 * 2 * 4
    assert [r["n_labeled"] for r in rows[:4]] == [16, 36, 56, 76]
    by = {(r["strategy"], r["repeat"], r["round"]): r for r in rows}
    for rep in range(2):
        # same seed set and same initial head for every strategy within a repeat
        assert _same_round(by[("random", rep, 0)], by[("balanced-random", rep, 0)])
        seed = set(pq.read_table(tmp / "run/selections/_seed-set" / f"r{rep}.parquet")["id"].to_pylist())
        assert len(seed) == 16
        for strat in ("random", "balanced-random"):
            labeled = set(seed)
            for k in range(1, 4):
                sel = pq.read_table(tmp / "run/selections" / strat / f"r{rep}-round{k}.parquet").to_pylist()
                assert {(s["strategy"], s["repeat"], s["round"]) for s in sel} == {(strat, rep, k)}
                ids = [s["id"] for s in sel]
                assert len(set(ids)) == 20 and not labeled & set(ids)
                assert [s["label"] for s in sel] == [truth[i] for i in ids]  # the oracle revealed true labels
                labeled |= set(ids)
                r = by[(strat, rep, k)]
                counts = Counter(truth[i] for i in labeled)
                assert r["class_counts"] == [(c, counts[c]) for c in ("cat", "dog", "eel", "fox")]  # named
                n = [v for _, v in r["class_counts"]]
                assert r["imbalance_ratio"] == pytest.approx(max(n) / min(n))
                assert r["n_selected"] == 20 and r["n_labeled"] == len(labeled)
                assert 0 <= r["top1"] <= 1 and r["top5"] is None and r["map"] is None
                assert len(r["per_class_accuracy"]) == 4
    assert by[("random", 0, 1)]["selection_seed"] != by[("random", 1, 1)]["selection_seed"]
    assert by[("random", 0, 1)]["selection_seed"] != by[("balanced-random", 0, 1)]["selection_seed"]
    # balanced-random buys 5 per class each round (20 / 4 classes)
    for rep in range(2):
        c0 = np.array([v for _, v in by[("balanced-random", rep, 0)]["class_counts"]])
        c3 = np.array([v for _, v in by[("balanced-random", rep, 3)]["class_counts"]])
        assert (c3 - c0).tolist() == [15, 15, 15, 15]
    # every selection file names its cell: the directory reads as one table (pyarrow skips `_seed-set`)
    import pyarrow.dataset as ds

    cells = ds.dataset(tmp / "run" / "selections", format="parquet").to_table(columns=["strategy", "repeat", "round"])
    assert len(set(zip(*(cells.column(c).to_pylist() for c in ("strategy", "repeat", "round"))))) == 2 * 2 * 3
    meta = pq.read_schema(tmp / "run" / "results.parquet").metadata
    assert b"alq.kind" in meta


def test_every_strategy_of_a_repeat_starts_from_the_one_seed_set_head(oracle_files, cli, monkeypatch):
    """R repeats x (1 seed-set head + S strategies x K rounds) trainings, and round 1 of every
    strategy sees the very head object trained on the seed set (not a retrained equal copy)."""
    import alq.simulate.loop as loop

    trained = []
    real_train = loop.train_head

    def counting_train(*args, **kwargs):
        head = real_train(*args, **kwargs)
        trained.append(head)
        return head

    monkeypatch.setattr(loop, "train_head", counting_train)
    seen = {}  # strategy -> [(labeled rows, head object)] per call
    for name in ("random", "balanced-random"):
        cls = type(get_strategy(name))
        real_select = cls.select

        def spy(self, ctx, _real=real_select, _name=name):
            seen.setdefault(_name, []).append((len(ctx.labeled), ctx.head))
            return _real(self, ctx)

        monkeypatch.setattr(cls, "select", spy)
    tmp, *_ = oracle_files
    code, _, err = cli(*_args(tmp, tmp / "run", rounds=2, repeats=2))
    assert code == 0, err
    repeats, strategies, rounds = 2, 2, 2
    assert len(trained) == repeats * (1 + strategies * rounds)
    seed_heads = [trained[r * (1 + strategies * rounds)] for r in range(repeats)]
    for name in ("random", "balanced-random"):
        first_rounds = [head for n_labeled, head in seen[name] if n_labeled == 16]
        assert len(first_rounds) == repeats
        for r in range(repeats):
            assert first_rounds[r] is seed_heads[r]
    rows = _rows(tmp / "run" / "results.parquet")
    by = {(r["strategy"], r["repeat"], r["round"]): r for r in rows}
    for r in range(repeats):  # one shared round-0 record, wall-clock seconds included
        assert by[("random", r, 0)]["train_seconds"] == by[("balanced-random", r, 0)]["train_seconds"]


def _run_random_only(tmp, cli, out, *extra):
    code, _, err = cli(*_args(tmp, out, *extra, strategies="random", rounds=2, repeats=2))
    assert code == 0, err
    return _rows(out / "results.parquet")


def test_same_seed_same_results_and_other_seed_differs(oracle_files, cli):
    tmp, *_ = oracle_files
    a = _run_random_only(tmp, cli, tmp / "a")
    b = _run_random_only(tmp, cli, tmp / "b")
    assert _comparable(a) == _comparable(b)
    args = _args(tmp, tmp / "c", strategies="random", rounds=2, repeats=2)
    args[args.index("--seed") + 1] = "8"
    assert cli(*args)[0] == 0
    assert _comparable(_rows(tmp / "c" / "results.parquet")) != _comparable(a)


def test_resume_after_sigkill_matches_uninterrupted_run(oracle_files, cli):
    tmp, *_ = oracle_files
    args = _args(tmp, tmp / "ref", rounds=5, repeats=2, budget=15)
    assert cli(*args)[0] == 0
    ref = _rows(tmp / "ref" / "results.parquet")

    run = tmp / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    kargs = [str(a) for a in _args(tmp, run, rounds=5, repeats=2, budget=15)]
    proc = subprocess.Popen([sys.executable, "-m", "alq", *kargs], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    first = run / "state" / "random" / "r0" / "round-1.json"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    committed = sorted(run.glob("state/*/r*/round-*.json"))
    assert 1 <= len(committed) < 2 + 2 * 2 * 5, "the run should have been killed mid-way"
    if (run / "results.parquet").exists():  # whatever was published is a readable results file
        partial = _rows(run / "results.parquet")
        assert len(partial) < len(ref)
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in committed}

    code, out, err = cli(*_args(tmp, run, rounds=5, repeats=2, budget=15), "--resume", "--json")
    assert code == 0, err
    import json

    summary = json.loads(out)
    assert summary["rounds_resumed"] >= len([p for p in committed if "_seed-set" not in str(p)])
    assert summary["rounds_run"] + summary["rounds_resumed"] == 2 * 2 * 5
    for p, (mtime, data) in stamps.items():  # finished rounds were not redone
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data
    assert _comparable(_rows(run / "results.parquet")) == _comparable(ref)
    for f in sorted((tmp / "ref" / "selections").rglob("*.parquet")):
        g = run / "selections" / f.relative_to(tmp / "ref" / "selections")
        assert pq.read_table(f).equals(pq.read_table(g)), f
    assert not (run / ".lock").exists()


def test_remote_run_is_checkpointed_each_round_and_resumes_after_sigkill(oracle_files, cli, s3_bucket):
    """A run staged for s3:// publishes its committed rounds as it goes (ALQ_CHECKPOINT_SECONDS=0: every
    round), so SIGKILL loses only the round in flight and --resume finishes with the uninterrupted results."""
    from alq import fs
    from alq.staging import resolve

    tmp, *_ = oracle_files
    assert cli(*_args(tmp, tmp / "ref", rounds=3, repeats=1, budget=15))[0] == 0
    ref = _rows(tmp / "ref" / "results.parquet")
    run = fs.join(s3_bucket, "run")
    env = dict(os.environ, PYTHONPATH=str(REPO), ALQ_CHECKPOINT_SECONDS="0")
    proc = subprocess.Popen([sys.executable, "-m", "alq", *map(str, _args(tmp, run, rounds=3, repeats=1, budget=15))],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def published_rounds() -> int:
        if not fs.exists(fs.join(run, fs.POINTER)):
            return 0
        names = fs.listdir(fs.current_generation(run), recursive=True)
        return sum(1 for n in names if n.startswith("state/") and "/round-" in n)

    deadline = time.monotonic() + 120
    while published_rounds() < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert published_rounds() >= 2
    assert ".lock" not in fs.listdir(fs.current_generation(run))  # the local lock is never published
    code, out, err = cli(*_args(tmp, run, rounds=3, repeats=1, budget=15), "--resume", "--json")
    assert code == 0, err
    import json

    assert json.loads(out)["rounds_resumed"] >= 1
    with fs.staged_input(resolve(fs.join(run, "results.parquet"))) as got:
        assert _comparable(_rows(got)) == _comparable(ref)


def test_existing_run_needs_resume_or_overwrite(oracle_files, cli):
    tmp, *_ = oracle_files
    first = _run_random_only(tmp, cli, tmp / "run")
    code, _, err = cli(*_args(tmp, tmp / "run", strategies="random", rounds=2, repeats=2))
    assert code == 2 and "--resume" in err
    # a resumed run with other settings is refused, naming the setting
    code, _, err = cli(*_args(tmp, tmp / "run", "--resume", "--weight-decay", "0.1", strategies="random",
                              rounds=2, repeats=2))
    assert code == 2 and "weight_decay" in err
    code, _, err = cli(*_args(tmp, tmp / "run", "--resume", strategies="random", rounds=2, repeats=2, budget=30))
    assert code == 2 and "labels per round" in err
    assert _rows(tmp / "run" / "results.parquet") == first  # untouched by the refused runs
    code, _, err = cli(*_args(tmp, tmp / "run", "--overwrite", strategies="random", rounds=1, repeats=1))
    assert code == 0, err
    assert len(_rows(tmp / "run" / "results.parquet")) == 2


def test_resume_can_add_strategies_and_rounds(oracle_files, cli):
    tmp, *_ = oracle_files
    first = _run_random_only(tmp, cli, tmp / "run")
    code, _, err = cli(*_args(tmp, tmp / "run", "--resume", strategies="random,balanced-random", rounds=3,
                              repeats=2))
    assert code == 0, err
    rows = _rows(tmp / "run" / "results.parquet")
    assert len(rows) == 2 * 2 * 4
    old = {(r["strategy"], r["repeat"], r["round"]): r for r in first}
    new = {(r["strategy"], r["repeat"], r["round"]): r for r in rows}
    for key, r in old.items():
        assert new[key] == r
    assert _same_round(new[("balanced-random", 1, 0)], new[("random", 1, 0)])
    ref_args = _args(tmp, tmp / "ref", strategies="random,balanced-random", rounds=3, repeats=2)
    assert cli(*ref_args)[0] == 0
    assert _comparable(_rows(tmp / "ref" / "results.parquet")) == _comparable(rows)


def test_update_mode_and_total_budget(oracle_files, cli):
    tmp, *_ = oracle_files
    args = [a for a in _args(tmp, tmp / "run", "--head-mode", "update", "--total-budget", "50", "--hidden", "8",
                             "--normalize", "standardize", strategies="random", repeats=1)]
    i = args.index("--rounds")
    del args[i:i + 2]
    code, _, err = cli(*args)
    assert code == 0, err
    rows = _rows(tmp / "run" / "results.parquet")
    assert [r["n_labeled"] for r in rows] == [16, 36, 56, 66]
    assert [r["n_selected"] for r in rows] == [16, 20, 20, 10]
    reset = _run_random_only(tmp, cli, tmp / "reset")
    assert rows[1]["top1"] is not None and reset[1]["n_labeled"] == 36


@pytest.mark.parametrize("extra, message", [
    (["--budget", "400"], "exceeds the pool"),
    (["--strategies", "nope"], "not known"),
    (["--head-mode", "sometimes"], "--head-mode"),
    (["--seed-size", "0"], "--seed-size"),
    (["--normalize", "zscore"], "--normalize"),
    (["--repeats", "0"], "--repeats"),
])
def test_bad_arguments_exit_2_and_write_nothing(oracle_files, cli, extra, message):
    tmp, *_ = oracle_files
    args = _args(tmp, tmp / "run")
    for k in range(0, len(extra), 2):
        if extra[k] in args:
            args[args.index(extra[k]) + 1] = extra[k + 1]
        else:
            args += extra[k:k + 2]
    code, _, err = cli(*args)
    assert code == 2, err
    assert message in err
    assert not (tmp / "run").exists()


def test_unlabeled_pool_row_is_named(oracle_files, cli):
    tmp, x, truth = oracle_files
    LabelSet(ids=np.arange(1, 700, dtype=np.int64), labels=truth[1:].tolist()).write(tmp / "pool_labels.parquet")
    code, _, err = cli(*_args(tmp, tmp / "run"))
    assert code == 2 and "pool row 0 (id 0) has no label" in err


def test_multilabel_simulation(tmp_path, cli):
    rng = np.random.default_rng(4)
    x, y = gaussian_pool(500, d=10, c=3, seed=2, sep=2.0)
    extra = rng.random(500) < 0.3
    labels = [tuple(sorted({f"c{a}"} | ({f"c{(a + 1) % 3}"} if e else set()))) for a, e in zip(y, extra)]
    _write(tmp_path, "pool", x[:400], labels[:400], np.arange(400, dtype=np.int64))
    _write(tmp_path, "test", x[400:], labels[400:], np.arange(400, 500, dtype=np.int64))
    code, _, err = cli(*_args(tmp_path, tmp_path / "run", rounds=2, repeats=1))
    assert code == 0, err
    rows = _rows(tmp_path / "run" / "results.parquet")
    assert all(0 < r["map"] <= 1 and 0 < r["pooled_ap"] <= 1 for r in rows)
    sel = pq.read_table(tmp_path / "run/selections/random/r0-round1.parquet").to_pylist()
    assert all(list(s["label"]) == list(labels[s["id"]]) for s in sel)
    r = rows[-1]
    counts = Counter(c for i in _labeled_ids(tmp_path / "run", "balanced-random", 0, 2) for c in labels[i])
    assert r["class_counts"] == [(c, counts[c]) for c in ("c0", "c1", "c2")]


def _labeled_ids(run, strategy, rep, k):
    ids = pq.read_table(run / "selections/_seed-set" / f"r{rep}.parquet")["id"].to_pylist()
    for j in range(1, k + 1):
        ids += pq.read_table(run / "selections" / strategy / f"r{rep}-round{j}.parquet")["id"].to_pylist()
    return ids


# -- balanced-random ---------------------------------------------------------------------------------
def _brute_balanced(classes_of: list[set], excluded: np.ndarray, keys: np.ndarray, class_order, budget):
    """Round-robin by hand: each class in turn takes its smallest-key untaken row carrying it."""
    taken: list[int] = []
    while len(taken) < budget:
        progressed = False
        for c in class_order:
            cands = [i for i in range(len(keys)) if c in classes_of[i] and not excluded[i] and i not in taken]
            if cands:
                taken.append(min(cands, key=lambda i: keys[i]))
                progressed = True
                if len(taken) == budget:
                    break
        if not progressed:
            break
    return taken


@pytest.mark.parametrize("budget", [1, 7, 12, 40, 95])
def test_balanced_random_matches_round_robin_reference(budget):
    rng = np.random.default_rng(budget)
    n, c = 120, 5
    y = rng.choice(c, size=n, p=[0.5, 0.25, 0.15, 0.08, 0.02])
    excluded = rng.random(n) < 0.2
    pool = MemoryPool(rng.normal(size=(n, 4)).astype(np.float32), shard_rows=50)
    truth = RowLabels(classes=list("abcde"), y=y.astype(np.int64))
    ctx = Context(pool=pool, budget=budget, seed=11, excluded=excluded, labeled=np.flatnonzero(excluded),
                  true_labels=truth)
    sel = get_strategy("balanced-random").select(ctx)
    g = ctx.rng()
    perm = g.permutation(c)
    keys = g.random(n)
    want = _brute_balanced([{int(v)} for v in y], excluded, keys, perm.tolist(), budget)
    assert sel.indices.tolist() == want
    got = Counter(y[sel.indices].tolist())
    avail = Counter(y[~excluded].tolist())
    if budget <= c * min(avail.values()):  # no class runs out: floor or ceil of b/C each
        assert set(got.values()) <= {budget // c, -(-budget // c)}


def test_balanced_random_multilabel_matches_reference():
    rng = np.random.default_rng(0)
    n, c = 60, 4
    rows = [sorted(set(rng.choice(c, size=int(rng.integers(0, 3)), replace=False).tolist())) for _ in range(n)]
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    truth = RowLabels(classes=list("abcd"), multilabel=True, indptr=indptr,
                      indices=np.array([v for r in rows for v in r], dtype=np.int64))
    excluded = rng.random(n) < 0.1
    pool = MemoryPool(rng.normal(size=(n, 3)).astype(np.float32))
    for budget in (5, 30, int((~excluded).sum())):
        ctx = Context(pool=pool, budget=budget, seed=3, excluded=excluded, labeled=np.flatnonzero(excluded),
                      true_labels=truth)
        sel = get_strategy("balanced-random").select(ctx)
        g = ctx.rng()
        perm = g.permutation(c)
        keys = g.random(n)
        want = _brute_balanced([set(r) for r in rows], excluded, keys, perm.tolist(), budget)
        rest = [i for i in np.argsort(keys, kind="stable") if not excluded[i] and i not in want]
        want = want + rest[:budget - len(want)]  # rows without any label fill the end
        assert sel.indices.tolist() == want
        assert len(set(sel.indices.tolist())) == budget and not excluded[sel.indices].any()


def test_balanced_random_refused_outside_simulate(small_pool, cli):
    path, *_ = small_pool
    code, _, err = cli("select", path, "--strategy", "balanced-random", "--budget", "5", "--out",
                       path.parent / "s.parquet")
    assert code == 2 and "simulate" in err


@pytest.mark.parametrize("command", ["simulate", "report", "transform"])
def test_help_has_an_example(cli, command):
    code, out, _ = cli(command, "--help")
    assert code == 0 and "Example:" in out and f"alq {command}" in out


def test_resume_refuses_fewer_rounds_or_repeats_than_stored(oracle_files, cli):
    tmp, *_ = oracle_files
    first = _run_random_only(tmp, cli, tmp / "run")  # 2 rounds, 2 repeats
    code, _, err = cli(*_args(tmp, tmp / "run", "--resume", strategies="random", rounds=1, repeats=2))
    assert code == 2 and "has 2 rounds" in err and "--rounds 2" in err
    code, _, err = cli(*_args(tmp, tmp / "run", "--resume", strategies="random", rounds=2, repeats=1))
    assert code == 2 and "has 2 repeats" in err and "--repeats 2" in err
    assert _rows(tmp / "run" / "results.parquet") == first
