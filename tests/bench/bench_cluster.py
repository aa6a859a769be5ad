"""Benchmarks for `alq cluster` and `--strategy cluster-margin` (run by `make bench`).

Figures are printed as ratios to a baseline measured in the same run:
clustering time / one streamed pass over the embeddings (the floor of any
pool-wide stage), and cluster-margin selection time / margin top-b
selection on the same pool and head. Absolute seconds and peak RSS are
printed too. Sizes: ALQ_BENCH_CLUSTER_SIZES (default "100000,1000000").

The synthetic pool is a mixture of 2,000 Gaussian components in d=128 with
uneven scales (float16 shards of 262,144 rows): clustered enough that
average linkage has structure to find, noisy enough that kNN search is
not trivial.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[2]
D = 128
SIZES = [int(s) for s in os.environ.get("ALQ_BENCH_CLUSTER_SIZES", "100000,1000000").split(",") if s]
WORK = Path(os.environ.get("ALQ_BENCH_DIR", "/tmp/alq-bench-cluster"))


def mixture(n: int, d: int = D, c: int = 2000, seed: int = 0, chunk: int = 200_000):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)).astype(np.float32)
    scale = rng.uniform(0.3, 0.9, size=c).astype(np.float32)
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        y = rng.integers(0, c, size=m)
        yield (centres[y] + rng.normal(size=(m, d)).astype(np.float32) * scale[y, None]), y


def make_pool(n: int) -> Path:
    from alq.store import PoolWriter

    path = WORK / f"pool-{n}"
    if (path / "manifest.json").exists():
        return path
    w = PoolWriter(path, dtype="float16", overwrite=True)
    for x, _ in mixture(n):
        w.add(x)
    w.close()
    return path


def floor_pass_seconds(path: Path) -> float:
    """One streamed pass over the embeddings (float32 conversion + row norms): the floor."""
    from alq.store import open_pool

    pool = open_pool(path)
    t0 = time.perf_counter()
    total = 0.0
    for block in pool.iter_blocks():
        x = np.asarray(block.vectors, dtype=np.float32)
        total += float(np.einsum("ij,ij->", x, x))
    return time.perf_counter() - t0


def run_cli_measured(*args) -> tuple[float, float, dict]:
    """`alq ARGS --json` in a child process: (wall seconds, peak RSS GiB, parsed JSON)."""
    code = ("import resource, sys, time; from alq.cli import run; t=time.perf_counter(); c=run(sys.argv[1:]); "
            "sys.stderr.write('\\nBENCH %f %d\\n' % (time.perf_counter()-t, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); sys.exit(c)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("BENCH ")][-1].split()
    return float(line[1]), int(line[2]) / 2**20, json.loads(proc.stdout)


@pytest.mark.parametrize("n", SIZES)
def test_bench_cluster_time_and_rss(n):
    path = make_pool(n)
    floor = statistics.median(floor_pass_seconds(path) for _ in range(3))
    repeats = 3 if n <= 200_000 else 1
    runs = [run_cli_measured("cluster", path, "--out", WORK / f"clusters-{n}", "--json", "-q") for _ in range(repeats)]
    wall = statistics.median(r[0] for r in runs)
    rss = max(r[1] for r in runs)
    info = runs[-1][2]
    print(f"\n[cluster N={n} d={D}] {wall:.1f} s (median of {repeats}), peak RSS {rss:.2f} GiB, "
          f"{wall / floor:.0f}x one embedding pass ({floor:.2f} s); method={info['method']} "
          f"clusters={info['n_clusters']} threshold={info['threshold']:.4g} seconds={info['seconds']} "
          f"graph={info.get('graph')}")


def test_bench_graph_vs_exact_ari_20k():
    from sklearn.metrics import adjusted_rand_score

    from alq.cluster.api import ClusterOptions, compute_clusters
    from alq.store import MemoryPool

    x, y = next(mixture(20_000, seed=3, chunk=20_000))
    pool = MemoryPool(x.astype(np.float16).astype(np.float32), shard_rows=5000)
    t0 = time.perf_counter()
    ex, ex_info = compute_clusters(pool, ClusterOptions(method="exact"))
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    gr, gr_info = compute_clusters(pool, ClusterOptions(method="graph"))
    t_graph = time.perf_counter() - t0
    line = (f"\n[ARI graph vs exact, N=20000 d={D}] default cut (eps={ex_info['threshold']:.4g}): "
            f"ARI={adjusted_rand_score(ex, gr):.3f} (exact {ex.max() + 1} clusters, graph {gr.max() + 1}); "
            f"exact {t_exact:.1f} s, graph {t_graph:.1f} s ({t_exact / t_graph:.1f}x faster)")
    for k in (2000, 200, 100):
        ek, _ = compute_clusters(pool, ClusterOptions(method="exact", n_clusters=k))
        gk, _ = compute_clusters(pool, ClusterOptions(method="graph", n_clusters=k))
        line += f"; K={k}: ARI={adjusted_rand_score(ek, gk):.3f} (vs mixture: exact {adjusted_rand_score(y, ek):.3f}, graph {adjusted_rand_score(y, gk):.3f})"
    print(line)


def _head(dim: int, n_classes: int = 10, seed: int = 0):
    import torch

    from alq.model.head import Head, HeadNet

    torch.manual_seed(seed)
    net = HeadNet(dim, n_classes)
    with torch.no_grad():
        net.out.weight.mul_(3.0)
    return Head(nets=[net], classes=list(range(n_classes)))


def _margin_top_b(ctx, b):
    """The margin strategy's work: the same streamed head pass, exact top-b by (margin, row), sorted."""
    from alq.scoring.stream import iter_logits, probabilities
    from alq.scoring.topk import StreamingTopK
    from alq.scoring.uncertainty import margin

    top = StreamingTopK(b)
    for block, _, logits in iter_logits(ctx.pool, ctx.head):
        m = margin(probabilities(ctx.head, logits)).numpy()
        keep = ~ctx.excluded[block.start:block.stop]
        top.push(m[keep], block.indices[keep])
    return top.result()


def test_bench_select_cluster_margin_vs_margin():
    from alq.cluster.api import ClusterOptions, cluster_pool
    from alq.cluster.store import is_cluster_dir, load_clusters
    from alq.engine import LocalEngine
    from alq.store import open_pool
    from alq.strategies import Context, get_strategy, load_all

    n = max(SIZES)
    b = min(100_000, n // 10)
    path = make_pool(n)
    pool = open_pool(path)
    cdir = WORK / f"clusters-{n}"
    if not is_cluster_dir(cdir):
        cluster_pool(pool, cdir, ClusterOptions())
    clusters = load_clusters(cdir, pool)
    head = _head(pool.dim)
    excluded = np.zeros(pool.count, dtype=bool)
    excluded[:: 97] = True
    margin_strategy = get_strategy("margin") if "margin" in load_all() else None

    def ctx():
        return Context(pool=pool, budget=b, seed=0, excluded=excluded, labeled=np.flatnonzero(excluded), head=head,
                       clusters=clusters, engine=LocalEngine())

    def t_margin():
        t0 = time.perf_counter()
        if margin_strategy is not None:
            margin_strategy.select(ctx())
        else:
            _margin_top_b(ctx(), b)
        return time.perf_counter() - t0

    cm = get_strategy("cluster-margin")

    def t_cm():
        t0 = time.perf_counter()
        sel = cm.select(ctx())
        t_cm.summary = sel.summary
        return time.perf_counter() - t0

    t_margin(), t_cm()  # warm the page cache
    tm = statistics.median(t_margin() for _ in range(3))
    tc = statistics.median(t_cm() for _ in range(3))
    which = ("--strategy margin" if margin_strategy is not None
             else "a margin top-b pass (iter_logits + StreamingTopK; margin strategy not in this branch)")
    print(f"\n[select N={n} b={b}] cluster-margin {tc:.2f} s vs {which} {tm:.2f} s: ratio {tc / tm:.2f}x "
          f"(target <= 1.5x); {t_cm.summary}")


def test_bench_default_cut_digits_active_learning():
    """Why the default cut: Cluster-Margin on sklearn's digits with clusters cut at several scales.

    Pool = 1,297 digits, test = 500; 20 random seed labels, 5 rounds of b=60, r=5; linear head
    (L-BFGS, standardised inputs); 8 seeds. Prints, per cut scale (x the median 10th-NN
    distance), the clusters it gives (count, class purity) and the mean test accuracy per
    round, next to margin and random on the same seeds.
    """
    import torch
    from sklearn.datasets import load_digits

    import alq.cluster.api as api
    from alq.cluster.api import ClusterOptions, compute_clusters
    from alq.engine import LocalEngine
    from alq.model.train import TrainOptions, train_head
    from alq.store import MemoryPool
    from alq.strategies import Context
    from alq.strategies.cluster_margin import ClusterMarginStrategy, lowest_margin_rows

    x_all, y_all = load_digits(return_X_y=True)
    x_all = x_all.astype(np.float32)
    split = np.random.default_rng(0).permutation(len(x_all))
    pool_idx, test_idx = split[:1297], split[1297:]
    x, y = x_all[pool_idx], y_all[pool_idx]
    xt, yt = torch.from_numpy(x_all[test_idx]), y_all[test_idx]
    pool = MemoryPool(x)
    classes = list(range(10))
    scales = (0.75, 1.0, 1.25, 1.5, 2.0)
    clusterings = {}
    for s in scales:
        api.AUTO_SCALE = s
        lab, _ = compute_clusters(pool, ClusterOptions(method="exact"))
        purity = sum(np.bincount(y[lab == c]).max() for c in np.unique(lab)) / len(lab)
        clusterings[s] = (lab, purity)
    api.AUTO_SCALE = 1.25
    b, r, rounds, seeds = 60, 5, 5, 8
    curves: dict[str, list[list[float]]] = {}
    for seed in range(seeds):
        start = np.random.default_rng(seed).choice(len(x), 20, replace=False)
        for name in ["random", "margin"] + [f"cluster-margin@{s}" for s in scales]:
            labeled = start.copy()
            accs = []
            for rnd in range(rounds + 1):
                head = train_head(x[labeled], y[labeled], classes, multilabel=False,
                                  opts=TrainOptions(normalize="standardize", seed=seed))
                accs.append(float((head.logits(xt).argmax(1).numpy() == yt).mean()))
                if rnd == rounds:
                    break
                excluded = np.zeros(len(x), bool)
                excluded[labeled] = True
                ctx = Context(pool=pool, budget=b, seed=seed * 100 + rnd, excluded=excluded, labeled=labeled,
                              head=head, engine=LocalEngine(), options={"candidates_ratio": r})
                if name == "random":
                    pick = np.random.default_rng([seed, rnd]).choice(np.flatnonzero(~excluded), b, replace=False)
                elif name == "margin":
                    pick = lowest_margin_rows(ctx, b, "min")[0]
                else:
                    ctx.clusters = clusterings[float(name.split("@")[1])][0]
                    pick = ClusterMarginStrategy().select(ctx).indices
                labeled = np.concatenate([labeled, pick])
            curves.setdefault(name, []).append(accs)
    print(f"\n[default cut: digits AL, b={b}, r={r}, {seeds} seeds; accuracy by round (labels 20..{20 + rounds * b})]")
    for name, runs in curves.items():
        mean = np.mean(runs, axis=0)
        extra = ""
        if name.startswith("cluster-margin@"):
            lab, purity = clusterings[float(name.split("@")[1])]
            extra = f"  clusters={lab.max() + 1} mean size={len(lab) / (lab.max() + 1):.1f} purity={purity:.3f}"
        print(f"  {name:22s} " + " ".join(f"{a:.3f}" for a in mean) + f"  mean={mean[1:].mean():.4f}" + extra)


# -- the kNN stage against plain faiss, on easy, hard and real data (issue 18) ------------------------------------
REAL = REPO.parent / "shared" / "data" / "fashion-mnist-rcnn512"
SCALE_DATA = os.environ.get("ALQ_BENCH_CLUSTER_DATA", "mixture:100000,synth:100000,real:60000").split(",")


def synth_pool(n: int) -> Path:
    """`alq synth`'s default generator (100 classes, separation 4): no neighbourhood structure to exploit."""
    path = WORK / f"synth-{n}"
    if not (path / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "alq", "synth", "--out", str(path), "-n", str(n), "-d", str(D),
                        "-c", "100", "--dtype", "float16", "-q"], check=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    return path


def real_pool(n: int) -> Path | None:
    if not (REAL / "train_embeddings.npy").exists():
        return None
    path = WORK / f"real-{n}"
    if not (path / "manifest.json").exists():
        from alq.store import PoolWriter

        x = np.load(REAL / "train_embeddings.npy", mmap_mode="r")[:n]
        w = PoolWriter(path, dtype="float16", overwrite=True)
        w.add(np.asarray(x, dtype=np.float32))
        w.close()
    return path


def _pool_array(path: Path) -> np.ndarray:
    from alq.store import open_pool

    pool = open_pool(path)
    return np.concatenate([np.asarray(b.vectors, dtype=np.float32) for b in pool.iter_blocks()])


def _sample_recall(got: np.ndarray, truth: np.ndarray, rows: np.ndarray, k: int) -> float:
    hits = 0
    for g, t, r in zip(got, truth, rows):
        hits += len(set(g[g != r][:k].tolist()) & set(t.tolist()))
    return hits / truth.size


def plain_faiss_at_recall(x: np.ndarray, k: int = 10, target: float = 0.95, seed: int = 0) -> list[dict]:
    """Plain faiss kNN graphs of every row at the target recall@k: build + search seconds per configuration.

    Each configuration's parameter (nprobe, efSearch) is the smallest of a doubling sweep that reaches the
    target on the same kind of 1,000-query sample alq measures; the full search is then timed (above 200k rows
    on 10,000 queries and scaled: marked "est").
    """
    import faiss

    n, d = x.shape
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, 1000, replace=False))
    q = x[rows]
    truth = faiss.knn(q, x, k + 1)[1]
    truth = np.array([t[t != r][:k] for t, r in zip(truth, rows)])
    timed = rows if n <= 200_000 else np.sort(rng.choice(n, 10_000, replace=False))
    scale = n / len(timed) if n > 200_000 else 1.0
    out = []

    def full(index, label, build):
        t0 = time.perf_counter()
        index.search(x if scale == 1.0 else x[timed], k + 1)
        search = (time.perf_counter() - t0) * scale
        out.append({"config": label, "build": build, "search": search, "total": build + search,
                    "est": scale != 1.0})

    t0 = time.perf_counter()
    flat = faiss.IndexFlatL2(d)
    flat.add(x)
    full(flat, "flat (exact)", time.perf_counter() - t0)
    del flat
    nlist = int(min(n // 39, round(4 * np.sqrt(n))))
    t0 = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
    ivf.cp.niter = 10
    ivf.train(x[np.sort(rng.choice(n, min(n, 39 * nlist), replace=False))])
    ivf.add(x)
    build = time.perf_counter() - t0
    for p in [1 << i for i in range(20) if (1 << i) <= nlist]:
        ivf.nprobe = p
        if _sample_recall(ivf.search(q, k + 1)[1], truth, rows, k) >= target:
            full(ivf, f"IVF{nlist},Flat nprobe={p}", build)
            break
    del ivf
    t0 = time.perf_counter()
    pq_index = faiss.index_factory(d, f"IVF{nlist},PQ{d // 2}x4fs")
    ref = faiss.IndexRefineFlat(pq_index)
    ref.train(x[np.sort(rng.choice(n, min(n, 39 * nlist), replace=False))])
    ref.add(x)
    ref.k_factor = 8
    build = time.perf_counter() - t0
    for p in [1 << i for i in range(20) if (1 << i) <= nlist]:
        faiss.extract_index_ivf(pq_index).nprobe = p
        if _sample_recall(ref.search(q, k + 1)[1], truth, rows, k) >= target:
            full(ref, f"IVF{nlist},PQ{d // 2}x4fs + exact re-rank x8, nprobe={p}", build)
            break
    del ref, pq_index
    if n <= 200_000:
        t0 = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(d, 32)
        hnsw.hnsw.efConstruction = 80
        hnsw.add(x)
        build = time.perf_counter() - t0
        for ef in (16, 32, 64, 128, 256, 512):
            hnsw.hnsw.efSearch = ef
            if _sample_recall(hnsw.search(q, k + 1)[1], truth, rows, k) >= target:
                full(hnsw, f"HNSW32 efSearch={ef}", build)
                break
    return out


@pytest.mark.parametrize("spec", SCALE_DATA)
def test_bench_cluster_stages_vs_plain_faiss(spec):
    """Whole `alq cluster` (child process: wall, peak RSS) and its stages, against plain faiss in the same run.

    ALQ_BENCH_CLUSTER_DATA: comma-separated kind:rows, kind in mixture (the easy 2,000-component mixture),
    synth (`alq synth` default: hard), real (Fashion-MNIST 512-d embeddings from ../shared/data, if present).
    """
    kind, n = spec.split(":")
    n = int(n)
    path = {"mixture": make_pool, "synth": synth_pool, "real": real_pool}[kind](n)
    if path is None:
        pytest.skip("../shared/data/fashion-mnist-rcnn512 is not here")
    wall, rss, info = run_cli_measured("cluster", path, "--out", WORK / f"clusters-{kind}-{n}", "--json", "-q")
    sec = info["seconds"]
    knn_stage = sec.get("index", 0.0) + sec.get("knn", 0.0)
    x = _pool_array(path)
    base = plain_faiss_at_recall(x)
    best = min(base, key=lambda r: r["total"])
    lines = [f"\n[cluster {kind} N={n} d={x.shape[1]}] whole `alq cluster` {wall:.1f} s, peak RSS {rss:.2f} GiB; "
             f"stages {sec}; {info['n_clusters']} clusters"]
    from alq.cluster.store import read_summary

    idx = read_summary(WORK / f"clusters-{kind}-{n}")["parameters"]["index"]
    lines.append(f"  alq index: {idx.get('index')} nlist={idx.get('nlist')} nprobe={idx.get('nprobe')} "
                 f"recall@10={idx.get('recall_at_k')} ({idx.get('why', 'IVF reached the target')})")
    for r in sorted(base, key=lambda r: r["total"]):
        lines.append(f"  plain faiss {r['config']}: build {r['build']:.1f} s + search {r['search']:.1f} s"
                     f"{' (est)' if r['est'] else ''} = {r['total']:.1f} s")
    lines.append(f"  kNN stage (index + search) {knn_stage:.1f} s = {knn_stage / best['total']:.2f}x the best plain "
                 f"faiss at recall >= 0.95 ({best['config']}); linkage {sec.get('linkage', 0):.1f} s = "
                 f"{sec.get('linkage', 0) / max(knn_stage, 1e-9):.2f}x the kNN stage")
    print("\n".join(lines))


# -- the default cut at large batches on real embeddings (issue 18) -----------------------------------------------
CUT_DIRS = {  # scale of the median 10th-NN distance -> clusters directory (made by `alq cluster --threshold`)
    1.0: "clusters", 1.5: "clusters-x1.5", 2.0: "clusters-x2.0", 3.0: "clusters-x3.0"}


def default_cut_study(seeds: int = 2, settings=((1000, 2000, 4), (2000, 10000, 2))) -> dict:
    """Cluster-Margin vs margin on Fashion-MNIST 60k x 512 at batches of 2,000 and 10,000, per cut.

    Clusters: ``.bench/label-efficiency/full/clusters*`` (the default cut, and ``alq cluster --threshold``
    at 1.5, 2 and 3 x the median 10th-NN distance). Head: linear, pool-standardised, L-BFGS with the L2
    strength chosen by alq's cross-validation on the seed set and kept for the later rounds of that seed
    (a full CV per round, as ``alq simulate`` does, costs hours here for the same comparison).
    Candidate ratio: alq's default (auto). Prints top-1 per round, mean over seeds.
    """
    import dataclasses

    import torch

    from alq.engine import LocalEngine
    from alq.model.train import TrainOptions, train_head
    from alq.store import MemoryPool
    from alq.strategies import Context
    from alq.strategies.cluster_margin import ClusterMarginStrategy, lowest_margin_rows

    base = REPO / ".bench" / "label-efficiency" / "full"
    x = np.load(REAL / "train_embeddings.npy").astype(np.float32)
    y = np.load(REAL / "train_labels.npy").astype(np.int64)
    xt = torch.from_numpy(np.load(REAL / "test_embeddings.npy").astype(np.float32))
    yt = np.load(REAL / "test_labels.npy").astype(np.int64)
    pool = MemoryPool(x)
    cuts = {}
    for s, d in CUT_DIRS.items():
        if (base / d).exists():
            cuts[s] = _cluster_labels(base / d)
    classes = list(range(10))
    out = {}
    for seed_size, b, rounds in settings:
        curves: dict[str, list[list[float]]] = {}
        for seed in range(seeds):
            start = np.random.default_rng(seed).choice(len(x), seed_size, replace=False)
            head0 = train_head(x[start], y[start], classes, multilabel=False, opts=TrainOptions(seed=seed))
            opts = TrainOptions(seed=seed, weight_decay=float(head0.meta["metrics"]["weight_decay"]))
            for name in ["random", "margin"] + [f"cluster-margin@{s}" for s in cuts]:
                labeled, head, accs = start.copy(), head0, []
                for rnd in range(rounds + 1):
                    if rnd:
                        head = train_head(x[labeled], y[labeled], classes, multilabel=False, opts=opts)
                    accs.append(float((head.logits(xt).argmax(1).numpy() == yt).mean()))
                    if rnd == rounds:
                        break
                    excluded = np.zeros(len(x), bool)
                    excluded[labeled] = True
                    ctx = Context(pool=pool, budget=b, seed=seed * 100 + rnd, excluded=excluded, labeled=labeled,
                                  head=head, engine=LocalEngine())
                    if name == "random":
                        pick = np.random.default_rng([seed, rnd]).choice(np.flatnonzero(~excluded), b, replace=False)
                    elif name == "margin":
                        pick = lowest_margin_rows(ctx, b, "min")[0]
                    else:
                        pick = ClusterMarginStrategy().select(
                            dataclasses.replace(ctx, clusters=cuts[float(name.split("@")[1])])).indices
                    labeled = np.concatenate([labeled, pick])
                curves.setdefault(name, []).append(accs)
                print(f"#   b={b} seed {seed} {name}: " + " ".join(f"{a:.4f}" for a in accs), flush=True)
        print(f"\n[default cut: Fashion-MNIST 60k x 512, {seed_size} random seed labels + {rounds} x {b}, "
              f"{seeds} seeds; top-1 by round]")
        for name, runs in curves.items():
            mean = np.mean(runs, axis=0)
            extra = ""
            if name.startswith("cluster-margin@"):
                lab = cuts[float(name.split("@")[1])]
                sizes = np.bincount(lab)
                extra = (f"  clusters={len(sizes):,} singletons={np.mean(sizes[lab] == 1):.0%} of rows "
                         f"mean size={len(lab) / len(sizes):.1f}")
            print(f"  {name:20s} " + " ".join(f"{a:.4f}" for a in mean) + f"  (final - margin: "
                  f"{mean[-1] - np.mean(curves['margin'], axis=0)[-1]:+.4f})" + extra)
        out[b] = curves
    return out


def _cluster_labels(path: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("_"))
    return np.concatenate([pq.read_table(f, columns=["cluster"]).column("cluster").to_numpy() for f in files])


if __name__ == "__main__" and sys.argv[1:2] == ["default-cut"]:
    default_cut_study(int(sys.argv[2]) if len(sys.argv) > 2 else 2)


@pytest.mark.bench
def test_bench_default_cut_fashion_mnist():
    if not (REAL / "train_embeddings.npy").exists():
        pytest.skip("Fashion-MNIST embeddings not found")
    default_cut_study()


# -- 5M rows on a local Ray (issue 18): driver RSS and time against the 1M local run --------------------------------
RAY_ROWS = int(os.environ.get("ALQ_BENCH_CLUSTER_RAY_ROWS", 5_000_000))


def test_bench_cluster_ray_vs_1m_local():
    """`alq cluster --engine ray` (a local 2-CPU Ray) on the bench mixture at RAY_ROWS, beside the local 1M run.

    Driver RSS is the CLI process's peak (Ray's workers are other processes); target <= 8 GB and
    <= 6x the 1M run's wall time at 5M.
    """
    pytest.importorskip("ray")
    small = make_pool(1_000_000)
    t1, rss1, info1 = run_cli_measured("cluster", small, "--out", WORK / "clusters-1000000", "--json", "-q")
    big = make_pool(RAY_ROWS)
    tr, rssr, infor = run_cli_measured("cluster", big, "--out", WORK / f"clusters-ray-{RAY_ROWS}", "--engine", "ray",
                                       "--json", "-q")
    print(f"\n[cluster, bench mixture x {D}] 1M local: {t1:.0f} s, peak RSS {rss1:.2f} GiB, "
          f"{info1['n_clusters']:,} clusters, seconds={info1['seconds']}")
    print(f"[cluster, bench mixture x {D}] {RAY_ROWS:,} on a local Ray: {tr:.0f} s = {tr / t1:.2f}x the 1M run "
          f"(target <= 6x at 5M), driver peak RSS {rssr:.2f} GiB (target <= 8), {infor['n_clusters']:,} clusters, "
          f"seconds={infor['seconds']}, index={infor.get('graph', {}).get('index') if isinstance(infor.get('graph'), dict) else None}")


# -- the IVF quantizer: flat against two-level, at the sizes of ALQ_BENCH_CLUSTER_SIZES (issue 18) ------------------
@pytest.mark.parametrize("n", SIZES)
def test_bench_quantizer_now_vs_flat(n, monkeypatch):
    """One index build per configuration and the planner's search estimate (its timed sample, scaled to N):
    today's (two-level quantizer and lists of ~256 rows from 1M rows) against the one before (a flat quantizer
    over 4 sqrt(N) lists)."""
    from alq.cluster import ivf
    from alq.cluster.knn import build_index
    from alq.store import open_pool

    pool = open_pool(make_pool(n))
    out = []
    for name, from_rows, rows_per_list in (("now", ivf.TWO_LEVEL_FROM, ivf.ROWS_PER_LIST),
                                           ("flat, 4 sqrt(N) lists", n + 1, 10**12)):
        monkeypatch.setattr(ivf, "TWO_LEVEL_FROM", from_rows)
        monkeypatch.setattr(ivf, "ROWS_PER_LIST", rows_per_list)
        t0 = time.perf_counter()
        _, info = build_index(pool, seed=0, k_for_recall=10)
        out.append(f"{name}: {info['nlist']} lists, build {info['build_seconds']:.1f} s, nprobe {info.get('nprobe')} "
                   f"(recall {info['recall_at_k']:.3f}), planned search {info.get('seconds_estimate')} s, "
                   f"whole planning {time.perf_counter() - t0:.1f} s")
    print(f"\n[IVF quantizer, bench mixture {n:,} x {D}] " + "; ".join(out))
