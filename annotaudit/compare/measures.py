"""Each kind's figures as statistics of per-item arrays, checked against the project's own metric.

The per-item parts come from the records (POPE's counts from `audit.pope.metrics` itself, VQA's
matches from `lvlm.evaluate.answer_scores`), and every figure on the full set of items must equal
what the command's metric function reports, or the comparison stops: the bootstrap then resamples
exactly the figure the run reported.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .bootstrap import Items, Statistic, ratio

Records = list[dict[str, Any]]
POPE_METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
CHAIR_METRICS = ("chair_s", "chair_i", "recall")
ANNOTATE_METRICS = ("accuracy", "answer_rate")
VQA_METRICS = ("exact", "approx")


class MetricMismatch(RuntimeError):
    """A figure rebuilt from the records differs from the command's own metric: a bug, never bad input."""


def check(name: str, statistic: Statistic, items: Items, expected: float | None) -> None:
    """Refuse a statistic that does not reproduce the command's figure on all items."""
    got = float(statistic(items.arrays, np.ones((1, len(items))))[0])
    if expected is None:
        ok = not math.isfinite(got)
    else:
        ok = math.isfinite(got) and abs(got - float(expected)) <= 1e-9
    if not ok:
        raise MetricMismatch(f"{name}: {got} from the records, {expected} from the metric function")


def _cluster(record: dict[str, Any], fallback: str) -> tuple[str, bool]:
    image = (record.get("input") or {}).get("image")
    return (str(image), True) if image not in (None, "") else (fallback, False)


# POPE -------------------------------------------------------------------------------------------

def pope_items(records: Records, setting: str) -> Items:
    """Per question tp, fp, tn, fn as `audit.pope.metrics` counts them; clustered by image (by question without one)."""
    from annotaudit.audit.pope import metrics

    ids, clusters, counts, images = [], [], [], True
    for r in records:
        qid = (r.get("meta") or {}).get("question_id", r["id"])
        ids.append(f"{setting}/{qid}")
        cluster, has_image = _cluster(r, ids[-1])
        images &= has_image
        clusters.append(cluster)
        one = metrics([r["target"]], [r["prediction"]])
        counts.append([one["tp"], one["fp"], one["tn"], one["fn"]])
    table = np.asarray(counts, dtype=float).reshape(-1, 4)
    arrays = {k: table[:, i] for i, k in enumerate(("tp", "fp", "tn", "fn"))}
    return Items(ids, clusters, "image" if images else "question", arrays)


def _safe(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), 0.0)


def pope_statistic(name: str) -> Statistic:
    """One of POPE's rates from weighted confusion counts (zero where undefined, as `audit.pope.metrics` has it)."""
    def statistic(arrays: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        tp, fp, tn, fn = (weights @ arrays[k] for k in ("tp", "fp", "tn", "fn"))
        n = weights.sum(axis=1)
        precision, recall = _safe(tp, tp + fp), _safe(tp, tp + fn)
        values = {"accuracy": _safe(tp + tn, n), "precision": precision, "recall": recall,
                  "f1": _safe(2 * precision * recall, precision + recall), "yes_ratio": _safe(tp + fp, n)}
        return values[name]

    return statistic


def pope_figures(records: Records, setting: str) -> tuple[Items, dict[str, Statistic]]:
    from annotaudit.audit.pope import metrics

    items = pope_items(records, setting)
    expected = metrics([r["target"] for r in records], [r["prediction"] for r in records])
    stats = {m: pope_statistic(m) for m in POPE_METRICS}
    for m, stat in stats.items():
        check(f"POPE {m}", stat, items, expected[m])
    return items, stats


def pope_mean_f1(parts: list[Items]) -> tuple[Items, Statistic]:
    """The mean F1 over settings: one item set with a mask per setting, images resampled jointly across settings."""
    n = sum(len(p) for p in parts)
    arrays: dict[str, np.ndarray] = {k: np.concatenate([p.arrays[k] for p in parts]) for k in ("tp", "fp", "tn", "fn")}
    masks, start = [], 0
    for k, p in enumerate(parts):
        mask = np.zeros(n)
        mask[start:start + len(p)] = 1.0
        arrays[f"in_{k}"], start = mask, start + len(p)
        masks.append(f"in_{k}")
    items = Items([i for p in parts for i in p.ids], [c for p in parts for c in p.clusters], parts[0].unit, arrays)
    f1 = pope_statistic("f1")

    def statistic(arr: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        return np.mean([f1(arr, weights * arr[m]) for m in masks], axis=0)

    return items, statistic


# CHAIR ------------------------------------------------------------------------------------------

def chair_figures(records: Records, language: str, fix_quirks: bool) -> tuple[Items, dict[str, Statistic]]:
    """CHAIR_s, CHAIR_i and recall as sums over captions; each caption is its own cluster."""
    from annotaudit.audit.chair import chair_metrics

    ids = [str((r.get("meta") or {}).get("image_id", r["id"])) for r in records]
    scores = [r["scores"] for r in records]
    arrays = {
        "chair_s": np.array([s["chair_s"] for s in scores], dtype=float),
        "hallucinated": np.array([s["n_hallucinated"] for s in scores], dtype=float),
        "mentions": np.array([s["n_mentions"] for s in scores], dtype=float),
        "recalled": np.array([len(s["recalled"]) for s in scores], dtype=float),
        "objects": np.array([len(r["target"]) for r in records], dtype=float),
    }
    items = Items(ids, ids, "caption", arrays)
    stats = {"chair_s": ratio("chair_s"), "chair_i": ratio("hallucinated", "mentions"), "recall": ratio("recalled", "objects")}
    expected = chair_metrics(records, language, fix_quirks)
    for m, stat in stats.items():
        check(f"CHAIR {m}", stat, items, expected[m])
    return items, stats


# Annotation -------------------------------------------------------------------------------------

def _agrees(record: dict[str, Any]) -> bool:
    target, prediction = record["target"], record["prediction"]
    if isinstance(target, list):
        return isinstance(prediction, list) and set(map(str, prediction)) == set(map(str, target))
    return prediction == target


def annotate_figures(records: Records, task: Any | None) -> tuple[Items, dict[str, Statistic]]:
    """Accuracy over the labelled items (NOANSWER wrong) and answer rate over all, one item a cluster.

    With the task at hand both are checked against `annotate.metrics.compute`.
    """
    from annotaudit.annotate import metrics

    ids = [str(r["id"]) for r in records]
    labeled = np.array([r.get("target") not in (None, []) for r in records], dtype=float)
    arrays = {"labeled": labeled, "correct": labeled * np.array([_agrees(r) for r in records], dtype=float),
              "answered": np.array([bool((r.get("meta") or {}).get("answered")) for r in records], dtype=float)}
    items = Items(ids, ids, "item", arrays)
    stats = {"accuracy": ratio("correct", "labeled"), "answer_rate": ratio("answered")}
    if task is not None:
        expected = metrics.compute(records, task)
        check("annotation accuracy", stats["accuracy"], items, expected.get("accuracy_all"))
        check("annotation answer rate", stats["answer_rate"], items, expected["answer_rate"])
    return items, stats


# VQA --------------------------------------------------------------------------------------------

def vqa_figures(records: Records) -> tuple[Items, dict[str, Statistic]]:
    """Exact and approximate accuracy from `lvlm.evaluate.answer_scores`; clustered by image."""
    from annotaudit.lvlm.evaluate import answer_scores

    ids, clusters, exact, approx, images = [], [], [], [], True
    for r in records:
        ids.append(str((r.get("meta") or {}).get("question_id", r["id"])))
        cluster, has_image = _cluster(r, ids[-1])
        images &= has_image
        clusters.append(cluster)
        scores = answer_scores(r["prediction"], r["target"])
        exact.append(scores["exact"])
        approx.append(scores["approx"])
    items = Items(ids, clusters, "image" if images else "question", {"exact": np.array(exact, dtype=float), "approx": np.array(approx, dtype=float)})
    return items, {"exact": ratio("exact"), "approx": ratio("approx")}


# MMBT -------------------------------------------------------------------------------------------

def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 from weighted counts, zero where nothing was true or predicted (scikit-learn's zero_division=0)."""
    return _safe(2 * tp, 2 * tp + fp + fn)


def _seed_arrays(task: Any, probs: np.ndarray, targets: list[Any], k: int) -> dict[str, np.ndarray]:
    """One seed's per-item parts: indicator matrices of truth and decision, and the AUROC pair matrix."""
    from annotaudit.classifiers.metrics import target_array

    y = target_array(task, targets)
    if task.classes_multi_label:
        return {f"s{k}_truth": y.astype(float), f"s{k}_pred": (probs >= 0.5).astype(float)}
    classes = np.arange(len(task.classes))
    arrays = {f"s{k}_truth": (y[:, None] == classes).astype(float), f"s{k}_pred": (probs.argmax(axis=1)[:, None] == classes).astype(float)}
    if task.positive is not None:
        score = probs[:, task.classes.index(task.positive)]
        positive = y == task.classes.index(task.positive)
        # pair[i, j]: item i positive and j negative, 1 when i scores higher, 0.5 on a tie (the Mann-Whitney form of AUROC)
        pair = (score[:, None] > score[None, :]) + 0.5 * (score[:, None] == score[None, :])
        arrays[f"s{k}_pair"] = pair * positive[:, None] * ~positive[None, :]
        arrays[f"s{k}_positive"] = positive.astype(float)
    return arrays


def _mmbt_statistic(name: str, seeds: int) -> Statistic:
    """A classifier metric of weighted items, averaged over seeds."""
    def one(arrays: dict[str, np.ndarray], weights: np.ndarray, k: int) -> np.ndarray:
        truth, pred = arrays[f"s{k}_truth"], arrays[f"s{k}_pred"]
        tp, fp, fn = weights @ (truth * pred), weights @ ((1 - truth) * pred), weights @ (truth * (1 - pred))
        if name == "accuracy":
            return _safe(tp.sum(axis=1), weights.sum(axis=1))
        if name == "macro_f1":
            return _f1(tp, fp, fn).mean(axis=1)
        if name == "micro_f1":
            return _f1(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1))
        positive = arrays[f"s{k}_positive"]
        pairs = (weights @ positive) * (weights @ (1 - positive))
        wins = np.einsum("bi,ij,bj->b", weights, arrays[f"s{k}_pair"], weights)
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1), np.nan)

    def statistic(arrays: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        return np.mean([one(arrays, weights, k) for k in range(seeds)], axis=0)

    return statistic


def mmbt_figures(seed_runs: list[Records], task: Any) -> tuple[Items, dict[str, Statistic]]:
    """The task's classifier metrics averaged over seeds, checked against `classifiers.metrics.task_metrics` on every seed."""
    from annotaudit.classifiers.metrics import task_metrics

    ids = [str(r["id"]) for r in seed_runs[0]]
    arrays: dict[str, np.ndarray] = {}
    expected: dict[str, list[float]] = {}
    for k, records in enumerate(seed_runs):
        by_id = {str(r["id"]): r for r in records}
        if len(by_id) != len(ids) or any(i not in by_id for i in ids):
            raise MetricMismatch("the seeds of one arm were tested on different items")
        ordered = [by_id[i] for i in ids]
        probs = np.array([[float(r["scores"][c]) for c in task.classes] for r in ordered]).reshape(-1, len(task.classes))
        targets = [tuple(r["target"]) if isinstance(r["target"], list) else r["target"] for r in ordered]
        arrays.update(_seed_arrays(task, probs, targets, k))
        for m, v in task_metrics(task, probs, targets).items():
            expected.setdefault(m, []).append(v)
    items = Items(ids, ids, "item", arrays, tuple(k for k in arrays if k.endswith("_pair")))
    stats = {m: _mmbt_statistic(m, len(seed_runs)) for m in expected}
    for m, stat in stats.items():
        mean = float(np.mean(expected[m]))
        check(f"MMBT {m}", stat, items, mean if math.isfinite(mean) else None)
    return items, stats
