"""The paired differences of one report as one family: bootstrap p-values, Holm or Benjamini–Hochberg, and the
resamples a family needs.

Flags from unadjusted intervals say "different" about one difference in twenty where nothing differs;
over a report of dozens of differences that is several false findings. Holm's step-down procedure
keeps the chance of any false flag in the report at most alpha; Benjamini–Hochberg keeps the expected
share of false flags among the flagged at most alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
ADJUSTMENTS = ("holm", "bh")


def p_value(diffs: np.ndarray, value: float) -> float:
    """Two-sided cluster-bootstrap p-value of a difference: twice (1 + resampled differences at or beyond 0 on the
    other side of the observed one) / (B + 1), at most 1; 1 for an observed difference of exactly 0."""
    if value == 0:
        return 1.0
    other = int((diffs <= 0).sum()) if value > 0 else int((diffs >= 0).sum())
    return min(1.0, 2 * (1 + other) / (len(diffs) + 1))


def adjust(p_values: Sequence[float], method: str = "holm") -> np.ndarray:
    """p-values adjusted over their family: Holm's step-down (family-wise error) or Benjamini–Hochberg (scipy's false discovery rate)."""
    p = np.asarray(p_values, dtype=float)
    if not len(p):
        return p
    if method == "bh":
        return stats.false_discovery_control(p, method="bh")
    if method != "holm":
        raise ValueError(f"unknown adjustment {method!r}; choose one of {', '.join(ADJUSTMENTS)}")
    order = np.argsort(p)
    stepped = np.maximum.accumulate(np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(p)
    out[order] = stepped
    return out


def resamples_needed(family: int, alpha: float = ALPHA) -> int:
    """The fewest resamples whose smallest p-value, 2 / (B + 1), passes the strictest threshold of either adjustment, alpha / family."""
    return max(0, math.ceil(2 * family / alpha) - 1)
