"""Student-t tests and confidence intervals, in plain Python (no scipy at run time).

The t distribution's CDF is a regularized incomplete beta function,
``P(|T| > t) = I_x(df/2, 1/2)`` with ``x = df / (df + t^2)``; ``I_x`` is
evaluated by its continued fraction (modified Lentz), which converges fast
for ``x < (a+1)/(a+b+2)`` and is used through the symmetry
``I_x(a, b) = 1 - I_{1-x}(b, a)`` otherwise. The tests check these
functions against ``scipy.stats``.
"""

from __future__ import annotations

import math

import numpy as np

_EPS = 1e-15
_TINY = 1e-300
_MAX_TERMS = 1000


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b) (without its prefactor), by modified Lentz."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS + 1):
        m2 = 2 * m
        # even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m))
        num = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + num / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        # odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
        num = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + num / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0 (got a={a}, b={b})")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1 (got {x})")
    if x == 0.0 or x == 1.0:
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t) or df <= 0:
        return math.nan
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t)."""
    if math.isnan(t) or df <= 0:
        return math.nan
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * t_two_sided_p(t, df)
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t (inverse of :func:`t_cdf`), by bisection."""
    if not 0.0 < q < 1.0 or df <= 0:
        return math.nan
    if q == 0.5:
        return 0.0
    hi = 1.0
    while t_cdf(hi, df) < max(q, 1.0 - q):
        hi *= 2.0
        if hi > 1e12:
            break
    lo = -hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


def paired_ttest(a, b) -> tuple[float, float, int]:
    """Two-tailed paired t-test of ``a - b`` (same as ``scipy.stats.ttest_rel``).

    Returns (t, p, df). Constant non-zero differences give t = +-inf, p = 0;
    all-zero differences (or fewer than 2 pairs) give t = p = nan.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = d.size
    if n < 2:
        return math.nan, math.nan, max(n - 1, 0)
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    df = n - 1
    if sd == 0.0:
        if mean == 0.0:
            return math.nan, math.nan, df
        return math.copysign(math.inf, mean), 0.0, df
    t = mean / (sd / math.sqrt(n))
    return t, t_two_sided_p(t, df), df


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the ``confidence`` Student-t interval); half-width nan for n < 2."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan
    if np.isinf(v).any():
        return mean, math.nan
    half = t_ppf(0.5 + confidence / 2.0, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return mean, float(half)
