"""Exact intervals for a proportion on few items: Clopper–Pearson, on Korn and Graubard's effective n when items cluster.

A percentile bootstrap on a handful of items gives intervals that are too narrow (zero-width when every
item agrees). Clopper–Pearson inverts two one-sided binomial tests, so it covers at least its level for
every true proportion. With clustered items the binomial n overstates the information: Korn and
Graubard (1998, Survey Methodology 24(2)) replace n by the effective n, n over the design effect,
times a degrees-of-freedom factor.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def clopper_pearson(successes: float, trials: float, level: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval from beta quantiles; successes and trials may be fractional (an effective n)."""
    tail = (1 - level) / 2
    low = 0.0 if successes <= 0 else float(stats.beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes >= trials else float(stats.beta.ppf(1 - tail, successes + 1, trials - successes))
    return low, high


def effective_n(p: float, successes: np.ndarray, trials: np.ndarray, codes: np.ndarray, count: int, level: float = 0.95) -> float:
    """Korn and Graubard's effective sample size of a clustered proportion p = Σ successes / Σ trials.

    n / design effect, the design effect being the cluster-robust (ratio-estimator) variance of p against the
    binomial p(1 - p)/n, times their degrees-of-freedom factor (t quantile at n - 1 over t at clusters - 1,
    squared). Never above n; n itself when p is 0 or 1 or there is one cluster, where no variance is estimable.
    """
    n = float(trials.sum())
    if count < 2 or p <= 0 or p >= 1:
        return n
    y, m = np.bincount(codes, successes, count), np.bincount(codes, trials, count)
    variance = count / (count - 1) * float(((y - p * m) ** 2).sum()) / n ** 2
    design_n = n if variance <= 0 else min(n, p * (1 - p) / variance)
    quantile = 1 - (1 - level) / 2
    factor = (stats.t.ppf(quantile, max(n - 1, 1)) / stats.t.ppf(quantile, count - 1)) ** 2
    return min(n, design_n * factor)


def exact_bounds(p: float, successes: np.ndarray, trials: np.ndarray, codes: np.ndarray, count: int,
                 level: float = 0.95) -> tuple[float, float, str]:
    """The exact interval of a proportion p and how it was made: clopper-pearson on the trials when every
    item is its own cluster, else korn-graubard (Clopper–Pearson at p on the effective n)."""
    kept = trials > 0
    clustered = count < len(trials)
    n = effective_n(p, successes[kept], trials[kept], codes[kept], count, level) if clustered else float(trials.sum())
    low, high = clopper_pearson(p * n, n, level)
    return low, high, "korn-graubard" if clustered else "clopper-pearson"
