"""When to stop buying labels: the "stabilizing predictions" signal (Bloodgood & Vijay-Shanker 2009).

A fixed, seeded **stop set** of unlabeled pool rows is drawn once (uniform;
the same rows every round: ``alq train`` stores their ids in the head file
and reuses the previous head's set; ``alq simulate`` draws one per repeat).
Each round compares the new head's predictions on the stop set with the
previous head's by Cohen's kappa (multi-label heads: over every (row, class)
decision). Bloodgood & Vijay-Shanker stop once kappa stays at or above 0.99
for consecutive rounds: :data:`KAPPA` and :data:`ROUNDS` (2) here. Beside
kappa the signal reports the head's mean margin p(1) - p(2) on the stop set
(a uniform sample of unlabeled rows: an estimate of the pool's mean margin;
multi-label: mean of the smallest binary margin) and the cross-validated
accuracy with its change since the previous head (``alq train``'s
``cv_accuracy``).

:func:`stopping_summary` applies the rule to a simulation's results
(``alq report``): per strategy and repeat, the round where it fires and the
accuracy it left on the table (final accuracy minus accuracy at that round).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from alq.errors import BadInputError

KAPPA = 0.99
ROUNDS = 2
STOP_SET_SIZE = 2000
_STREAM = 0x5709


def cohen_kappa(a, b) -> float:
    """Cohen's kappa of two label vectors of equal length (any hashable labels).

    (p_o - p_e) / (1 - p_e), p_e from each rater's marginals. Both raters
    constant and equal (p_e = 1): 1.0. Empty input: nan.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"kappa of {a.shape} and {b.shape} predictions")
    if a.size == 0:
        return math.nan
    _, codes = np.unique(np.concatenate([a.ravel(), b.ravel()]), return_inverse=True)
    ca, cb = codes[:a.size], codes[a.size:]
    k = int(codes.max()) + 1
    po = float(np.mean(ca == cb))
    pe = float(np.dot(np.bincount(ca, minlength=k), np.bincount(cb, minlength=k))) / float(a.size) ** 2
    if pe >= 1.0:
        return 1.0 if po >= 1.0 else 0.0
    return (po - pe) / (1.0 - pe)


def draw_stop_set(n_rows: int, excluded: np.ndarray | None, size: int, seed: int) -> np.ndarray:
    """``size`` rows (sorted) drawn uniformly from the rows not ``excluded``; the same for a seed."""
    from alq.scoring.topk import StreamingTopK

    if size < 1:
        raise BadInputError(f"--stop-set-size={size} must be >= 1")
    top = StreamingTopK(int(size))
    rng = np.random.default_rng([int(seed), _STREAM])
    step = 1 << 20
    for lo in range(0, int(n_rows), step):
        hi = min(lo + step, int(n_rows))
        keys = rng.random(hi - lo)
        keep = np.ones(hi - lo, bool) if excluded is None else ~excluded[lo:hi]
        top.push(keys[keep], np.arange(lo, hi, dtype=np.int64)[keep])
    idx, _ = top.result()
    return np.sort(np.asarray(idx, dtype=np.int64))


@torch.no_grad()
def predictions(head, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class NAMES (n,) or multi-hot (n, C) bool, margin (n,)) of ``head`` on rows ``x``."""
    from alq.scoring.uncertainty import margin, multilabel_margin

    dev = next(head.net.parameters()).device
    z = head.logits(torch.as_tensor(np.asarray(x, dtype=np.float32), device=dev))
    if head.multilabel:
        p = torch.sigmoid(z)
        return (p >= 0.5).cpu().numpy(), multilabel_margin(p, "min").cpu().numpy()
    p = torch.softmax(z, dim=1)
    names = np.asarray([str(head.classes[i]) for i in z.argmax(dim=1).tolist()], dtype=object)
    return names, margin(p).cpu().numpy()


def agreement(prev, cur, prev_head=None, cur_head=None) -> tuple[float, float]:
    """(kappa, raw agreement) of two heads' predictions on the same rows.

    Multi-label: decisions are compared per (row, class) over the union of both heads' classes.
    """
    if prev_head is not None and cur_head is not None and (prev_head.multilabel or cur_head.multilabel):
        if not (prev_head.multilabel and cur_head.multilabel):
            raise BadInputError("--previous is a single-label head and this one multi-label (or the reverse)")
        classes = sorted({str(c) for c in prev_head.classes} | {str(c) for c in cur_head.classes})
        a = _align(prev, prev_head.classes, classes)
        b = _align(cur, cur_head.classes, classes)
        prev, cur = a.ravel(), b.ravel()
    prev, cur = np.asarray(prev), np.asarray(cur)
    return cohen_kappa(prev, cur), float(np.mean(prev == cur)) if prev.size else math.nan


def _align(multi_hot: np.ndarray, classes: list, union: list) -> np.ndarray:
    out = np.zeros((len(multi_hot), len(union)), dtype=bool)
    where = {c: j for j, c in enumerate(union)}
    for i, c in enumerate(classes):
        out[:, where[str(c)]] = multi_hot[:, i]
    return out


def fires(kappas: list, threshold: float = KAPPA, rounds: int = ROUNDS) -> bool:
    """Whether the last ``rounds`` kappas are all >= ``threshold``."""
    tail = [k for k in kappas[-rounds:] if k is not None]
    return len(kappas) >= rounds and len(tail) == rounds and all(float(k) >= threshold for k in tail)


def stop_round(kappas: list, threshold: float = KAPPA, rounds: int = ROUNDS) -> int | None:
    """Index into ``kappas`` where the rule first fires (``rounds`` in a row >= threshold), else None."""
    run = 0
    for i, k in enumerate(kappas):
        run = run + 1 if k is not None and not math.isnan(float(k)) and float(k) >= threshold else 0
        if run >= rounds:
            return i
    return None


# -- alq train --previous ------------------------------------------------------------------------

def train_signal(pool, head, labeled: np.ndarray, *, previous=None, previous_path: str | None = None,
                 size: int = STOP_SET_SIZE, seed: int = 0, threshold: float = KAPPA,
                 rounds: int = ROUNDS) -> dict:
    """The stopping signal of a freshly trained ``head`` against ``previous`` (a Head or None).

    Stores the stop set's ids and the kappa history in ``head.meta`` (saved with the head), so the
    next round's ``--previous`` reuses the same rows. Returns the ``stopping`` summary entry.
    """
    if not 0 < threshold <= 1:
        raise BadInputError(f"--stop-kappa={threshold} must be in (0, 1]")
    if rounds < 1:
        raise BadInputError(f"--stop-rounds={rounds} must be >= 1")
    stored = (previous.meta.get("stop_set") or {}) if previous is not None else {}
    if stored.get("ids"):
        ids = np.asarray(stored["ids"], dtype=np.int64 if pool.id_type == "int64" else object)
        rows = pool.lookup(ids)
        if (rows < 0).any():
            bad = ids[int(np.flatnonzero(rows < 0)[0])]
            raise BadInputError(f"{previous_path}: its stop set holds id {bad!r}, which is not in this pool",
                                hint="--previous must be a head trained on this pool (rows may be appended)")
        source = "previous head"
        set_seed = int(stored.get("seed", seed))
    else:
        excluded = np.zeros(pool.count, dtype=bool)
        excluded[np.asarray(labeled, dtype=np.int64)] = True
        if not (~excluded).any():
            excluded[:] = False  # every row labeled: the stop set may hold labeled rows
        rows = draw_stop_set(pool.count, excluded, min(int(size), pool.count), seed)
        source = "drawn"
        set_seed = int(seed)
    x = pool.take(rows, dtype=np.float32)
    head.to("cpu")
    pred, margins = predictions(head, x)
    metrics = head.meta.get("metrics", {})
    cv = metrics.get("cv_accuracy")
    out = {"stop_set_rows": int(len(rows)), "stop_set": source, "stop_set_seed": set_seed,
           "mean_margin": float(np.mean(margins)) if len(margins) else None,
           "cv_accuracy": cv, "n_labeled": metrics.get("n_labeled"),
           "previous": previous_path, "kappa": None, "agreement": None, "previous_mean_margin": None,
           "previous_cv_accuracy": None, "cv_accuracy_trend": None, "kappa_threshold": float(threshold),
           "stop_rounds": int(rounds)}
    history: list = []
    if previous is not None:
        previous.check_pool(pool, path=str(previous_path))
        previous.to("cpu")
        prev_pred, prev_margins = predictions(previous, x)
        kappa, agree = agreement(prev_pred, pred, previous, head)
        prev_cv = previous.meta.get("metrics", {}).get("cv_accuracy")
        history = list((previous.meta.get("stopping") or {}).get("kappa_history") or [])
        if source == "drawn":
            history = []  # the previous head's kappas were measured on other rows (or never)
        same = _same_labels(previous, head)
        if not same:  # a round without new labels agrees with itself: it does not count
            history.append(float(kappa))
        out["new_labels"] = not same
        out.update(kappa=float(kappa), agreement=agree, previous_mean_margin=float(np.mean(prev_margins)),
                   previous_cv_accuracy=prev_cv,
                   cv_accuracy_trend=(float(cv) - float(prev_cv)) if cv is not None and prev_cv is not None else None)
    out["kappa_history"] = history
    out["consecutive"] = _tail_run(history, threshold)
    out["stop"] = fires(history, threshold, rounds)
    head.meta["stop_set"] = {"ids": pool.ids(rows).tolist(), "seed": set_seed}
    head.meta["stopping"] = {k: out[k] for k in ("kappa", "kappa_history", "mean_margin", "stop")}
    return out


def _same_labels(previous, head) -> bool:
    """Whether both heads were trained on the same labels (same file digest, or same count without one)."""
    a, b = previous.meta.get("labels_sha256"), head.meta.get("labels_sha256")
    if a and b:
        return a == b
    return previous.meta.get("metrics", {}).get("n_labeled") == head.meta.get("metrics", {}).get("n_labeled")


def _tail_run(history: list, threshold: float) -> int:
    n = 0
    for k in reversed(history):
        if k is None or float(k) < threshold:
            break
        n += 1
    return n


def signal_line(s: dict) -> str:
    """The human line of ``alq train``: kappa vs the previous head, mean margin, CV accuracy and trend."""
    parts = []
    if s.get("kappa") is not None and s.get("new_labels") is False:
        parts.append(f"kappa {s['kappa']:.4f} vs the previous head, which had the same labels: this round does "
                     f"not count ({s['consecutive']} of {s['stop_rounds']} rounds >= {s['kappa_threshold']}"
                     + ("; STOP" if s["stop"] else "") + ")")
    elif s.get("kappa") is not None:
        verdict = "STOP: predictions have stabilised" if s["stop"] else \
            f"{s['consecutive']} of {s['stop_rounds']} rounds >= {s['kappa_threshold']}"
        parts.append(f"kappa {s['kappa']:.4f} vs the previous head on {s['stop_set_rows']:,} stop-set rows "
                     f"({verdict})")
    else:
        parts.append(f"no --previous head: stop set of {s['stop_set_rows']:,} rows drawn and kept in the head")
    if s.get("mean_margin") is not None:
        parts.append(f"mean margin {s['mean_margin']:.3f}")
    if s.get("cv_accuracy") is not None:
        trend = f" ({100 * s['cv_accuracy_trend']:+.1f} points)" if s.get("cv_accuracy_trend") is not None else ""
        parts.append(f"cv accuracy {100 * s['cv_accuracy']:.1f}%{trend}")
    return "stopping: " + "; ".join(parts)


# -- alq report ----------------------------------------------------------------------------------

def stopping_summary(res, metric: str, *, threshold: float = KAPPA, rounds: int = ROUNDS) -> dict | None:
    """Per strategy: the round where "kappa >= threshold for ``rounds`` rounds" fires in each repeat.

    ``res``: :class:`alq.report.analysis.Results` with a ``stop_kappa`` column (simulations since the
    stopping signal; older results give None). Per repeat: the stop round, labels then, the metric
    then and at the last round (``left`` = final - at stop). Repeats where it never fires count as
    not stopped. Means are over the repeats that stopped.
    """
    cols = res.columns
    if "stop_kappa" not in cols:
        return None
    out: dict = {"rule": f"kappa >= {threshold} for {rounds} consecutive rounds", "threshold": threshold,
                 "rounds": rounds, "metric": metric, "strategies": {}}
    n = len(cols["strategy"])
    for name in res.strategies:
        per: dict = {}
        for i in range(n):
            if cols["strategy"][i] != name:
                continue
            per.setdefault(int(cols["repeat"][i]), []).append(i)
        repeats = []
        for r, idx in sorted(per.items()):
            idx = sorted(idx, key=lambda j: int(cols["round"][j]))
            rnds = [int(cols["round"][j]) for j in idx]
            kap = [cols["stop_kappa"][j] for j in idx]
            kap = [None if (k is None or math.isnan(float(k))) else float(k) for k in kap]
            acc = [cols[metric][j] for j in idx]
            at = stop_round(kap, threshold, rounds)
            entry = {"repeat": r, "stop_round": rnds[at] if at is not None else None,
                     "n_labeled": int(cols["n_labeled"][idx[at]]) if at is not None else None,
                     "final_round": rnds[-1], "final_n_labeled": int(cols["n_labeled"][idx[-1]]),
                     "at_stop": float(acc[at]) if at is not None and acc[at] is not None else None,
                     "final": float(acc[-1]) if acc[-1] is not None else None}
            entry["left"] = (entry["final"] - entry["at_stop"]) if entry["at_stop"] is not None \
                and entry["final"] is not None else None
            repeats.append(entry)
        stopped = [e for e in repeats if e["stop_round"] is not None]

        def mean(key, rows=stopped):
            vals = [e[key] for e in rows if e[key] is not None]
            return float(np.mean(vals)) if vals else None

        out["strategies"][name] = {"repeats": repeats, "stopped": len(stopped), "of": len(repeats),
                                   "mean_stop_round": mean("stop_round"), "mean_n_labeled": mean("n_labeled"),
                                   "mean_at_stop": mean("at_stop"), "mean_final": mean("final", repeats),
                                   "mean_left": mean("left")}
    return out


STOPPING_NOTE = ("Where the rule \"{rule}\" (kappa of consecutive heads' predictions on a fixed, seeded stop set; "
                 "Bloodgood & Vijay-Shanker 2009) would have stopped each strategy, per repeat, and the accuracy "
                 "that left on the table (final minus accuracy at the stop round, mean over the repeats that "
                 "stopped). `alq train --previous` reports the same signal on a live pool.")


def stopping_table(s: dict) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the report's stopping section."""
    st = s["stopping"]
    headers = ["strategy", "stopped", "stop round (per repeat)", "labels at stop", "at stop", "final",
               "left on the table"]

    def pct(x):
        return "-" if x is None else f"{100 * x:.2f}"

    rows = []
    for name, e in st["strategies"].items():
        per = ", ".join("-" if r["stop_round"] is None else str(r["stop_round"]) for r in e["repeats"])
        rows.append([name, f"{e['stopped']}/{e['of']}", per,
                     "-" if e["mean_n_labeled"] is None else f"{e['mean_n_labeled']:.0f}",
                     pct(e["mean_at_stop"]), pct(e["mean_final"]),
                     "-" if e["mean_left"] is None else f"{100 * e['mean_left']:+.2f} points"])
    return headers, rows
