"""Prevalence of each class from a few human labels and many LLM labels, with prediction-powered inference.

PPI++ (Angelopoulos, Duchi and Zrnic 2023, arXiv:2311.01453) estimates a mean from n gold labels Y,
the model's predictions Yhat on the same items and its predictions on N further items:

    estimate = lam * mean(Yhat_unlabeled) + mean(Y - lam * Yhat)

The power-tuning weight lam comes from the data and is clipped to [0, 1]; lam = 0 is the human-only
mean, lam = 1 plain PPI (Angelopoulos et al., Science 2023). The interval is the normal (z) interval.
The arithmetic follows the authors' `ppi_py` (`ppi_mean_ci` and `ppi_mean_pointestimate` with `lam=None`)
step by step, so the figures equal theirs; `ppi_py` itself is only a test reference.

Assumption: the human-labelled items are a uniform random sample of all the items the LLM labelled.
If the humans labelled the easy, the early or the disputed items, no interval here is valid.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

from annotaudit.core.errors import InputError

BUDGET_POINTS = (1, 2, 5)


def _z(alpha: float) -> float:
    return float(norm.ppf(1 - alpha / 2.0))


def ppi_lambda(y: np.ndarray, yhat: np.ndarray, yhat_unlabeled: np.ndarray) -> float:
    """The power-tuning weight of `ppi_py`: cov(Y, Yhat) / ((1 + n/N) var(Yhat)), clipped to [0, 1].

    cov is over the n labelled pairs (divided by n), var over the predictions of all n + N items
    (divided by n + N - 1), as `ppi_py._calc_lam_glm` computes them. When the LLM gives every item the
    same answer its labels carry no information and the weight is 0 (`ppi_py` returns nan there).
    """
    n, big_n = len(y), len(yhat_unlabeled)
    cov = float(np.mean((y - y.mean()) * (yhat - yhat.mean())))
    var = float(np.var(np.concatenate([yhat, yhat_unlabeled]), ddof=1))
    if var == 0.0:
        return 0.0
    return float(np.clip(cov / ((1 + n / big_n) * var), 0.0, 1.0))


def ppi_mean(y: Sequence[float], yhat: Sequence[float], yhat_unlabeled: Sequence[float], alpha: float = 0.05) -> dict[str, float]:
    """PPI++ estimate of E[Y] with its 1 - alpha interval: {estimate, low, high, se, lambda}.

    Equals `ppi_py.ppi_mean_pointestimate(Y, Yhat, Yhat_unlabeled)` and
    `ppi_py.ppi_mean_ci(Y, Yhat, Yhat_unlabeled, alpha=alpha)`; standard deviations divide by the count,
    as numpy's default does there. The interval is not cut at 0 or 1.
    """
    y, yhat, yhat_unlabeled = (np.asarray(a, dtype=float) for a in (y, yhat, yhat_unlabeled))
    lam = ppi_lambda(y, yhat, yhat_unlabeled)
    estimate = float(np.mean(lam * yhat_unlabeled) + np.mean(y - lam * yhat))
    imputed_se = float(np.std(lam * yhat_unlabeled)) / math.sqrt(len(yhat_unlabeled))
    rectifier_se = float(np.std(y - lam * yhat)) / math.sqrt(len(y))
    se = math.sqrt(imputed_se**2 + rectifier_se**2)
    half = _z(alpha) * se
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, "se": se, "lambda": lam}


def classical_mean(y: Sequence[float], alpha: float = 0.05) -> dict[str, float]:
    """Mean with its normal interval, as `ppi_py.classical_mean_ci`: {estimate, low, high, se, n}."""
    y = np.asarray(y, dtype=float)
    estimate, se = float(y.mean()), float(y.std()) / math.sqrt(len(y))
    half = _z(alpha) * se
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, "se": se, "n": len(y)}


def _ppi_variance(moments: dict[str, float], n: int) -> float:
    """Smallest PPI variance over lam in [0, 1] with n human labels, the LLM's other items held at N."""
    a, b, c, var_y, big_n = moments["var_unlabeled"], moments["var_yhat"], moments["cov"], moments["var_y"], moments["N"]
    denom = b + a * n / big_n
    lam = float(np.clip(c / denom, 0.0, 1.0)) if denom > 0 else 0.0
    return lam**2 * a / big_n + (var_y - 2 * lam * c + lam**2 * b) / n


def _labels_needed(moments: dict[str, float], half_width: float, z: float) -> dict[str, Any]:
    """Human labels for a z interval of +-half_width: human labels alone, and with the LLM's N other items."""
    target = (half_width / z) ** 2
    human_only = max(2, math.ceil(moments["var_y"] / target))
    low, high = 2, human_only  # lam = 0 gives the human-only variance, so PPI never needs more
    while low < high:
        mid = (low + high) // 2
        if _ppi_variance(moments, mid) <= target:
            high = mid
        else:
            low = mid + 1
    return {"half_width": half_width, "human_only": human_only, "with_llm": low}


def _budget(y: np.ndarray, yhat: np.ndarray, yhat_unlabeled: np.ndarray, alpha: float) -> dict[str, dict[str, Any]]:
    moments = {
        "var_y": float(np.var(y)),
        "var_yhat": float(np.var(yhat)),
        "cov": float(np.mean((y - y.mean()) * (yhat - yhat.mean()))),
        "var_unlabeled": float(np.var(yhat_unlabeled)),
        "N": len(yhat_unlabeled),
    }
    z = _z(alpha)
    return {str(points): _labels_needed(moments, points / 100, z) for points in BUDGET_POINTS}


def _check_inputs(human: Mapping[Hashable, Sequence[Any]], llm: Mapping[Hashable, Any], classes: Sequence[Any]) -> list[Hashable]:
    """The LLM-only items; refuses input on which PPI cannot run, naming the item."""
    if not human:
        raise InputError("no human-labelled items: prediction-powered prevalence needs a human sample")
    allowed = set(classes)
    for item, labels in human.items():
        if isinstance(labels, str) or not labels:
            raise InputError("human labels must be a non-empty list of labels", item=str(item))
        for label in labels:
            if label not in allowed:
                raise InputError(f"human label {label!r} is not one of the classes {list(classes)}", item=str(item))
        if item not in llm:
            raise InputError("labelled by humans but not by the LLM; PPI needs the LLM's label on every human-labelled item", item=str(item))
    if len(human) < 2:
        raise InputError(f"only {len(human)} human-labelled item; an interval needs at least 2")
    unlabeled = sorted((item for item in llm if item not in human), key=str)
    if not unlabeled:
        raise InputError("the LLM labelled no item beyond the human-labelled ones, so there is nothing for PPI to add")
    return unlabeled


def prevalence(human: Mapping[Hashable, Sequence[Any]], llm: Mapping[Hashable, Any], classes: Sequence[Any], alpha: float = 0.05) -> dict[str, dict[str, Any]]:
    """Each class's prevalence by PPI++, beside the human-only and the LLM-only figures.

    prevalence(human: {item: [label, ...]}, llm: {item: label}, classes: [label, ...], alpha=0.05)
        -> {class: {"ppi": {estimate, low, high}, "classical": {estimate, low, high, n},
                    "llm_only": {estimate, low, high, n}, "n_human", "n_llm_only", "lambda", "variance_ratio",
                    "effective_human_labels", "llm_worth_in_human_labels",
                    "budget": {"1"|"2"|"5": {half_width, human_only, with_llm}}}}

    For class c, Y is the share of an item's humans who chose c, Yhat is 1 where the LLM said c on the
    human-labelled items, Yhat_unlabeled the same on the LLM's other items (`n_llm_only` of them); the
    PPI row is `ppi_py.ppi_mean_ci(Y, Yhat, Yhat_unlabeled, alpha)` with lam=None. With several humans per
    item the target is the average human's prevalence. An LLM label outside the classes (no answer)
    counts as "not c" for every c; the correction absorbs it like any other LLM error. Each class has
    its own lambda, so the classes' estimates need not sum to exactly 1.

    "classical" is the normal interval from the human labels alone; "llm_only" the share of all the LLM's
    labels (n = n_human + n_llm_only) with the same interval, which is biased by the LLM's errors.
    `variance_ratio` is the human-only variance over the PPI variance; `effective_human_labels`
    = n_human * variance_ratio is the human sample that alone would give an interval as narrow, and
    `llm_worth_in_human_labels` = effective_human_labels - n_human what the LLM's labels add to the
    humans' (None where the PPI variance is 0; below 0 only if lambda, tuned on estimated moments, overshoots).
    `budget[p]` gives the human labels needed for a +-p point interval, by human labels alone and with the
    LLM (its other items held at n_llm_only, lam re-chosen for each size, variances as estimated here).

    Assumes the human-labelled items are a uniform random sample of the items the LLM labelled.
    """
    unlabeled = _check_inputs(human, llm, classes)
    labelled = sorted(human, key=str)
    n, big_n = len(labelled), len(unlabeled)
    out: dict[str, dict[str, Any]] = {}
    for c in classes:
        y = np.array([sum(label == c for label in human[i]) / len(human[i]) for i in labelled])
        yhat = np.array([float(llm[i] == c) for i in labelled])
        yhat_unlabeled = np.array([float(llm[i] == c) for i in unlabeled])
        ppi = ppi_mean(y, yhat, yhat_unlabeled, alpha)
        classical = classical_mean(y, alpha)
        llm_only = classical_mean(np.concatenate([yhat, yhat_unlabeled]), alpha)
        ratio = classical["se"] ** 2 / ppi["se"] ** 2 if ppi["se"] > 0 else None
        out[str(c)] = {
            "ppi": {k: ppi[k] for k in ("estimate", "low", "high")},
            "classical": {k: classical[k] for k in ("estimate", "low", "high", "n")},
            "llm_only": {k: llm_only[k] for k in ("estimate", "low", "high", "n")},
            "n_human": n,
            "n_llm_only": big_n,
            "lambda": ppi["lambda"],
            "variance_ratio": ratio,
            "effective_human_labels": None if ratio is None else n * ratio,
            "llm_worth_in_human_labels": None if ratio is None else n * ratio - n,
            "budget": _budget(y, yhat, yhat_unlabeled, alpha),
        }
    return out
