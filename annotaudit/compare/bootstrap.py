"""Percentile bootstrap intervals, resampling whole clusters, and paired differences between two runs.

A figure is the aggregate of its MetricSpec (core.metrics): a statistic of per-item arrays under
integer item weights, where weights of ones give the figure itself and a resample is a weight
matrix (how many times each item was drawn). Items of a
cluster (the questions about one POPE image) are drawn together, because they are not independent.
Two runs are compared on the items both evaluated, with the same draws for both, so what they share
cancels out of the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotaudit.core.metrics import Aggregate

LEVEL = 0.95
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0

Statistic = Aggregate  # arrays, weights (B, n) -> values (B,)


@dataclass
class Items:
    """The items behind one figure: their ids (for pairing), clusters, and the per-item arrays a statistic reads."""

    ids: list[str]
    clusters: list[str]
    unit: str  # what a cluster is: image, caption, item or question
    arrays: dict[str, np.ndarray]  # items along the first axis

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, positions: Sequence[int]) -> Items:
        index = np.asarray(positions, dtype=int)
        return Items([self.ids[i] for i in index], [self.clusters[i] for i in index], self.unit, {k: v[index] for k, v in self.arrays.items()})


@dataclass
class Interval:
    """A figure with its percentile interval; `n` items in `clusters` clusters of `unit`."""

    value: float | None
    low: float | None
    high: float | None
    n: int
    clusters: int
    unit: str

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "clusters": self.clusters, "unit": self.unit}


@dataclass
class Difference(Interval):
    """A paired difference a - b over the items both runs evaluated; `flagged` when its interval excludes zero."""

    flagged: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "flagged": self.flagged}


def cluster_codes(clusters: Sequence[str]) -> tuple[np.ndarray, int]:
    """Each item's cluster as an index 0..C-1, and C."""
    _, codes = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    return codes.reshape(-1), int(codes.max()) + 1 if len(codes) else 0


def draw_weights(clusters: Sequence[str], resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) item weights: C clusters drawn with replacement, each item weighted by its cluster's draws."""
    codes, count = cluster_codes(clusters)
    drawn = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    offsets = np.arange(resamples)[:, None] * count
    per_cluster = np.bincount((drawn + offsets).ravel(), minlength=resamples * count).reshape(resamples, count)
    return per_cluster.astype(float)[:, codes]


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float | None, float | None]:
    """The (1-level)/2 and (1+level)/2 percentiles of the resampled values that are defined."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None, None
    low, high = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def _value(statistic: Statistic, items: Items) -> float | None:
    value = float(statistic(items.arrays, np.ones((1, len(items))))[0])
    return value if np.isfinite(value) else None


def bootstrap(statistic: Statistic, items: Items, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
              level: float = LEVEL) -> Interval:
    """The figure on all items and its percentile interval over cluster resamples."""
    if not len(items):
        return Interval(None, None, None, 0, 0, items.unit)
    weights = draw_weights(items.clusters, resamples, seed)
    low, high = percentile_interval(statistic(items.arrays, weights), level)
    return Interval(_value(statistic, items), low, high, len(items), cluster_codes(items.clusters)[1], items.unit)


def common_items(a: Items, b: Items) -> tuple[list[int], list[int]]:
    """Positions in a and in b of the ids both hold, in a's order."""
    where = {item: k for k, item in enumerate(b.ids)}
    pairs = [(k, where[item]) for k, item in enumerate(a.ids) if item in where]
    return [k for k, _ in pairs], [j for _, j in pairs]


def paired_difference(statistic_a: Statistic, a: Items, statistic_b: Statistic, b: Items, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = DEFAULT_SEED, level: float = LEVEL) -> Difference:
    """a - b over the items both evaluated, both resampled with the same cluster draws (a's clusters)."""
    in_a, in_b = common_items(a, b)
    if not in_a:
        return Difference(None, None, None, 0, 0, a.unit)
    shared_a, shared_b = a.take(in_a), b.take(in_b)
    weights = draw_weights(shared_a.clusters, resamples, seed)
    diffs = statistic_a(shared_a.arrays, weights) - statistic_b(shared_b.arrays, weights)
    low, high = percentile_interval(diffs, level)
    va, vb = _value(statistic_a, shared_a), _value(statistic_b, shared_b)
    value = None if va is None or vb is None else va - vb
    flagged = low is not None and high is not None and (low > 0 or high < 0)
    return Difference(value, low, high, len(in_a), cluster_codes(shared_a.clusters)[1], a.unit, flagged)


def mean_of(statistics: Sequence[Statistic], masks: Sequence[str]) -> Statistic:
    """The mean of several statistics, each over the items its mask array selects (POPE's mean F1 over settings)."""
    def statistic(arrays: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        parts = [stat(arrays, weights * arrays[mask]) for stat, mask in zip(statistics, masks)]
        return np.mean(parts, axis=0)

    return statistic
