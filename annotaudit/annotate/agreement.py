"""Agreement among annotators, each figure with a bootstrap interval over items.

Krippendorff's alpha (nominal, ordinal, interval, ratio; missing labels allowed), Fleiss' kappa on the
items every annotator labelled, and Cohen's kappa between two annotators.

Labels come as a float matrix, one row per item and one column per annotator, NaN where an annotator
gave no label. Text labels are coded as numbers first; for the nominal level the codes only need to
be distinct. Every figure is computed from per-item contributions, so one matrix product gives it
for all bootstrap replicates at once.

Alpha follows Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": the coincidence
matrix over pairable units (two or more labels), and alpha = 1 - (n - 1) * sum(o * d) / sum(n_c * n_k * d).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LEVELS = ("nominal", "ordinal", "interval", "ratio")
REPLICATES = 1000
CONFIDENCE = 0.95


@dataclass
class Bootstrap:
    """The same resamples of the items for every figure: `weights[b, i]` is how often replicate b drew item i."""

    n_items: int
    replicates: int = REPLICATES
    seed: int = 0
    weights: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        draws = rng.integers(0, max(self.n_items, 1), size=(self.replicates, self.n_items))
        self.weights = np.empty((self.replicates, self.n_items))
        for b, drawn in enumerate(draws):
            self.weights[b] = np.bincount(drawn, minlength=self.n_items)

    def sums(self, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Each replicate's weighted sums of per-item values, for several parts at once.

        A part is (items, values): an index of items and their values (one per item, or items x ...).
        All parts go into one matrix product, each spread over every item (zero elsewhere), so the
        weights are read once and never copied; each result is replicates x (the values' trailing shape)."""
        parts = [(items, np.asarray(values, dtype=float)) for items, values in parts]
        widths = [int(np.prod(values.shape[1:], dtype=int)) for _, values in parts]
        full = np.zeros((self.n_items, sum(widths)))
        edges = np.cumsum([0, *widths])
        for (items, values), start, width in zip(parts, edges, widths):
            full[items, start : start + width] = values.reshape(len(items), width)
        product = self.weights @ full
        return [product[:, start : start + width].reshape(self.replicates, *values.shape[1:]) for (_, values), start, width in zip(parts, edges, widths)]


def interval(value: float | None, replicates: np.ndarray | None, n_items: int) -> dict[str, Any]:
    """A figure as reports print it: value, percentile interval of its replicates, and how many items it rests on."""
    value = None if value is None or not np.isfinite(value) else float(value)
    low = high = None
    if value is not None and replicates is not None:
        finite = replicates[np.isfinite(replicates)]
        if finite.size:
            tail = (1 - CONFIDENCE) / 2 * 100
            low, high = (float(x) for x in np.percentile(finite, [tail, 100 - tail]))
    return {"value": value, "low": low, "high": high, "n_items": int(n_items)}


# Krippendorff's alpha -------------------------------------------------------------------------


def _codes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values (sorted) and each label's index among them, -1 where missing."""
    present = ~np.isnan(data)
    values = np.unique(data[present])
    codes = np.full(data.shape, -1, dtype=np.int64)
    codes[present] = np.searchsorted(values, data[present])
    return values, codes


def _value_counts(codes: np.ndarray, k: int) -> np.ndarray:
    """How many annotators gave each value on each item (items x values)."""
    n = codes.shape[0]
    rows = np.broadcast_to(np.arange(n)[:, None], codes.shape)
    keep = codes >= 0
    flat = np.bincount(rows[keep] * k + codes[keep], minlength=n * k)
    return flat.reshape(n, k).astype(float)


@dataclass
class Coincidences:
    """Each pairable item's share of the coincidence matrix (flattened), the values, and which items are pairable."""

    values: np.ndarray
    per_item: np.ndarray  # pairable items x (values * values)
    pairable: np.ndarray  # indices of the items with two or more labels

    def total(self) -> np.ndarray:
        """The coincidence matrix (values x values)."""
        k = len(self.values)
        return self.per_item.sum(0).reshape(k, k)


def coincidences(data: np.ndarray) -> Coincidences:
    values, codes = _codes(np.asarray(data, dtype=float))
    k = len(values)
    counts = _value_counts(codes, k)
    m = counts.sum(1)
    pairable = np.flatnonzero(m >= 2)
    counts, m = counts[pairable], m[pairable]
    pairs = counts[:, :, None] * counts[:, None, :]
    pairs[:, np.arange(k), np.arange(k)] -= counts
    per_item = (pairs / (m - 1)[:, None, None]).reshape(len(pairable), k * k)
    return Coincidences(values, per_item, pairable)


def distances(values: np.ndarray, marginals: np.ndarray, level: str) -> np.ndarray:
    """Squared differences between values at a level; `marginals` (... x values) matter only for ordinal."""
    c, k = values[:, None], values[None, :]
    if level == "nominal":
        return (c != k).astype(float)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        total = c + k
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total == 0, 0.0, ((c - k) / total) ** 2)
    if level == "ordinal":
        upto = np.cumsum(marginals, axis=-1)
        before = upto - marginals
        span = upto[..., None, :] - before[..., :, None]  # sum of n_g for g from row value to column value
        n = len(values)
        span = np.where(np.arange(n)[:, None] <= np.arange(n)[None, :], span, np.swapaxes(span, -1, -2))
        return (span - (marginals[..., :, None] + marginals[..., None, :]) / 2) ** 2
    raise ValueError(f"unknown level {level!r}; levels are {', '.join(LEVELS)}")


def alpha_of(matrix: np.ndarray, values: np.ndarray, level: str) -> np.ndarray:
    """Alpha of a coincidence matrix, or of a stack of them (replicates x values x values); NaN without variation."""
    marginals = matrix.sum(-1)
    n = marginals.sum(-1)
    delta = distances(values, marginals, level)
    observed = (matrix * delta).sum((-1, -2))
    expected = (marginals[..., :, None] * marginals[..., None, :] * delta).sum((-1, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1 - (n - 1) * observed / expected, np.nan)


def krippendorff_alpha(data: np.ndarray, level: str = "nominal") -> float:
    """Alpha of an items x annotators matrix (NaN = no label); NaN when there is no variation to measure."""
    found = coincidences(data)
    if not found.pairable.size:
        return float("nan")
    return float(alpha_of(found.total(), found.values, level))


def alphas(tables: Sequence[tuple[np.ndarray, tuple[str, ...]]], boot: Bootstrap) -> list[dict[str, dict[str, Any]]]:
    """For each (data, levels): alpha at each level with its bootstrap interval (n_items counts the pairable items).

    The replicates of all the tables come from one matrix product."""
    found = [coincidences(data) for data, _ in tables]
    replicated = boot.sums([(f.pairable, f.per_item) for f in found])
    out = []
    for (_, levels), f, stack in zip(tables, found, replicated):
        k, n = len(f.values), len(f.pairable)
        point, stack = f.total(), stack.reshape(len(stack), k, k)
        out.append({level: interval(float(alpha_of(point, f.values, level)) if n else None, alpha_of(stack, f.values, level), n) for level in levels})
    return out


# Fleiss' kappa ---------------------------------------------------------------------------------


def _fleiss(agreement: np.ndarray, shares: np.ndarray) -> np.ndarray:
    expected = (shares**2).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected < 1, (agreement - expected) / (1 - expected), np.nan)


def fleiss_kappa(data: np.ndarray, boot: Bootstrap | None = None) -> dict[str, Any]:
    """Fleiss' kappa over the items every annotator labelled (n_items says how many), nominal labels."""
    data = np.asarray(data, dtype=float)
    complete = np.flatnonzero(~np.isnan(data).any(1))
    raters = data.shape[1]
    if complete.size == 0 or raters < 2:
        return interval(None, None, complete.size)
    values, codes = _codes(data[complete])
    counts = _value_counts(codes, len(values))
    per_item = ((counts**2).sum(1) - raters) / (raters * (raters - 1))
    value = _fleiss(per_item.mean(), counts.sum(0) / counts.sum())
    replicated = None
    if boot is not None:
        size, agreeing, shares = boot.sums([(complete, np.ones(complete.size)), (complete, per_item), (complete, counts)])
        with np.errstate(divide="ignore", invalid="ignore"):
            replicated = _fleiss(agreeing / size, shares / (size * raters)[:, None])
    return interval(float(value), replicated, complete.size)


# Cohen's kappa ---------------------------------------------------------------------------------


def _cohen(confusion: np.ndarray) -> np.ndarray:
    total = confusion.sum((-1, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.trace(confusion, axis1=-2, axis2=-1) / total
        expected = (confusion.sum(-1) * confusion.sum(-2)).sum(-1) / total**2
        return np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)


def _confusion_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The items both labelled, and each one's cell of the confusion matrix (items x values x values, one-hot)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = np.flatnonzero(~np.isnan(a) & ~np.isnan(b))
    values, codes = _codes(np.stack([a[both], b[both]], axis=1))
    k = len(values)
    cells = np.zeros((both.size, k, k))
    cells[np.arange(both.size), codes[:, 0], codes[:, 1]] = 1
    return both, cells


def cohen_kappas(pairs: Sequence[tuple[np.ndarray, np.ndarray]], boot: Bootstrap | None = None) -> list[dict[str, Any]]:
    """Cohen's kappa of each pair of annotators over the items both labelled (nominal labels, NaN = no label).

    With `boot`, each gets its bootstrap interval; the replicates of all pairs come from one matrix product."""
    found = [_confusion_rows(a, b) for a, b in pairs]
    replicated = boot.sums(found) if boot is not None else [None] * len(found)
    return [interval(float(_cohen(cells.sum(0))) if both.size else None, None if stack is None else _cohen(stack), both.size)
            for (both, cells), stack in zip(found, replicated)]


def majority(data: np.ndarray) -> np.ndarray:
    """Each item's most frequent label; NaN where the top labels tie or nobody labelled the item."""
    data = np.asarray(data, dtype=float)
    values, codes = _codes(data)
    out = np.full(data.shape[0], np.nan)
    if not len(values):
        return out
    counts = _value_counts(codes, len(values))
    top = counts.max(1)
    unique = (counts == top[:, None]).sum(1) == 1
    winners = counts.argmax(1)
    keep = unique & (top > 0)
    out[keep] = values[winners[keep]]
    return out
