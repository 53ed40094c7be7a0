"""Answer rate, accuracy, F1, Cohen's kappa and AUROC of an annotator against human labels.

Works on the records of `annotate run`: `target` is the human label, `prediction` the annotator's,
`meta.answered` / `meta.judged` / `meta.language` what the run noted, and `scores` the label
probabilities (score mode, `probs`) or vote shares (generate with several samples, `votes`).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any

from annotaudit.core.metrics import Arrays, MetricSpec, defined, flags, ratio, share_of
from annotaudit.core.tasks import NOANSWER, Task


def agrees(record: dict[str, Any]) -> bool:
    """The annotator's label is the human one (for multi-label tasks: the same set of labels; NOANSWER never agrees)."""
    target, prediction = record["target"], record["prediction"]
    if isinstance(target, list):
        return isinstance(prediction, list) and set(map(str, prediction)) == set(map(str, target))
    return prediction == target


def agreement_parts(records: list[dict[str, Any]]) -> Arrays:
    """Per item: whether it has a human label, whether the annotator's label agrees with it, whether the annotator answered."""
    labeled = flags(r.get("target") not in (None, []) for r in records)
    return {"labeled": labeled, "correct": labeled * flags(agrees(r) for r in records),
            "answered": flags((r.get("meta") or {}).get("answered") for r in records)}


ACCURACY = MetricSpec("accuracy", agreement_parts, ratio("correct", "labeled"), share_of("correct", "labeled"))  # over labelled items, NOANSWER wrong
ANSWER_RATE = MetricSpec("answer_rate", agreement_parts, ratio("answered"), share_of("answered"))
METRICS = (ACCURACY, ANSWER_RATE)


def _accuracy(records: list[dict[str, Any]]) -> float | None:
    return defined(ACCURACY.score(records))


def label_scores(record: dict[str, Any]) -> dict[str, float] | None:
    """label -> probability (score mode) or share of the votes (several samples); None without either."""
    scores = record.get("scores") or {}
    return scores.get("probs") or scores.get("votes") or None


# scikit-learn loads inside the functions below: compare imports this module for its specs alone.
def _auroc(records: list[dict[str, Any]], task: Task) -> float | None:
    """Binary tasks: the positive label's probability; multi-class: one-vs-rest macro AUROC."""
    from sklearn.metrics import roc_auc_score

    rows = [(r["target"], s) for r in records if (s := label_scores(r))]
    if len(rows) < 2 or len({t for t, _ in rows}) < 2:
        return None
    try:
        if len(task.labels) == 2:
            pos = task.positive or task.labels[0]
            return float(roc_auc_score([t == pos for t, _ in rows], [s.get(pos, 0.0) for _, s in rows]))
        probs = [[s.get(lab, 0.0) for lab in task.labels] for _, s in rows]
        norm = [[p / (sum(ps) or 1.0) for p in ps] for ps in probs]
        return float(roc_auc_score([t for t, _ in rows], norm, multi_class="ovr", labels=task.labels))
    except ValueError:
        return None


def _single(records: list[dict[str, Any]], task: Task) -> dict[str, Any]:
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    truth = [r["target"] for r in records]
    pred = [r["prediction"] for r in records]
    prec, rec, f1, support = precision_recall_fscore_support(truth, pred, labels=task.labels, zero_division=0)
    out = {
        "accuracy_answered": _accuracy([r for r in records if r["prediction"] != NOANSWER]),
        "accuracy_all": _accuracy(records),
        "macro_f1": float(f1_score(truth, pred, labels=task.labels, average="macro", zero_division=0)),
        "kappa": kappa(truth, pred),
        "per_class": {lab: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for lab, p, r, f, s in zip(task.labels, prec, rec, f1, support)},
        "auroc": _auroc(records, task),
    }
    return out


def kappa(a: list[Any], b: list[Any]) -> float | None:
    """Cohen's kappa, NOANSWER a category of its own; None when it is undefined."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) < 2:
        return None
    with warnings.catch_warnings():  # one shared label makes kappa undefined: reported as None
        warnings.simplefilter("ignore")
        k = cohen_kappa_score([str(x) for x in a], [str(x) for x in b])
    return None if k != k else float(k)


def _multi(records: list[dict[str, Any]], task: Task) -> dict[str, Any]:
    from sklearn.metrics import f1_score, precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    mlb = MultiLabelBinarizer(classes=task.labels)
    truth = mlb.fit_transform([r["target"] for r in records])
    pred = mlb.transform([[] if r["prediction"] == NOANSWER else r["prediction"] for r in records])
    prec, rec, f1, support = precision_recall_fscore_support(truth, pred, zero_division=0)
    return {
        "accuracy_answered": _accuracy([r for r in records if r["prediction"] != NOANSWER]),
        "accuracy_all": _accuracy(records),
        "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(truth, pred, average="micro", zero_division=0)),
        "samples_f1": float(f1_score(truth, pred, average="samples", zero_division=0)),
        "per_class": {lab: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for lab, p, r, f, s in zip(task.labels, prec, rec, f1, support)},
    }


def _measure(records: list[dict[str, Any]], task: Task) -> dict[str, Any]:
    arrays = agreement_parts(records)
    out: dict[str, Any] = {
        "task": task.name, "n": len(records), "answered": int(arrays["answered"].sum()), "answer_rate": defined(ANSWER_RATE.value(arrays)),
        "judged": sum(bool(r["meta"].get("judged")) for r in records),
    }
    labeled = [r for r in records if r.get("target") not in (None, [])]
    out["n_labeled"] = len(labeled)
    if labeled:
        out.update(_multi(labeled, task) if task.multi_label else _single(labeled, task))
    return out


def compute(records: list[dict[str, Any]], task: Task) -> dict[str, Any]:
    """Metrics over all records, and per language where there are several (or any, for XNLI).

    Accuracy is given over answered items and over all items (NOANSWER is wrong).
    """
    out = _measure(records, task)
    languages = defaultdict(list)
    for r in records:
        if r["meta"].get("language"):
            languages[r["meta"]["language"]].append(r)
    if len(languages) > 1 or (languages and task.dataset == "xnli"):
        out["per_language"] = {lang: _measure(rs, task) for lang, rs in sorted(languages.items())}
    return out
