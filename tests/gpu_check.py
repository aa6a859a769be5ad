"""`make gpu-check`: run every CUDA / faiss-gpu path of alq on a synthetic pool and compare it with the CPU.

Each step is an ``alq`` command run twice through the CLI, once on the GPU
(``ALQ_DEVICE=cuda``) and once on the CPU (``ALQ_DEVICE=cpu`` and
``CUDA_VISIBLE_DEVICES=""``: torch and faiss both stay on the CPU), with the
same inputs. For every step it prints whether the two outputs are

- ``identical``: the same rows in the same order and bitwise-equal scores;
- ``same up to ties``: the scores agree within rounding at every rank and the
  rows differ only where scores tie (or, for clusters, the same partition
  under other cluster ids);
- ``differs``: anything else, with the overlap of the selected ids and the
  largest absolute score difference, so one can judge how much;

and the GPU / CPU wall-time ratio (each run's wall time includes the
interpreter and CUDA start-up).

On a machine with no NVIDIA GPU (no ``nvidia-smi``, or torch sees no CUDA)
it says so in one line, runs the CPU half only and exits 0. With a GPU it
first builds a separate virtualenv ``.gpu-venv`` (a CUDA torch wheel and
faiss-gpu, never faiss-cpu beside it; the default ``.venv`` is not touched)
and runs both halves with that interpreter.

Sizes: ``--size full`` (the default with a GPU; the GPU box: 2M x 256 select/score pool,
1M x 256 diversity pool, 1M x 128 cluster pool, meant to finish inside 8
minutes on one H200 with 16 cores), ``--size small`` (a few minutes on a
2-core CPU machine; the default without a GPU), ``--size tiny`` (seconds; the unit test). Any size can be
overridden (``--rows``, ``--div-rows``, ``--cluster-rows`` ...).

    python tests/gpu_check.py --size small --cpu-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GPU_VENV = ROOT / ".gpu-venv"
GPU_STAMP = ".alq-gpu-installed"

IDENTICAL, TIES, DIFFERS, SKIPPED, FAILED = "identical", "same up to ties", "differs", "skipped", "FAILED"

SIZES = {
    # N/d of the select/score pool, the diversity pool, the cluster pool; exact-HAC rows; simulate pool/test
    "full": dict(rows=2_000_000, dim=256, classes=100, labeled=10_000, budget=10_000,
                 div_rows=1_000_000, div_budget=10_000, greedy_budget=1_000,
                 cluster_rows=1_000_000, cluster_dim=128, exact_rows=10_000,
                 sim_rows=100_000, sim_test=10_000, sim_budget=1_000, hidden=256, working_memory=8192),
    "small": dict(rows=100_000, dim=64, classes=20, labeled=2_000, budget=1_000,
                  div_rows=30_000, div_budget=500, greedy_budget=200,
                  cluster_rows=60_000, cluster_dim=32, exact_rows=3_000,
                  sim_rows=10_000, sim_test=2_000, sim_budget=200, hidden=64, working_memory=512),
    "tiny": dict(rows=4_000, dim=16, classes=5, labeled=300, budget=100,
                 div_rows=2_000, div_budget=50, greedy_budget=30,
                 cluster_rows=3_000, cluster_dim=8, exact_rows=500,
                 sim_rows=1_500, sim_test=300, sim_budget=40, hidden=16, working_memory=128),
}


# ---------------------------------------------------------------------------------------------
# comparison logic (pure functions; tests/test_gpu_check.py pins them)
# ---------------------------------------------------------------------------------------------
def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Elementwise |a - b| <= atol + rtol |b|, with equal infinities and NaNs counting as close."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.abs(a - b) <= atol + rtol * np.abs(b)
    return ok | (a == b) | (np.isnan(a) & np.isnan(b))


def max_abs_diff(a, b) -> float:
    """Largest finite |a - b| (0 for empty input; inf where exactly one side is infinite)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    with np.errstate(invalid="ignore"):
        return float(np.nanmax(np.where(same, 0.0, np.abs(a - b))))


def compare_selections(ids_a, scores_a, ids_b, scores_b, *, rtol: float = 1e-4, atol: float = 1e-5) -> dict:
    """Two ranked selections (ids and scores in rank order) -> verdict, overlap of ids, max |score diff|.

    identical: same ids in the same order, scores bitwise equal. same up to ties: same length,
    rank-aligned scores within rounding, and wherever the ids differ the rows carry tied scores
    (a different choice among equal candidates). differs: anything else.
    """
    ids_a, ids_b = np.asarray(ids_a), np.asarray(ids_b)
    sa, sb = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    common = np.intersect1d(ids_a, ids_b)
    overlap = len(common) / max(1, max(len(ids_a), len(ids_b)))
    # score difference of rows both runs picked (by id), and by rank
    pos_a = {v: i for i, v in enumerate(ids_a.tolist())}
    pos_b = {v: i for i, v in enumerate(ids_b.tolist())}
    ia = np.array([pos_a[v] for v in common.tolist()], dtype=np.int64)
    ib = np.array([pos_b[v] for v in common.tolist()], dtype=np.int64)
    diff = max_abs_diff(sa[ia], sb[ib]) if len(common) else 0.0
    out = {"overlap": overlap, "max_abs_diff": diff, "n": int(max(len(ids_a), len(ids_b)))}
    if len(ids_a) == len(ids_b) and np.array_equal(ids_a, ids_b) and max_abs_diff(sa, sb) == 0.0:
        return {**out, "verdict": IDENTICAL}
    if len(ids_a) != len(ids_b):
        return {**out, "verdict": DIFFERS}
    ranked_close = _close(sa, sb, rtol, atol)
    common_close = _close(sa[ia], sb[ib], rtol, atol).all() if len(common) else True
    if ranked_close.all() and common_close:
        # rows only one run picked must tie (within rounding) with a score the other run picked
        only_a = ~np.isin(ids_a, common)
        only_b = ~np.isin(ids_b, common)
        if _ties_covered(sa[only_a], sb) and _ties_covered(sb[only_b], sa):
            return {**out, "verdict": TIES}
    return {**out, "verdict": DIFFERS}


def _ties_covered(values: np.ndarray, other: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    if values.size == 0:
        return True
    other = np.asarray(other, dtype=np.float64)
    return all(_close(np.full(other.shape, v), other, rtol, atol).any() for v in values.tolist())


def compare_arrays(a, b, *, rtol: float = 1e-4, atol: float = 1e-5, labels_a=None, labels_b=None,
                   tie_width=None) -> dict:
    """Row-aligned values (scores of every pool row) and optional per-row labels (predicted class).

    identical: everything bitwise equal. same up to ties: values within rounding and labels
    equal except on rows whose ``tie_width`` (e.g. the top-2 margin) is within rounding of 0.
    ``overlap`` is the share of rows with the same label (1 without labels).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    diff = max_abs_diff(a, b)
    same_labels = np.ones(len(a), dtype=bool)
    if labels_a is not None:
        same_labels = np.asarray(labels_a) == np.asarray(labels_b)
    out = {"overlap": float(same_labels.mean()) if len(same_labels) else 1.0, "max_abs_diff": diff, "n": int(len(a))}
    if diff == 0.0 and same_labels.all():
        return {**out, "verdict": IDENTICAL}
    ok = bool(_close(a, b, rtol, atol).all())
    if ok and not same_labels.all():
        if tie_width is None:
            ok = False
        else:
            tw = np.asarray(tie_width, dtype=np.float64)[~same_labels]
            ok = bool((np.abs(tw) <= atol + rtol).all())
    return {**out, "verdict": TIES if ok else DIFFERS}


def compare_partitions(a, b) -> dict:
    """Two cluster labelings of the same rows: identical labels, the same partition relabelled, or not.

    ``overlap``: share of rows in the majority-matched cluster (1 = same partition);
    ``max_abs_diff``: difference in the number of clusters.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ka, kb = len(np.unique(a)), len(np.unique(b))
    out = {"max_abs_diff": float(abs(ka - kb)), "n": int(len(a)), "clusters": (ka, kb)}
    if np.array_equal(a, b):
        return {**out, "overlap": 1.0, "verdict": IDENTICAL}
    if len(a) == 0:
        return {**out, "overlap": 1.0, "verdict": IDENTICAL}
    pair = np.unique(np.stack([a, b], axis=1), axis=0, return_counts=True)
    first_label, counts = pair[0][:, 0], pair[1]
    # best partner of each cluster of a: rows agreeing with it
    order = np.lexsort((-counts, first_label))
    first = np.r_[True, first_label[order][1:] != first_label[order][:-1]]
    agree = int(counts[order][first].sum())
    same = ka == kb == len(counts)
    return {**out, "overlap": agree / len(a), "verdict": TIES if same else DIFFERS}


def format_table(rows: list[dict], *, gpu: bool) -> str:
    """The per-step table: step, verdict, overlap, max |diff|, GPU s, CPU s, GPU/CPU."""
    head = ["step", "result", "overlap", "max|diff|", "GPU s", "CPU s", "GPU/CPU"]
    lines = []
    for r in rows:
        g, c = r.get("gpu_s"), r.get("cpu_s")
        ratio = f"{g / c:.2f}x" if g is not None and c else "-"
        if g is not None and c is None and r.get("cpu_over"):
            ratio = f"< {g / r['cpu_over']:.2f}x"
            c = None
        ov = r.get("overlap")
        d = r.get("max_abs_diff")
        lines.append([r["step"], r.get("verdict") or "-",
                      f"{ov:.4f}" if isinstance(ov, float) else "-",
                      (f"{d:.2e}" if d and math.isfinite(d) else ("inf" if d else "0")) if isinstance(d, float) else "-",
                      f"{g:.1f}" if g is not None else "-",
                      f"{c:.1f}" if c is not None else (f"> {r['cpu_over']:.0f}" if r.get("cpu_over") else "-"), ratio])
    widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*row) for row in lines]
    if not gpu:
        out.append("(no GPU: the GPU columns are empty; the CPU half ran every step)")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# GPU detection and the separate GPU virtualenv
# ---------------------------------------------------------------------------------------------
def nvidia_gpu() -> tuple[bool, str]:
    """(present, one-line reason) from ``nvidia-smi -L``."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False, "nvidia-smi not found"
    try:
        r = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"nvidia-smi failed ({exc})"
    gpus = [ln for ln in r.stdout.splitlines() if ln.startswith("GPU ")]
    if r.returncode != 0 or not gpus:
        return False, "nvidia-smi lists no GPU"
    return True, gpus[0]


def _pyproject_deps() -> list[str]:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    skip = ("faiss", "torch")  # the GPU venv gets faiss-gpu and a CUDA torch instead
    return [d for d in deps if not d.replace(" ", "").lower().startswith(skip)]


def ensure_gpu_venv(torch_spec: str, faiss_spec: str) -> Path:
    """Build .gpu-venv once (CUDA torch + faiss-gpu + alq's other deps + alq itself, editable, no deps)."""
    py = GPU_VENV / "bin" / "python"
    stamp = GPU_VENV / GPU_STAMP
    want = json.dumps({"torch": torch_spec, "faiss": faiss_spec, "deps": _pyproject_deps()})
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    print(f"== building {GPU_VENV.name}: {torch_spec}, {faiss_spec} (once)", flush=True)
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(GPU_VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *torch_spec.split()], check=True)
    subprocess.run([str(py), "-m", "pip", "uninstall", "--yes", "--quiet", "faiss-cpu"], check=False)
    subprocess.run([*pip, *faiss_spec.split(), *_pyproject_deps()], check=True)
    # alq itself runs from the checkout (PYTHONPATH); the editable install is a convenience
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=False)
    stamp.write_text(want)
    return py


def cuda_in(python: str) -> tuple[bool, str]:
    code = ("import torch, faiss, importlib.metadata as m\n"
            "names = {d.metadata['Name'].lower() for d in m.distributions()}\n"
            "assert not {'faiss-cpu'} & names or not {n for n in names if n.startswith('faiss-gpu')}, "
            "'faiss-cpu and faiss-gpu both installed'\n"
            "print(torch.cuda.is_available(), getattr(faiss, 'get_num_gpus', lambda: 0)(), torch.__version__)")
    r = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return False, (r.stderr.strip().splitlines() or ["import failed"])[-1]
    cuda, ngpu, ver = r.stdout.split()
    if cuda != "True":
        return False, f"torch {ver} in {python} sees no CUDA device"
    return True, f"torch {ver}, faiss GPUs: {ngpu}"


# ---------------------------------------------------------------------------------------------
# running alq
# ---------------------------------------------------------------------------------------------
class RunTimeout(Exception):
    def __init__(self, device: str, seconds: float):
        super().__init__(f"{device} run killed after {seconds:g}s")
        self.device, self.seconds = device, seconds


@dataclass
class Runner:
    python: str
    work: Path
    working_memory: int
    gpu: bool
    deadline: float
    self_check: bool = False  # run the "GPU" half on the CPU too: exercises the comparisons without a GPU
    run_timeout: float | None = None  # seconds one alq run may take (then killed: "> T s", not compared)
    log: Path = field(init=False)
    rows: list = field(default_factory=list)

    def __post_init__(self):
        self.log = self.work / "commands.log"

    def env(self, device: str) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["ALQ_WORKING_MEMORY"] = str(self.working_memory)
        env["ALQ_DEVICE"] = device
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def alq(self, *args, device: str = "cpu") -> float:
        """Run ``alq ARGS`` on ``device``; return its wall time. A failure raises with the stderr tail."""
        cmd = [self.python, "-m", "alq", *map(str, args), "--quiet"]
        t = time.perf_counter()
        timeout = min(self.run_timeout or math.inf, max(1.0, self.deadline - t))  # never past --time-limit
        try:
            r = subprocess.run(cmd, env=self.env(device), capture_output=True, text=True, cwd=self.work,
                               timeout=None if math.isinf(timeout) else timeout)
        except subprocess.TimeoutExpired:
            with open(self.log, "a") as fh:
                fh.write(f"[{device} killed after {timeout:.0f}s] {' '.join(cmd[2:])}\n")
            raise RunTimeout(device, timeout) from None
        dt = time.perf_counter() - t
        with open(self.log, "a") as fh:
            fh.write(f"[{device} {dt:.1f}s rc={r.returncode}] {' '.join(cmd[2:])}\n{r.stderr[-2000:]}\n")
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            raise RuntimeError(f"{device}: alq {args[0]} exited {r.returncode}: {tail}")
        return dt

    def step(self, name: str, run, compare) -> None:
        """``run(device, tag) -> None`` writes outputs tagged 'gpu'/'cpu'; ``compare() -> dict``."""
        row = {"step": name}
        if time.perf_counter() > self.deadline - 5:
            row["verdict"] = SKIPPED + " (time)"
            self.rows.append(row)
            print(f"   {name}: skipped, past --time-limit", flush=True)
            return
        try:
            if self.gpu or self.self_check:
                row["gpu_s"] = run("cuda" if self.gpu else "cpu", "gpu")
            row["cpu_s"] = run("cpu", "cpu")
            if self.gpu or self.self_check:
                row.update(compare())
            else:
                row["verdict"] = "cpu ok"
        except RunTimeout as exc:
            row[f"{'cpu' if exc.device == 'cpu' else 'gpu'}_over"] = exc.seconds
            row["verdict"] = f"{'CPU' if exc.device == 'cpu' else 'GPU'} > {exc.seconds:g}s, not compared"
        except Exception as exc:  # one broken step must not hide the others
            row["verdict"] = FAILED
            row["error"] = str(exc)
        self.rows.append(row)
        msg = row.get("error") or row["verdict"]
        times = ", ".join(f"{row[k]:.1f}s {k[:3]}" for k in ("gpu_s", "cpu_s") if row.get(k) is not None)
        print(f"   {name}: {msg}" + (f" ({times})" if times else ""), flush=True)


# ---------------------------------------------------------------------------------------------
# reading outputs
# ---------------------------------------------------------------------------------------------
def read_selection(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["id", "rank", "score"]).sort_by("rank")
    return t.column("id").to_numpy(), t.column("score").to_numpy().astype(np.float64)


def read_scores(path: Path) -> dict:
    import pyarrow.parquet as pq

    parts = [pq.read_table(f, columns=["id", "predicted_class", "margin", "entropy"]) for f in sorted(path.glob("*.parquet"))]
    return {c: np.concatenate([p.column(c).to_numpy(zero_copy_only=False) for p in parts])
            for c in ("id", "predicted_class", "margin", "entropy")}


def read_clusters(path: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    files = sorted(path.glob("shard-*.clusters.parquet"))
    return np.concatenate([pq.read_table(f, columns=["cluster"]).column("cluster").to_numpy() for f in files])


def head_probs(head_path: Path, pool_path: Path, rows: int) -> np.ndarray:
    import torch

    from alq.model.head import load_head
    from alq.store.opener import open_pool

    pool = open_pool(pool_path)
    x = pool.take(np.arange(min(rows, pool.count)), dtype=np.float32)
    head = load_head(head_path)
    return head.probs(torch.from_numpy(x)).double().numpy()


def compare_heads(a: Path, b: Path, pool: Path, rows: int = 20_000) -> dict:
    pa_, pb_ = head_probs(a, pool, rows), head_probs(b, pool, rows)
    top2 = np.sort(pb_, axis=1)[:, -2:]
    # a head trained on another device follows another rounding path: same up to ties within 1e-3
    return compare_arrays(pa_.ravel(), pb_.ravel(), rtol=0.0, atol=1e-3,
                          labels_a=np.repeat(pa_.argmax(1), pa_.shape[1]), labels_b=np.repeat(pb_.argmax(1), pb_.shape[1]),
                          tie_width=np.repeat(top2[:, 1] - top2[:, 0], pa_.shape[1]))


def compare_simulations(a: Path, b: Path) -> dict:
    import pyarrow.parquet as pq

    results = {}
    for tag, d in (("a", a), ("b", b)):
        t = pq.read_table(d / "results.parquet", columns=["strategy", "repeat", "round", "top1"]).to_pydict()
        results[tag] = {(s, r, k): v for s, r, k, v in zip(t["strategy"], t["repeat"], t["round"], t["top1"])}
    keys = sorted(results["a"])
    acc = max_abs_diff([results["a"][k] for k in keys], [results["b"].get(k, np.nan) for k in keys])
    verdicts, overlaps = [], []
    for f in sorted((a / "selections").rglob("*.parquet")):
        g = b / f.relative_to(a)
        ia, sa = read_selection(f)
        ib, sb = read_selection(g)
        c = compare_selections(ia, sa, ib, sb)
        verdicts.append(c["verdict"])
        overlaps.append(c["overlap"])
    worst = DIFFERS if DIFFERS in verdicts else TIES if TIES in verdicts else IDENTICAL
    if acc > 0 and worst == IDENTICAL:
        worst = TIES
    return {"verdict": worst, "overlap": float(np.mean(overlaps)) if overlaps else 1.0, "max_abs_diff": acc}


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------
def write_labels_csv(path: Path, ids: np.ndarray, labels: np.ndarray) -> None:
    with open(path, "w") as fh:
        fh.write("id,label\n")
        fh.writelines(f"{i},{y}\n" for i, y in zip(ids.tolist(), labels.tolist()))


def build_inputs(r: Runner, s: dict, seed: int) -> dict:
    """Synthetic pools (alq synth), their labels, a labeled seed set, and the simulate pool + test set."""
    from alq.synth import SynthSpec, iter_groups

    w = r.work
    p = {"main": w / "main", "div": w / "div", "clu": w / "clu", "exact": w / "exact", "sim": w / "sim_pool",
         "simtest": w / "sim_test"}
    shard = 262_144
    specs = {"main": (s["rows"], s["dim"]), "div": (s["div_rows"], s["dim"]),
             "clu": (s["cluster_rows"], s["cluster_dim"]), "exact": (s["exact_rows"], s["cluster_dim"])}
    def synth(name):
        n, d = specs[name]
        r.alq("synth", "--out", p[name], "-n", n, "-d", d, "-c", s["classes"], "--seed", seed, "--imbalance-ratio", 5,
              "--separation", 6, "--labels-out", w / f"{name}_truth.parquet", "--shard-rows", shard, "--overwrite")

    # the pools are independent: write them side by side where there are cores for it
    with ThreadPoolExecutor(max_workers=max(1, min(len(specs), (os.cpu_count() or 1) // 4))) as ex:
        list(ex.map(synth, specs))
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    for name in ("main", "div", "clu"):
        t = pq.read_table(w / f"{name}_truth.parquet")
        ids, y = t.column("id").to_numpy(), t.column("label").to_numpy()
        pick = np.sort(rng.choice(len(ids), size=min(s["labeled"], len(ids) // 2), replace=False))
        write_labels_csv(w / f"{name}_labels.csv", ids[pick], y[pick])
        r.alq("labels", "import", w / f"{name}_labels.csv", "--pool", p[name], "--out", w / f"{name}_labels.parquet")
    # simulate: pool rows [0, n) and test rows [n, n + t) of one mixture
    n, t = s["sim_rows"], s["sim_test"]
    spec = SynthSpec(n=n + t, dim=s["dim"], classes=s["classes"], seed=seed + 1, imbalance_ratio=5, separation=6)
    xs, ys = [], []
    for _, x, y in iter_groups(spec):
        xs.append(x.astype(np.float16))
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    np.save(w / "sim_pool.npy", x[:n])
    np.save(w / "sim_test.npy", x[n:])
    r.alq("embed", w / "sim_pool.npy", "--out", p["sim"], "--dtype", "float16", "--overwrite")
    r.alq("embed", w / "sim_test.npy", "--out", p["simtest"], "--dtype", "float16", "--overwrite")
    write_labels_csv(w / "sim_labels.csv", np.arange(n), y[:n])
    write_labels_csv(w / "sim_test_labels.csv", np.arange(t), y[n:])
    r.alq("labels", "import", w / "sim_labels.csv", "--pool", p["sim"], "--out", w / "sim_labels.parquet")
    r.alq("labels", "import", w / "sim_test_labels.csv", "--pool", p["simtest"], "--out", w / "sim_test_labels.parquet")
    return p


def run_check(r: Runner, s: dict, seed: int = 0) -> list[dict]:
    w = r.work
    t0 = time.perf_counter()
    print("== building synthetic pools", flush=True)
    p = build_inputs(r, s, seed)
    print(f"   done in {time.perf_counter() - t0:.1f}s", flush=True)
    print("== steps (GPU, then CPU)" if r.gpu else "== steps (CPU half only)", flush=True)

    # -- train: the GPU head and the CPU head of the same labels; later steps use the CPU heads
    def train(kind, pool, labels, extra):
        def run(dev, tag):
            return r.alq("train", p[pool], w / labels, "--out", w / f"head-{kind}-{tag}.pt", "--seed", seed, *extra,
                         device=dev)
        return run

    heads = {"linear": ("main", "main_labels.parquet", []),
             "mlp": ("main", "main_labels.parquet", ["--hidden", s["hidden"]]),
             "dropout": ("main", "main_labels.parquet", ["--hidden", s["hidden"], "--dropout", 0.1]),
             "div": ("div", "div_labels.parquet", []),
             "clu": ("clu", "clu_labels.parquet", [])}
    names = {"linear": "train linear (L-BFGS)", "mlp": f"train mlp {s['hidden']} (L-BFGS)",
             "dropout": f"train mlp {s['hidden']} dropout (Adam)", "div": "train linear (diversity pool)",
             "clu": "train linear (cluster pool)"}
    for kind, (pool, labels, extra) in heads.items():
        r.step(names[kind], train(kind, pool, labels, extra),
               lambda kind=kind, pool=pool: compare_heads(w / f"head-{kind}-gpu.pt", w / f"head-{kind}-cpu.pt", p[pool]))

    def head(kind):
        return w / f"head-{kind}-cpu.pt"

    # -- score
    def score_run(dev, tag):
        return r.alq("score", p["main"], "--head", head("linear"), "--out", w / f"scores-{tag}", device=dev)

    def score_cmp():
        a, b = read_scores(w / "scores-gpu"), read_scores(w / "scores-cpu")
        out = compare_arrays(np.concatenate([a["margin"], a["entropy"]]), np.concatenate([b["margin"], b["entropy"]]),
                             labels_a=np.concatenate([a["predicted_class"]] * 2),
                             labels_b=np.concatenate([b["predicted_class"]] * 2),
                             tie_width=np.concatenate([b["margin"]] * 2))
        return out

    r.step(f"score {s['rows']:,} x {s['dim']}", score_run, score_cmp)

    # -- select
    def select(name, pool, kind, strategy, budget, *extra, labels=True):
        def run(dev, tag):
            with_head = ("--head", head(kind)) if kind else ()
            with_head += ("--labels", w / f"{pool}_labels.parquet") if labels else ()
            return r.alq("select", p[pool], *with_head, "--strategy",
                         strategy, "--budget", budget, "--seed", seed, "--out", w / f"sel-{name}-{tag}.parquet",
                         *extra, device=dev)

        def cmp():
            return compare_selections(*read_selection(w / f"sel-{name}-gpu.parquet"),
                                      *read_selection(w / f"sel-{name}-cpu.parquet"))
        r.step(name, run, cmp)

    b, N, d = s["budget"], s["rows"], s["dim"]
    for strat in ("margin", "entropy", "mase", "base"):
        select(f"select {strat} {N:,}x{d} b={b:,}", "main", "linear", strat, b)
    select(f"select bald (MC dropout) {N:,}x{d} b={b:,}", "main", "dropout", "bald", b)

    # -- cluster (exact on a small pool; graph with the faiss kNN index on the big one)
    def cluster(name, pool, method, rows, *extra):
        def run(dev, tag):
            return r.alq("cluster", p[pool], "--out", w / f"clusters-{name}-{tag}", "--method", method, "--seed", seed,
                         *extra, device=dev)

        r.step(f"cluster {method} {rows:,}x{s['cluster_dim']}", run,
               lambda: compare_partitions(read_clusters(w / f"clusters-{name}-gpu"),
                                          read_clusters(w / f"clusters-{name}-cpu")))

    cluster("exact", "exact", "exact", s["exact_rows"])
    cluster("graph", "clu", "graph", s["cluster_rows"])
    # cluster-margin on the cluster pool, with the CPU clusters for both runs
    clusters_cpu = w / "clusters-graph-cpu"
    if clusters_cpu.exists():
        select(f"select cluster-margin {s['cluster_rows']:,}x{s['cluster_dim']} b={b:,}", "clu", "clu",
               "cluster-margin", b, "--clusters", clusters_cpu)

    # -- diversity strategies on the diversity pool (cold-start ones without labels, as on a new pool)
    nd, bd, bg = s["div_rows"], s["div_budget"], s["greedy_budget"]
    C = s["classes"]
    select(f"select badge {nd:,}x{d} C={C} b={bg:,}", "div", "div", "badge", bg)
    for strat in ("coreset", "fass"):
        select(f"select {strat} {nd:,}x{d} b={bg:,}", "div", "div", strat, bg)
    for strat in ("kcenter", "typiclust"):
        select(f"select {strat} (no head, no labels) {nd:,}x{d} b={bg:,}", "div", None, strat, bg, labels=False)

    # -- simulate: two rounds of margin, badge and base
    def sim_run(dev, tag):
        return r.alq("simulate", "--pool", p["sim"], "--labels", w / "sim_labels.parquet", "--test-pool", p["simtest"],
                     "--test-labels", w / "sim_test_labels.parquet", "--strategies", "margin,badge,base",
                     "--seed-size", s["sim_budget"], "--budget", s["sim_budget"], "--rounds", 2, "--repeats", 1,
                     "--seed", seed, "--out", w / f"sim-{tag}", "--overwrite", device=dev)

    r.step(f"simulate 2 rounds {s['sim_rows']:,}x{d} (margin,badge,base)", sim_run,
           lambda: compare_simulations(w / "sim-gpu", w / "sim-cpu"))
    if bd != bg:  # the benchmark size, last: its CPU half is the one most likely to hit --run-timeout
        select(f"select badge {nd:,}x{d} C={C} b={bd:,}", "div", "div", "badge", bd)
    return r.rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default=None,
                    help="default: full with a GPU, small without one (the CPU half of full takes hours)")
    for k, v in SIZES["full"].items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=None, help=f"(full: {v})")
    ap.add_argument("--work", type=Path, default=ROOT / ".gpu-check", help="scratch directory (replaced)")
    ap.add_argument("--cpu-only", action="store_true", help="run the CPU half only, whatever the machine has")
    ap.add_argument("--self-check", action="store_true", help="without a GPU, run the GPU half on the CPU as "
                    "well (checks the comparisons and CPU determinism: every step should be identical)")
    ap.add_argument("--python", default=None, help="interpreter that runs alq (default: .gpu-venv with a GPU, "
                    "else this one); skips building .gpu-venv")
    ap.add_argument("--torch", default=os.environ.get("GPU_TORCH", "torch==2.14.1"), help="CUDA torch for .gpu-venv")
    ap.add_argument("--faiss", default=os.environ.get("GPU_FAISS", "faiss-gpu>=1.8"), help="faiss-gpu for .gpu-venv")
    ap.add_argument("--time-limit", type=float, default=None, help="seconds; later steps are skipped past it "
                    "(default 450 for full, none otherwise)")
    ap.add_argument("--run-timeout", type=float, default=None, help="seconds one alq run may take; a run killed "
                    "there shows as '> T s', not compared (default 75 for full, none otherwise)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--install-only", action="store_true", help="build .gpu-venv (on a GPU machine) and stop")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    gpu, why = (False, "--cpu-only") if args.cpu_only else nvidia_gpu()
    python = args.python or sys.executable
    if gpu and args.python is None:
        try:
            python = str(ensure_gpu_venv(args.torch, args.faiss))
        except (subprocess.CalledProcessError, OSError) as exc:
            gpu, why = False, f"could not build {GPU_VENV.name} ({exc})"
    if gpu:
        gpu, why = cuda_in(python)
    if args.install_only:
        print(f"{GPU_VENV.name}: {why}" if gpu else f"No usable NVIDIA GPU ({why}): {GPU_VENV.name} not built.")
        return 0
    if args.size is None:
        args.size = "full" if gpu else "small"
    size = dict(SIZES[args.size])
    for k in size:
        v = getattr(args, k)
        if v is not None:
            size[k] = v
    if not gpu:
        print(f"No usable NVIDIA GPU ({why}): running the CPU half only (size {args.size}).", flush=True)
    else:
        print(f"GPU: {why}; alq runs with {python}", flush=True)

    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    full = args.size == "full"
    limit = args.time_limit if args.time_limit is not None else (450.0 if full else math.inf)
    run_timeout = args.run_timeout if args.run_timeout is not None else (75.0 if full else None)
    runner = Runner(python=python, work=args.work.resolve(), working_memory=size["working_memory"], gpu=gpu,
                    deadline=t0 + limit, self_check=args.self_check and not gpu, run_timeout=run_timeout)
    try:
        rows = run_check(runner, size, seed=args.seed)
    except Exception as exc:
        print(f"gpu-check: building the inputs failed: {exc} (log: {runner.log})", file=sys.stderr)
        return 1
    print()
    print(format_table(rows, gpu=gpu or runner.self_check))
    if runner.self_check:
        print("(--self-check: the GPU columns are a second CPU run)")
    for row in rows:
        if row.get("error"):
            print(f"  {row['step']}: {row['error']}")
    failed = [row for row in rows if row.get("verdict") == FAILED]
    keep = args.keep or bool(failed)
    print(f"total: {time.perf_counter() - t0:.1f}s (size {args.size}"
          + (f"; commands and their stderr: {runner.log})" if keep else ")"))
    if not keep:
        shutil.rmtree(args.work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
