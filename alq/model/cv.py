"""The head's L2 strength, chosen by k-fold cross-validation on the labels.

Why: a fixed weight decay is wrong at most label counts (strong enough for
200 labels in 512 dimensions is too strong at 13,000), and an early-stopped
fit on a 10% holdout throws labels away and makes the learning curve noisy
(Emam et al. 2021, appendix D: a noisy head hides every strategy's effect).
scikit-learn's ``LogisticRegressionCV`` is the reference users compare
with; this does the same job on the head's own objective.

Objective per strength lambda: mean cross-entropy + lambda / 2 * ||W||^2
(biases free). In scikit-learn's terms (``LogisticRegression(C)`` on the
same n rows) lambda = 1 / (C n) for 3 or more classes, but 2 / (C n) for
two (scikit-learn fits one weight vector w, the softmax head two rows
w_1 = -w_0 = w / 2 whose squared norms sum to ||w||^2 / 2) and
1 / (C n n_classes) for a multi-label head (its loss is the mean over
n x n_classes binary terms): see :func:`sklearn_c`.

Search: whole decades from the strongest down, each fold's fit
warm-started from the previous decade's (a regularisation path: weak
strengths, slow from scratch, start near their optimum), stopping at the
first decade that improves neither the held-out accuracy nor the log-loss
on any before it; then the two half decades around the most accurate
decade. The chosen strength has the most correct held-out predictions over
the k folds, resolved to one label (a strength at most one label's worth of
held-out predictions behind the most accurate is tied with it); ties go to
the lower held-out log-loss, then to the stronger penalty. scikit-learn's
``LogisticRegressionCV`` also scores by accuracy, and measured on
Fashion-MNIST embeddings the log-loss optimum is a half decade too strong
and 0.6 points less accurate on the test set; but with few labels the
accuracy differences between strengths are a row or two of noise (digits,
100 labels: 0.876..0.886 from 10^-4 to 10^-1), and picking the largest of
them chose 10^-1.5 (test 0.873) where the log-loss among the tied ones
chooses 10^-2.5 (0.893, scikit-learn's LogisticRegressionCV 0.893). Over 8
random 100-label draws of the digits pool (converged fold fits): test
accuracy 0.8854 with the one-label resolution, 0.8838 without, scikit-learn
0.8804. With 1,000 labels or more (one split) the resolution is one
held-out prediction, as before.
Deterministic for a seed.

Layering: this module sits above the fitting code (:mod:`alq.model.fit`),
which knows nothing of it; :func:`alq.model.train.train_head` calls
:func:`select_weight_decay` when no strength is given.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from alq.model.fit import fit_net
from alq.model.options import resolve_optimizer
from alq.model.precondition import LinearBasis

# Strengths lambda searched: whole decades 10^-1 .. 10^-7 (strongest first), then half decades around the best.
COARSE = (-1, -7)
STRONGEST = 2  # decades above 10^-1 tried when 10^-1 is the best of the downward pass
DEFAULT_FOLDS = 5
# Below this many rows per fold (or when a class has fewer rows than folds can split) the folds
# shrink; with fewer than MIN_ROWS labels there is no cross-validation at all.
MIN_ROWS = 10
FALLBACK_WEIGHT_DECAY = 1e-3
# Fold fits run to the tolerance below (at most the head's max_iter L-BFGS iterations), warm-started along
# the path: a cap of 15 iterations left the weak strengths' held-out numbers up to 0.012 off converged fits.
CV_MIN_HELD_OUT = 1000  # held-out predictions per strength that repeated splits aim for
MAX_CV_REPEATS = 5
CV_TOL = 1e-4  # gradient tolerance of the fold fits at strong penalties (scikit-learn's default) ...
# ... and CV_REL_TOL x lambda below 10^-2: the objective's curvature is at least lambda, so a gradient
# g leaves the weights within |g| / lambda of the optimum; at a fixed 1e-4, the held-out accuracy at
# lambda = 1e-4 was 0.01 off the converged fits' (digits, 100 labels), at CV_REL_TOL = 1e-2 it is exact.
CV_REL_TOL = 1e-2


def sklearn_c(weight_decay: float, n: int, n_classes: int, *, multilabel: bool) -> float:
    """scikit-learn's ``C`` whose ``LogisticRegression`` fit on the same n rows is the head at ``weight_decay``.

    Multi-class softmax (3+ classes): 1 / (lambda n). Two classes: 2 / (lambda n) (one binary weight
    vector w against the head's two rows +-w/2). Multi-label (one-vs-rest binary fits): 1 / (lambda n C).
    """
    if weight_decay <= 0 or n <= 0:
        return math.inf
    if multilabel:
        return 1.0 / (weight_decay * n * n_classes)
    return (2.0 if n_classes == 2 else 1.0) / (weight_decay * n)


def stratified_folds(y: np.ndarray, k: int, *, multilabel: bool, seed: int, repeat: int = 0) -> np.ndarray:
    """Fold number (0..k-1) of every row: each class dealt round-robin over the folds in a seeded order.

    Multi-label rows are dealt at random (no stratification). ``repeat`` r > 0 gives the r-th
    independent split (repeated cross-validation, see :func:`cv_repeats`).
    """
    n = len(y)
    rng = np.random.default_rng([seed, 0xC5F0] if repeat == 0 else [seed, 0xC5F0, repeat])
    fold = np.empty(n, dtype=np.int64)
    if multilabel:
        fold[rng.permutation(n)] = np.arange(n) % k
        return fold
    start = 0  # continue the deal across classes so small classes do not all land in fold 0
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        fold[rows] = (start + np.arange(len(rows))) % k
        start = (start + len(rows)) % k
    return fold


def cv_repeats(n: int) -> int:
    """Independent k-fold splits to average: ceil(CV_MIN_HELD_OUT / n), at most MAX_CV_REPEATS.

    With few labels one split's held-out accuracy moves by a row or two between strengths, and the
    choice follows the split (measured: 200 Fashion-MNIST labels, one split picked lambda = 0.32 and
    scored 0.707 on the test set where another split's choice scored 0.723); averaging splits until
    about CV_MIN_HELD_OUT held-out predictions are counted per strength removes most of that, at
    little cost, since few labels are cheap to fit.
    """
    return int(min(MAX_CV_REPEATS, max(1, math.ceil(CV_MIN_HELD_OUT / max(n, 1)))))


def effective_folds(y: np.ndarray, k: int, *, multilabel: bool) -> int:
    """The folds a label set supports: at most k, at least 2 rows held out per fold; 0 = too few labels."""
    n = len(y)
    if n < MIN_ROWS or k < 2:
        return 0
    return int(max(2, min(k, n // 2)))


def select_weight_decay(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, multilabel: bool, opts,
                        weights: torch.Tensor | None, stats: tuple | None) -> tuple[float, dict, object]:
    """(chosen lambda, report, a fold's net at it) by k-fold CV; tensors already on the target device.

    ``opts`` are the head's :class:`~alq.model.options.TrainOptions` (its ``cv_folds``, ``seed``, ``max_iter``);
    ``stats`` the standardisation (mean, scale) the head will use. The
    returned net (fold 0's fit at the chosen strength) warm-starts the final
    fit, which then needs few iterations. The report lists, per strength
    tried, the held-out accuracy and log-loss (means over all labels).
    """
    y_np = y.cpu().numpy()
    k = effective_folds(y_np, opts.cv_folds, multilabel=multilabel)
    if k == 0:
        return FALLBACK_WEIGHT_DECAY, {"folds": 0, "reason": f"fewer than {MIN_ROWS} labels: no cross-validation",
                                       "weight_decay": FALLBACK_WEIGHT_DECAY}, None
    path = _Path(x, y, n_classes, multilabel=multilabel, opts=opts, weights=weights, stats=stats, k=k)
    # coarse: whole decades, from 10^-1 down until a decade improves neither measure; if 10^-1 itself
    # is best (few labels in many dimensions), up from there the same way (to 10^2)
    best = None
    for e in range(COARSE[0], COARSE[1] - 1, -1):
        lam = 10.0 ** e
        path.evaluate(lam, start_from=best)
        improved = path.improves(lam)
        if best is None or path.key(lam) < path.key(best):
            best = lam
        elif not improved:
            break
    if best == 10.0 ** COARSE[0]:
        prev = best
        for e in range(COARSE[0] + 1, STRONGEST + 1):
            lam = 10.0 ** e
            path.evaluate(lam, start_from=prev)
            prev = lam
            improved = path.improves(lam)
            if path.key(lam) < path.key(best):
                best = lam
            elif not improved:
                break
    # fine: the half decades either side of the best decade, each started from it
    for lam in (best * 10 ** 0.5, best * 10 ** -0.5):
        path.evaluate(lam, start_from=best)
    chosen = path.best()
    tried = sorted(path.scores, reverse=True)
    n = len(y_np)
    acc = {lam: c / (n * path.repeats) for lam, (c, _) in path.scores.items()}
    ll = {lam: v / (n * path.repeats) for lam, (_, v) in path.scores.items()}
    report = {"folds": k, "repeats": path.repeats, "weight_decay": chosen, "cv_accuracy": acc[chosen], "cv_log_loss": ll[chosen],
              "c_equivalent": sklearn_c(chosen, n, n_classes, multilabel=multilabel), "evaluations": path.evaluations,
              "grid": [{"weight_decay": lam, "accuracy": acc[lam], "log_loss": ll[lam],
                        "converged": path.unconverged[lam] == 0, "tied_with_best": path.tied_with_best(lam)}
                       for lam in tried]}
    return chosen, report, path.nets[chosen][0]


def fold_tolerance(tol: float, lam: float) -> float:
    """Gradient tolerance of a fold fit at strength ``lam``: CV_TOL, tightened to CV_REL_TOL x lam (see CV_REL_TOL)."""
    return float(min(max(tol, CV_TOL), CV_REL_TOL * lam)) if lam > 0 else float(max(tol, CV_TOL))


class _Path:
    """Fold fits along the regularisation path, each warm-started from a stronger strength's fits."""

    def __init__(self, x, y, n_classes, *, multilabel, opts, weights, stats, k):
        self.x, self.y, self.n_classes, self.multilabel = x, y, n_classes, multilabel
        self.weights, self.stats = weights, stats
        self.opts = replace(opts, holdout=0.0, ensemble=1, tol=max(opts.tol, CV_TOL))
        y_np = y.cpu().numpy()
        self.repeats = cv_repeats(len(y_np))
        self.splits = []
        for rep in range(self.repeats):
            folds = stratified_folds(y_np, k, multilabel=multilabel, seed=opts.seed, repeat=rep)
            self.splits += [(torch.as_tensor(np.flatnonzero(folds != f), device=x.device),
                             torch.as_tensor(np.flatnonzero(folds == f), device=x.device)) for f in range(k)]
        self.seed = opts.seed
        self.bases: list = [None] * len(self.splits)
        self.evaluations = 0  # objective evaluations over every fold fit (the cost of the search)
        self.nets: dict[float, list] = {}
        self.scores: dict[float, tuple[float, float]] = {}  # lambda -> (held-out correct, summed log-loss)
        self.unconverged: dict[float, int] = {}  # lambda -> fold fits that did not reach the tolerance
        self.record = (-math.inf, math.inf)  # best correct, lowest loss seen so far

    def evaluate(self, lam: float, start_from: float | None) -> None:
        correct = loss = 0.0
        nets = []
        capped = 0
        for f, (tr, va) in enumerate(self.splits):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * (f + 1))
            init = self.nets[start_from][f] if start_from is not None else None
            net, fit = fit_net(self.x[tr], self.y[tr], self.n_classes, multilabel=self.multilabel,
                             opts=replace(self.opts, weight_decay=lam, tol=fold_tolerance(self.opts.tol, lam)),
                             generator=gen, weights=self.weights,
                             init=init, stats=self.stats, with_metrics=False, basis=self.bases[f])
            if self.bases[f] is None and net.hidden == 0 and resolve_optimizer(self.opts) == "lbfgs":
                self.bases[f] = LinearBasis.of(net, self.x[tr])  # the same for every strength: reuse it
            nets.append(net)
            self.evaluations += int(fit["evaluations"])
            capped += fit["stopped"] != "converged"
            with torch.no_grad():
                z, yv = net(self.x[va]), self.y[va]
                if self.multilabel:
                    loss += float(torch.nn.functional.binary_cross_entropy_with_logits(z, yv, reduction="sum"))
                    hit = ((z > 0).float() == yv).float().mean(1)
                else:
                    loss += float(torch.nn.functional.cross_entropy(z, yv, reduction="sum"))
                    hit = (z.argmax(1) == yv).float()
                correct += float(hit.sum())
        self.nets[lam] = nets
        self.scores[lam] = (correct, loss)
        self.unconverged[lam] = capped

    def improves(self, lam: float) -> bool:
        """Did ``lam`` beat every strength before it on held-out accuracy or log-loss? (updates the record)"""
        c, v = self.scores[lam]
        out = c > self.record[0] + 0.5 or v < self.record[1]
        self.record = (max(self.record[0], c), min(self.record[1], v))
        return out

    def key(self, lam: float):
        """Sort key: smaller is preferred."""
        c, v = self.scores[lam]
        return (-round(c * 2), v, -lam)  # accuracy (half-row resolution), then log-loss, then the stronger

    def tied_with_best(self, lam: float) -> bool:
        """Is ``lam`` within one label of the most accurate strength? (see :meth:`best`)"""
        top = min(self.scores, key=self.key)
        return self.scores[top][0] - self.scores[lam][0] <= self.repeats + 1e-9

    def best(self) -> float:
        """The chosen strength: among those tied with the most accurate, the lowest log-loss (then the stronger).

        Accuracy is resolved to one label: a strength at most ``repeats`` held-out predictions (one
        label's worth over the repeated splits) behind the most accurate one is tied with it.
        """
        tied = [lam for lam in self.scores if self.tied_with_best(lam)]
        return min(tied, key=lambda lam: (self.scores[lam][1], -lam))
