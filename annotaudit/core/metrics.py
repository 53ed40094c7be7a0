"""A metric, defined once: what each item contributes, and how weighted items combine into the figure.

The shape of lm-evaluation-harness's MetricSpec (a per-item function and an aggregate), with one
difference: the aggregate takes a weight matrix, one row per resample, and returns one value per
row. A row of ones gives the figure a command writes to metrics.json; compare's bootstrap passes
one row per resample (how often each item was drawn), so its interval is of exactly that figure.
Each feature defines its specs next to its scoring; nothing else writes their formulas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]  # per-item arrays, items along the first axis
Parts = Callable[[Sequence[dict[str, Any]]], Arrays]  # records -> per-item arrays
Aggregate = Callable[[Arrays, np.ndarray], np.ndarray]  # arrays, weights (B, n) -> values (B,)
Share = Callable[[Arrays], tuple[np.ndarray, np.ndarray]]  # arrays -> per-item successes and trials, 0 or 1 each


@dataclass(frozen=True)
class MetricSpec:
    """One figure: `parts` turns records into per-item arrays, `aggregate` weighted items into values (NaN where undefined).

    `share` is set when the figure is a proportion (successes over trials, each item one trial or none),
    which allows an exact interval on few items.
    """

    name: str
    parts: Parts
    aggregate: Aggregate
    share: Share | None = None

    def value(self, arrays: Arrays) -> float:
        """The figure over all items, each weighted once."""
        return float(self.aggregate(arrays, np.ones((1, items_in(arrays))))[0])

    def score(self, records: Sequence[dict[str, Any]]) -> float:
        return self.value(self.parts(records))


def items_in(arrays: Arrays) -> int:
    return len(next(iter(arrays.values()))) if arrays else 0


def item_arrays(specs: Iterable[MetricSpec], records: Sequence[dict[str, Any]]) -> Arrays:
    """Every per-item array the specs read, each distinct `parts` called once."""
    out: Arrays = {}
    for parts in dict.fromkeys(s.parts for s in specs):
        out.update(parts(records))
    return out


def values(specs: Iterable[MetricSpec], arrays: Arrays) -> dict[str, float]:
    """Each spec's figure over all items, by name."""
    return {s.name: s.value(arrays) for s in specs}


def names(specs: Iterable[MetricSpec]) -> tuple[str, ...]:
    return tuple(s.name for s in specs)


def defined(value: float) -> float | None:
    """None for an undefined figure (NaN), as metrics.json writes it where a ratio has nothing to divide by."""
    return None if math.isnan(value) else value


def divide(top: np.ndarray, bottom: np.ndarray, undefined: float = math.nan) -> np.ndarray:
    """top / bottom, `undefined` where bottom is zero."""
    positive = bottom > 0
    return np.where(positive, top / np.where(positive, bottom, 1), undefined)


def ratio(numerator: str, denominator: str | None = None) -> Aggregate:
    """Σw·numerator / Σw·denominator (Σw without one), NaN where the denominator is zero: a share of items or of their counts."""
    def aggregate(arrays: Arrays, weights: np.ndarray) -> np.ndarray:
        bottom = weights @ arrays[denominator] if denominator else weights.sum(axis=1)
        return divide(weights @ arrays[numerator], bottom)

    return aggregate


def share_of(successes: str | tuple[str, ...], trials: str | tuple[str, ...] | None = None) -> Share:
    """Per-item successes and trials as sums of the named arrays (every item one trial without `trials`)."""
    def total(arrays: Arrays, names: str | tuple[str, ...]) -> np.ndarray:
        return sum(arrays[k] for k in ((names,) if isinstance(names, str) else names))

    def share(arrays: Arrays) -> tuple[np.ndarray, np.ndarray]:
        top = total(arrays, successes)
        return top, total(arrays, trials) if trials else np.ones(len(top))

    return share


def flags(values: Iterable[Any]) -> np.ndarray:
    """Per-item 0/1 floats from truth values."""
    return np.fromiter((bool(v) for v in values), dtype=float)
