"""A classifier's task metrics, each defined once as a MetricSpec, and how far an LLM's labels are from the human ones.

The task metrics are weighted counts, so compare's bootstrap resamples them with a weight matrix;
with every item weighted once they equal scikit-learn's accuracy_score, f1_score (zero_division=0)
and roc_auc_score, which tests/test_metrics_once.py checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.integrate import trapezoid
from sklearn.metrics import cohen_kappa_score, f1_score

from annotaudit.core.metrics import Arrays, MetricSpec, divide, values
from annotaudit.core.tasks import NOANSWER, Task

from .data import LLMLabels


def target_array(task: Task, targets: Sequence[str | tuple[str, ...]]) -> np.ndarray:
    """Class indices (single-label) or a 0/1 indicator matrix (multi-label)."""
    if task.classes_multi_label:
        return np.array([[1 if label in t else 0 for label in task.classes] for t in targets], dtype=np.int64).reshape(-1, len(task.classes))
    index = {label: i for i, label in enumerate(task.classes)}
    return np.array([index[t] for t in targets], dtype=np.int64)


def decide(task: Task, probs: np.ndarray) -> list[str | tuple[str, ...]]:
    """Labels from probabilities: argmax, or every label at 0.5 or above for multi-label tasks."""
    if task.classes_multi_label:
        return [tuple(label for label, p in zip(task.classes, row) if p >= 0.5) for row in probs]
    return [task.classes[i] for i in probs.argmax(axis=1)]


def classifier_parts(task: Task, probs: np.ndarray, targets: Sequence[str | tuple[str, ...]]) -> Arrays:
    """Per item: 0/1 rows of the true and the decided classes; on binary tasks with a positive label, its score and whether the item is positive."""
    y = target_array(task, targets)
    if task.classes_multi_label:
        return {"truth": y.astype(float), "decided": (probs >= 0.5).astype(float)}
    classes = np.arange(len(task.classes))
    arrays = {"truth": (y[:, None] == classes).astype(float), "decided": (probs.argmax(axis=1)[:, None] == classes).astype(float)}
    if task.positive is not None:
        positive = task.classes.index(task.positive)
        arrays["score"], arrays["positive"] = probs[:, positive].astype(float), (y == positive).astype(float)
    return arrays


def record_parts(task: Task, records: Sequence[dict[str, Any]]) -> Arrays:
    """classifier_parts of a classify run's records: scores per class, and the human label."""
    probs = np.array([[float(r["scores"][c]) for c in task.classes] for r in records], dtype=float).reshape(-1, len(task.classes))
    targets = [tuple(r["target"]) if isinstance(r["target"], list) else r["target"] for r in records]
    return classifier_parts(task, probs, targets)


def _class_counts(arrays: Arrays, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted true positives, false positives and false negatives per class, (B, classes) each."""
    truth, decided = arrays["truth"], arrays["decided"]
    return weights @ (truth * decided), weights @ ((1 - truth) * decided), weights @ (truth * (1 - decided))


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """0 where nothing was true or decided (scikit-learn's zero_division=0)."""
    return divide(2 * tp, 2 * tp + fp + fn, 0.0)


def _accuracy(arrays: Arrays, weights: np.ndarray) -> np.ndarray:
    tp, _, _ = _class_counts(arrays, weights)
    return divide(tp.sum(axis=1), weights.sum(axis=1))


def _macro_f1(arrays: Arrays, weights: np.ndarray) -> np.ndarray:
    return _f1(*_class_counts(arrays, weights)).mean(axis=1)


def _micro_f1(arrays: Arrays, weights: np.ndarray) -> np.ndarray:
    return _f1(*(c.sum(axis=1) for c in _class_counts(arrays, weights)))


def _roc_area(score: np.ndarray, positive: np.ndarray, weight: np.ndarray) -> float:
    """scikit-learn's roc_auc_score on weighted items, step for step (its ROC points, intermediate ones dropped, and
    its trapezoid), so a row of ones gives its figure to the last digit. Items are sorted by descending score."""
    kept = weight != 0
    score, positive, weight = score[kept], positive[kept], weight[kept]
    if not len(score):
        return math.nan
    ends = np.r_[np.nonzero(np.diff(score))[0], len(score) - 1]
    tps, fps = np.cumsum(positive * weight)[ends], np.cumsum((1 - positive) * weight)[ends]
    if tps[-1] <= 0 or fps[-1] <= 0:
        return math.nan
    if len(fps) > 2:
        corners = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        tps, fps = tps[corners], fps[corners]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return float(trapezoid(tps / tps[-1], fps / fps[-1]))


def _pair_share(score: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The same area as the Mann-Whitney count, vectorised over rows: the weighted share of (positive, negative)
    pairs the positive scores higher, ties half. Items come sorted by descending score."""
    ties = np.flatnonzero(np.r_[True, score[1:] != score[:-1]])
    pos, neg = np.add.reduceat(weights * positive, ties, axis=1), np.add.reduceat(weights * (1 - positive), ties, axis=1)
    below = neg.sum(axis=1, keepdims=True) - np.cumsum(neg, axis=1)  # negative weight scored below each tie group
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    return divide(wins, pos.sum(axis=1) * neg.sum(axis=1))


def _auroc(arrays: Arrays, weights: np.ndarray) -> np.ndarray:
    """AUROC of the positive class's score for each row of weights; NaN without both classes.

    A row of ones (the figure itself) follows scikit-learn's steps to the last digit, which training relies on
    when it picks its best epoch; resampled rows use the equal pair count, vectorised, which agrees to about 1e-16.
    """
    if not len(arrays["score"]):
        return np.full(len(weights), np.nan)
    order = np.argsort(arrays["score"], kind="stable")[::-1]
    score, positive, weights = arrays["score"][order], arrays["positive"][order], weights[:, order]
    out = _pair_share(score, positive, weights)
    for b in np.flatnonzero((weights == 1).all(axis=1)):
        out[b] = _roc_area(score, positive, weights[b])
    return out


AGGREGATES = {"accuracy": _accuracy, "macro_f1": _macro_f1, "micro_f1": _micro_f1, "auroc": _auroc}


def metric_specs(task: Task) -> tuple[MetricSpec, ...]:
    """The task's metrics under their plain names: micro and macro F1 (multi-label); accuracy, macro F1 and AUROC with a positive label."""
    if task.classes_multi_label:
        chosen = ("micro_f1", "macro_f1")
    else:
        chosen = ("accuracy", "macro_f1") + (("auroc",) if task.positive is not None else ())

    def parts(records: Sequence[dict[str, Any]]) -> Arrays:
        return record_parts(task, records)

    return tuple(MetricSpec(name, parts, AGGREGATES[name]) for name in chosen)


def task_metrics(task: Task, probs: np.ndarray, targets: Sequence[str | tuple[str, ...]]) -> dict[str, float]:
    """The task's metrics under their plain names (auroc, accuracy, micro_f1, macro_f1); AUROC is NaN without both classes."""
    return values(metric_specs(task), classifier_parts(task, probs, targets))


def label_quality(task: Task, human: dict[str, str | tuple[str, ...]], llm: LLMLabels) -> dict[str, object]:
    """Agreement with human labels over the items both labelled, and the noise rate of each class.

    The noise rate of class c is the share of items whose human label is c that the LLM labelled
    otherwise (for multi-label tasks: whose c indicator it got wrong, either way).
    """
    shared = [i for i in llm.labels if i in human]
    answered = [i for i in shared if llm.labels[i] != NOANSWER]
    result: dict[str, object] = {
        "n": len(shared),
        "answered": len(answered),
        "answer_rate": len(answered) / len(shared) if shared else math.nan,
    }
    if not answered:
        return {**result, "agreement": math.nan, "noise_rate": {}}
    h = [human[i] for i in answered]
    m = [llm.labels[i] for i in answered]
    result["agreement"] = sum(a == b for a, b in zip(h, m)) / len(answered)
    if task.classes_multi_label:
        hy, my = target_array(task, h), target_array(task, m)
        present = [j for j, _ in enumerate(task.classes) if hy[:, j].any() or my[:, j].any()]
        result["noise_rate"] = {task.classes[j]: float((hy[:, j] != my[:, j]).mean()) for j in present}
        result["micro_f1"] = float(f1_score(hy, my, average="micro", zero_division=0))
        return result
    result["kappa"] = float(cohen_kappa_score(h, m, labels=list(task.classes))) if len(set(h) | set(m)) > 1 else math.nan
    result["noise_rate"] = {c: sum(b != c for a, b in zip(h, m) if a == c) / sum(a == c for a in h) for c in task.classes if c in h}
    return result
