"""Per-round evaluation measures of an active-learning run (ALGORITHMS.md, Evaluation).

Test-set quality (top-1/top-5/macro/per-class accuracy; multi-label mAP and
pooled AP) and the class balance of the labeled set (imbalance ratio, empty
classes, normalised class entropy; Emam et al. 2021, Fig. 3c-d and App. B).
Everything here works on small in-memory arrays: the test set's logits and a
length-C count vector. No validation beyond shapes: callers check inputs.
"""

from __future__ import annotations

import math

import numpy as np


# -- class balance of the labeled set ------------------------------------------------------------
def class_counts(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """Labels per class, int64 (C,).

    ``targets``: class indices (n,) for multi-class, or a multi-hot (n, C)
    matrix for multi-label (a row counts once for each of its classes).
    """
    t = np.asarray(targets)
    if t.ndim == 2:
        return (t != 0).sum(axis=0).astype(np.int64)
    return np.bincount(t.astype(np.int64), minlength=n_classes).astype(np.int64)


def imbalance_ratio(counts) -> float:
    """Most / least labeled class count (BASE's class imbalance ratio).

    ``inf`` when some class has no label at all (see :func:`empty_classes`),
    ``nan`` when nothing is labeled.
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.size == 0 or c.sum() == 0:
        return math.nan
    lo = c.min()
    return math.inf if lo == 0 else float(c.max() / lo)


def empty_classes(counts) -> int:
    """Number of classes with no label."""
    return int(np.count_nonzero(np.asarray(counts) == 0))


def class_entropy(counts) -> float:
    """Entropy of the class distribution of the labeled set / log C, in [0, 1].

    1 = perfectly balanced; 0 = one class only. ``nan`` for C < 2 or no labels.
    """
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if c.size < 2 or total == 0:
        return math.nan
    p = c[c > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(c.size))


# -- multi-class accuracy ------------------------------------------------------------------------
def accuracy_metrics(logits: np.ndarray, y: np.ndarray) -> dict:
    """Top-1, top-5 (C >= 5), macro and per-class accuracy.

    logits : (n, C) float; y : (n,) int class indices.
    top-1 uses argmax (ties -> the lower class index, as y-hat everywhere in
    alq); top-5 counts a hit when fewer than 5 classes score strictly higher
    than the true class. Per-class accuracy is recall on that class's test
    rows, ``nan`` for a class with no test row; macro = mean over classes
    that have test rows.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n, c = z.shape
    pred = z.argmax(axis=1)
    hit = pred == y
    top5 = None
    if c >= 5:
        true_score = z[np.arange(n), y]
        higher = (z > true_score[:, None]).sum(axis=1)
        top5 = float((higher < 5).mean()) if n else math.nan
    support = np.bincount(y, minlength=c)
    correct = np.bincount(y[hit], minlength=c)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, correct / np.maximum(support, 1), np.nan)
    macro = float(np.nanmean(per_class)) if (support > 0).any() else math.nan
    return {"top1": float(hit.mean()) if n else math.nan, "top5": top5, "macro_accuracy": macro,
            "per_class_accuracy": per_class.tolist()}


# -- multi-label ---------------------------------------------------------------------------------
def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision: sum over distinct score thresholds of (R_k - R_{k-1}) P_k.

    The step-wise (non-interpolated) area under the precision-recall curve;
    tied scores form one threshold. ``nan`` when there is no positive.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos = np.asarray(positive).reshape(-1) != 0
    n_pos = int(pos.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each tie group
    tp = np.cumsum(pos)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_metrics(logits: np.ndarray, y: np.ndarray) -> dict:
    """mAP, pooled AP, precision@1 and per-class binary accuracy for a sigmoid head.

    logits : (n, C); y : multi-hot (n, C). mAP = mean AP over classes with
    at least one positive test row; pooled AP = AP over all (row, class)
    pairs at once (Citovsky et al. 2021's "pooled average precision").
    ``top1`` is precision@1 (the top-scoring class is a true label);
    per-class accuracy is binary accuracy at p = 0.5 (logit 0).
    """
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(y) != 0
    n, c = z.shape
    aps = np.array([average_precision(z[:, k], t[:, k]) for k in range(c)])
    per_class = ((z > 0) == t).mean(axis=0) if n else np.full(c, np.nan)
    return {"top1": float(t[np.arange(n), z.argmax(axis=1)].mean()) if n else math.nan, "top5": None,
            "macro_accuracy": float(np.mean(per_class)) if n else math.nan,
            "per_class_accuracy": per_class.tolist(),
            "map": float(np.nanmean(aps)) if np.isfinite(aps).any() else math.nan,
            "pooled_ap": average_precision(z, t)}


def evaluate(logits: np.ndarray, y: np.ndarray, *, multilabel: bool) -> dict:
    """All test-set measures of one round (keys as in results.parquet)."""
    if multilabel:
        return multilabel_metrics(logits, y)
    out = accuracy_metrics(logits, y)
    out.update(map=None, pooled_ap=None)
    return out


def balance_metrics(counts) -> dict:
    """Class-balance measures of the labeled set (keys as in results.parquet)."""
    counts = np.asarray(counts, dtype=np.int64)
    return {"class_counts": counts.tolist(), "imbalance_ratio": imbalance_ratio(counts),
            "empty_classes": empty_classes(counts), "class_entropy": class_entropy(counts)}
