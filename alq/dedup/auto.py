"""``alq dedup --auto``: the threshold read from a sample's nearest-neighbour distances.

Nearest-neighbour distances of a seeded sample of up to ``AUTO_SAMPLE``
rows. When their log-distances show a separate low mode (near-duplicates)
below the bulk (Otsu split in log space, the two modes at least
``AUTO_GAP`` x apart and separated by a valley at most half as dense as the
smaller peak), the threshold is that valley. Otherwise ``AUTO_FRACTION`` x
the median nearest-neighbour distance: pairs ten times closer than a
typical neighbour pair.
"""

from __future__ import annotations

import math

import numpy as np

from alq.cluster.knn import IndexRef
from alq.dedup.edges import search_rows

AUTO_SAMPLE = 10_000
AUTO_FRACTION = 0.1
AUTO_GAP = 4.0


def auto_threshold(pool, ref: IndexRef, normalize, seed: int) -> tuple[float, dict]:
    """The threshold ``--auto`` chooses (module docstring), and what it saw."""
    n = pool.count
    rng = np.random.default_rng([seed, 19])
    rows = np.sort(rng.choice(n, size=min(AUTO_SAMPLE, n), replace=False)).astype(np.int64)
    _, dist, _ = search_rows(pool, rows, ref, 1, normalize)
    return threshold_from_nn(dist[:, 0])


def threshold_from_nn(d: np.ndarray) -> tuple[float, dict]:
    """The ``--auto`` rule on a sample of nearest-neighbour distances (pure, for tests)."""
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    z = d[d > 0]
    info = {"sample_rows": int(len(d)), "sample_exact_duplicates": int((d == 0).sum())}
    if len(z) < 20:
        info["rule"] = "auto: too few distinct neighbour distances in the sample; exact duplicates only"
        return 0.0, info
    med = float(np.median(z))
    info["nn_distance_quantiles"] = {q: float(np.quantile(z, float(q))) for q in ("0.01", "0.1", "0.5", "0.9")}
    logz = np.log(z)
    hist, edges = np.histogram(logz, bins=64)
    hist_s = np.convolve(hist, np.ones(3) / 3, mode="same")
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)[:-1].astype(np.float64)
    w1 = len(z) - w0
    s0 = np.cumsum(hist * centers)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = ((hist * centers).sum() - s0) / np.maximum(w1, 1)
    between = np.where((w0 > 0) & (w1 > 0), w0 * w1 * (m0 - m1) ** 2, -1)
    split = int(np.argmax(between))
    gap = float(m1[split] - m0[split])
    p_lo = int(np.argmax(hist_s[:split + 1]))
    p_hi = split + 1 + int(np.argmax(hist_s[split + 1:]))
    v = p_lo + int(np.argmin(hist_s[p_lo:p_hi + 1]))
    valley_ok = hist_s[v] <= 0.5 * min(hist_s[p_lo], hist_s[p_hi])
    if gap >= math.log(AUTO_GAP) and valley_ok and p_hi > p_lo:
        t = float(math.exp(edges[v + 1]))
        info.update(rule=("auto: the valley between the near-duplicate mode and the bulk of the sample's "
                          "nearest-neighbour distances (log scale)"), modes_ratio=round(math.exp(gap), 2),
                    below_threshold_share=round(float((d <= t).mean()), 4))
        return t, info
    t = AUTO_FRACTION * med
    info.update(rule=f"auto: {AUTO_FRACTION:g} x the median nearest-neighbour distance of the sample "
                     "(no separate near-duplicate mode)",
                below_threshold_share=round(float((d <= t).mean()), 4))
    return t, info
