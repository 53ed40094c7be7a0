"""Task metrics (scikit-learn) and how far an LLM's labels are from the human ones."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

from annotaudit.annotate.tasks import NOANSWER, Task

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


def task_metrics(task: Task, probs: np.ndarray, targets: Sequence[str | tuple[str, ...]]) -> dict[str, float]:
    """The task's metrics under their plain names (auroc, accuracy, micro_f1, macro_f1)."""
    y = target_array(task, targets)
    out: dict[str, float] = {}
    if task.classes_multi_label:
        pred = (probs >= 0.5).astype(np.int64)
        out["micro_f1"] = float(f1_score(y, pred, average="micro", zero_division=0))
        out["macro_f1"] = float(f1_score(y, pred, average="macro", zero_division=0))
        return out
    pred = probs.argmax(axis=1)
    out["accuracy"] = float(accuracy_score(y, pred))
    out["macro_f1"] = float(f1_score(y, pred, average="macro", labels=list(range(len(task.classes))), zero_division=0))
    if task.positive is not None:
        pos = task.classes.index(task.positive)
        truth = (y == pos).astype(int)
        out["auroc"] = float(roc_auc_score(truth, probs[:, pos])) if 0 < truth.sum() < len(truth) else math.nan
    return out


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
