"""Cluster bootstrap intervals, exact intervals for small proportions, and paired differences with p-values.

A figure is the aggregate of its MetricSpec (core.metrics): a statistic of per-item arrays under
integer item weights, where weights of ones give the figure itself and a resample is a weight
matrix (how many times each item was drawn). Items of a cluster (the questions about one POPE
image, the captions of one CHAIR image) are drawn together, because they are not independent.
Two runs are compared on the keys both hold (what an item is, not its position), every item of a
shared cluster drawn the same number of times in both, so what the runs share cancels out.
A proportion on few items or few clusters gets a Clopper–Pearson interval instead of a percentile
one (on Korn and Graubard's effective n when items cluster); a ratio there is marked unreliable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotaudit.core.metrics import Aggregate, Arrays

from .exact import exact_bounds
from .multiplicity import ALPHA, adjust, p_value

LEVEL = 0.95
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
MIN_ITEMS = 30  # a proportion over fewer items gets an exact interval
MIN_CLUSTERS = 20  # fewer clusters: exact interval on the effective n for a proportion, "unreliable" for a ratio

Statistic = Aggregate  # arrays, weights (B, n) -> values (B,)
Proportion = Callable[[Arrays], tuple[np.ndarray, np.ndarray]]  # arrays -> per-item successes and trials


@dataclass
class Items:
    """The items behind one figure: their keys (what each is, for pairing; the captions of one image share one),
    clusters, what must agree for two runs' items of a key to pair (`contents`), and the per-item arrays."""

    ids: list[str]
    clusters: list[str]
    unit: str  # what a cluster is: image, caption, item or question
    arrays: dict[str, np.ndarray]  # items along the first axis
    contents: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, positions: Sequence[int]) -> Items:
        index = np.asarray(positions, dtype=int)
        contents = None if self.contents is None else [self.contents[i] for i in index]
        return Items([self.ids[i] for i in index], [self.clusters[i] for i in index], self.unit,
                     {k: v[index] for k, v in self.arrays.items()}, contents)


@dataclass
class Interval:
    """A figure with its interval; `n` items in `clusters` clusters of `unit`, how the interval was made,
    how many resamples left the figure undefined, and whether too few clusters make a bootstrap unreliable."""

    value: float | None
    low: float | None
    high: float | None
    n: int
    clusters: int
    unit: str
    method: str = "bootstrap"  # bootstrap, clopper-pearson or korn-graubard
    undefined: int = 0
    unreliable: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "clusters": self.clusters, "unit": self.unit,
                "method": self.method, "undefined": self.undefined, "unreliable": self.unreliable}


@dataclass
class Difference(Interval):
    """A paired difference a - b over the keys both runs hold, with its two-sided bootstrap p-value,
    the p-value adjusted over the report's family, and `flagged` when the adjusted value is at most ALPHA."""

    p_value: float | None = None
    adjusted: float | None = None
    flagged: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "p_value": self.p_value, "adjusted": self.adjusted, "flagged": self.flagged}


class ContentMismatch(ValueError):
    """Two runs hold the same key with different content: the key, and each run's content."""

    def __init__(self, key: str, a: Any, b: Any):
        super().__init__(key)
        self.key, self.a, self.b = key, a, b


def cluster_codes(clusters: Sequence[str]) -> tuple[np.ndarray, int]:
    """Each item's cluster as an index 0..C-1, and C."""
    _, codes = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    return codes.reshape(-1), int(codes.max()) + 1 if len(codes) else 0


def cluster_draws(count: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, count): how often each of `count` clusters is drawn, `count` draws with replacement per resample."""
    drawn = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    offsets = np.arange(resamples)[:, None] * count
    return np.bincount((drawn + offsets).ravel(), minlength=resamples * count).reshape(resamples, count).astype(float)


def draw_weights(clusters: Sequence[str], resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) item weights: C clusters drawn with replacement, each item weighted by its cluster's draws."""
    codes, count = cluster_codes(clusters)
    return cluster_draws(count, resamples, seed)[:, codes]


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


# Intervals --------------------------------------------------------------------------------------

def bootstrap(statistic: Statistic, items: Items, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
              level: float = LEVEL, proportion: Proportion | None = None) -> Interval:
    """The figure on all items and its interval: exact for a proportion on fewer than MIN_ITEMS items or
    MIN_CLUSTERS clusters, else the percentile interval over cluster resamples (marked unreliable under MIN_CLUSTERS)."""
    if not len(items):
        return Interval(None, None, None, 0, 0, items.unit)
    count = cluster_codes(items.clusters)[1]
    value = _value(statistic, items)
    if proportion is not None and value is not None and (len(items) < MIN_ITEMS or count < MIN_CLUSTERS):
        successes, trials = proportion(items.arrays)
        low, high, method = exact_bounds(value, successes, trials, cluster_codes(items.clusters)[0], count, level)
        return Interval(value, low, high, len(items), count, items.unit, method)
    resampled = statistic(items.arrays, draw_weights(items.clusters, resamples, seed))
    low, high = percentile_interval(resampled, level)
    return Interval(value, low, high, len(items), count, items.unit, undefined=int((~np.isfinite(resampled)).sum()),
                    unreliable=count < MIN_CLUSTERS)


# Pairing ----------------------------------------------------------------------------------------

def _contents_by_key(items: Items) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, key in enumerate(items.ids):
        out.setdefault(key, []).append("" if items.contents is None else items.contents[k])
    return out


def common_items(a: Items, b: Items) -> tuple[list[int], list[int]]:
    """Positions in a and in b of every item whose key both hold (all the captions of a shared image).
    Raises ContentMismatch at the first shared key whose contents differ."""
    in_a, in_b = _contents_by_key(a), _contents_by_key(b)
    for key, contents in in_a.items():
        if key in in_b and sorted(set(contents)) != sorted(set(in_b[key])):
            raise ContentMismatch(key, contents[0], in_b[key][0])
    return [k for k, key in enumerate(a.ids) if key in in_b], [k for k, key in enumerate(b.ids) if key in in_a]


def paired_difference(statistic_a: Statistic, a: Items, statistic_b: Statistic, b: Items, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = DEFAULT_SEED, level: float = LEVEL) -> Difference:
    """a - b over the keys both hold, every shared cluster drawn as often in both; its percentile interval and p-value.
    Not yet flagged: flags come from the p-value adjusted over the family (`adjust`)."""
    in_a, in_b = common_items(a, b)
    if not in_a:
        return Difference(None, None, None, 0, 0, a.unit)
    shared_a, shared_b = a.take(in_a), b.take(in_b)
    codes, count = cluster_codes(shared_a.clusters + shared_b.clusters)
    draws = cluster_draws(count, resamples, seed)
    diffs = statistic_a(shared_a.arrays, draws[:, codes[:len(in_a)]]) - statistic_b(shared_b.arrays, draws[:, codes[len(in_a):]])
    finite = diffs[np.isfinite(diffs)]
    low, high = percentile_interval(finite, level)
    va, vb = _value(statistic_a, shared_a), _value(statistic_b, shared_b)
    value = None if va is None or vb is None else va - vb
    p = None if value is None or not len(finite) else p_value(finite, value)
    return Difference(value, low, high, len(set(shared_a.ids)), count, a.unit, undefined=len(diffs) - len(finite),
                      unreliable=count < MIN_CLUSTERS, p_value=p)


# Multiplicity -----------------------------------------------------------------------------------

def flag(differences: Sequence[Difference], method: str = "holm", alpha: float = ALPHA) -> None:
    """Adjust the differences' p-values over the family they form and flag those at most alpha."""
    tested = [d for d in differences if d.p_value is not None]
    for d, adjusted in zip(tested, adjust([d.p_value for d in tested], method)):
        d.adjusted = float(adjusted)
        d.flagged = bool(adjusted <= alpha)


def mean_of(statistics: Sequence[Statistic], masks: Sequence[str]) -> Statistic:
    """The mean of several statistics, each over the items its mask array selects (POPE's mean F1 over settings)."""
    def statistic(arrays: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        parts = [stat(arrays, weights * arrays[mask]) for stat, mask in zip(statistics, masks)]
        return np.mean(parts, axis=0)

    return statistic
