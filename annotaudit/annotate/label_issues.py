"""Items whose human label is most likely wrong, judged by cleanlab against the LLM's label probabilities.

An LLM that confidently disagrees with a human label is either wrong or right; cleanlab's confident
learning (Northcutt et al., JAIR 2021) separates the two using the LLM's calibration across all items,
and CROWDLAB (Goh et al. 2022) weighs several annotators against the LLM. The probabilities must come
from a model that never saw these human labels (an LLM asked zero-shot does not), else its agreement
with them proves nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.multiannotator import get_label_quality_multiannotator
from cleanlab.rank import get_label_quality_scores

from annotaudit.core.errors import InputError


def _annotations(item: Hashable, labels: Any, classes: Sequence[Any]) -> dict[Hashable, Any]:
    """annotator -> label: a mapping is taken as is, a list's position names its annotator, one label is one annotator."""
    if isinstance(labels, Mapping):
        found = {who: label for who, label in labels.items() if label is not None}
    elif isinstance(labels, list | tuple):
        found = {who: label for who, label in enumerate(labels) if label is not None}
    else:
        found = {} if labels is None else {0: labels}
    if not found:
        raise InputError("no human label", item=str(item))
    for label in found.values():
        if label not in classes:
            raise InputError(f"human label {label!r} is not one of the classes {list(classes)}", item=str(item))
    return found


def _probabilities(item: Hashable, probs: Mapping[Any, float] | None, classes: Sequence[Any]) -> np.ndarray:
    """The LLM's probabilities over the classes, renormalised to sum to 1 (cleanlab needs that)."""
    row = np.array([float((probs or {}).get(c, 0.0)) for c in classes])
    if not np.all(np.isfinite(row)) or np.any(row < 0):
        raise InputError(f"LLM probabilities must be finite and non-negative, got {dict(probs or {})}", item=str(item))
    if row.sum() <= 0:
        raise InputError(f"no LLM probability on any of the classes {list(classes)}", item=str(item))
    return row / row.sum()


def _single_annotator(labels: np.ndarray, probs: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Order (cleanlab's issues first, ranked as it ranks them, then the rest), self-confidence, issue flags."""
    scores = get_label_quality_scores(labels, probs, method="self_confidence")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes with few examples: cleanlab warns, then still ranks
        issues = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    flagged = np.zeros(len(labels), dtype=bool)
    flagged[issues] = True
    rest = [i for i in np.argsort(scores, kind="stable") if not flagged[i]]
    return [int(i) for i in issues] + [int(i) for i in rest], scores, flagged


def _several_annotators(annotations: list[dict[Hashable, Any]], probs: np.ndarray, classes: Sequence[Any]) -> pd.DataFrame:
    """The humans' majority label, CROWDLAB's quality score for it and the annotators' agreement, one row per item.

    The majority, not CROWDLAB's own consensus: that one may already side with the LLM against the humans
    and then score high, hiding the very items whose human label is wrong."""
    annotators = list(dict.fromkeys(who for found in annotations for who in found))
    index = {c: k for k, c in enumerate(classes)}
    table = pd.DataFrame([[index[found[who]] if who in found else np.nan for who in annotators] for found in annotations],
                         columns=[str(who) for who in annotators])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = get_label_quality_multiannotator(table, probs, consensus_method="majority_vote", verbose=False,
                                                  return_detailed_quality=False, return_annotator_stats=False)
    return result["label_quality"]


def rank_label_issues(item_ids: Sequence[Hashable], human_labels: Sequence[Any], llm_probs: Sequence[Mapping[Any, float]],
                      classes: Sequence[Any]) -> list[dict[str, Any]]:
    """Every item, the one whose human label is most likely wrong first.

    rank_label_issues(item_ids, human_labels, llm_probs, classes) -> [{item, human_labels, llm_label,
        llm_probability, score, issue, ...}, ...]

    `human_labels[i]` is item i's label, or several: a list (position j = annotator j, None = not
    labelled) or a mapping annotator -> label. `llm_probs[i]` maps classes to the LLM's probabilities or
    vote shares; they are renormalised over `classes`, and `llm_label` / `llm_probability` are the top
    class and its renormalised probability.

    One label per item: `score` is cleanlab's self-confidence, the LLM's probability for the human label
    (0 to 1, lower = more likely wrong); `issue` is True for the items `cleanlab.filter.find_label_issues`
    flags, and they come first in its ranking, then the rest by score.
    Several labels on any item: `majority_label` is the humans' majority (cleanlab breaks ties with the
    LLM's probabilities), `annotator_agreement` the share of the item's humans who chose it, and `score`
    CROWDLAB's quality score for it (`cleanlab.multiannotator.get_label_quality_multiannotator` with
    consensus_method="majority_vote"; 0 to 1, lower = the majority more likely wrong); items rank by that
    score and `issue` is None, since CROWDLAB scores but does not flag.
    """
    if not (len(item_ids) == len(human_labels) == len(llm_probs)):
        raise InputError(f"{len(item_ids)} items, {len(human_labels)} human labels and {len(llm_probs)} LLM probability rows: they must match")
    if not item_ids:
        raise InputError("no items to rank")
    if len(classes) < 2:
        raise InputError(f"label issues need at least two classes, got {list(classes)}")
    annotations = [_annotations(item, labels, classes) for item, labels in zip(item_ids, human_labels)]
    probs = np.vstack([_probabilities(item, p, classes) for item, p in zip(item_ids, llm_probs)])
    top = probs.argmax(axis=1)
    rows = [{"item": item, "human_labels": {str(who): lab for who, lab in found.items()} if isinstance(labels, Mapping) else list(found.values()),
             "llm_label": classes[top[i]], "llm_probability": float(probs[i, top[i]])}
            for i, (item, labels, found) in enumerate(zip(item_ids, human_labels, annotations))]
    if all(len(found) == 1 for found in annotations):
        labels = np.array([classes.index(next(iter(found.values()))) for found in annotations])
        order, scores, flagged = _single_annotator(labels, probs)
        return [{**rows[i], "score": float(scores[i]), "issue": bool(flagged[i])} for i in order]
    quality = _several_annotators(annotations, probs, classes)
    order = np.argsort(quality["consensus_quality_score"].to_numpy(), kind="stable")
    return [{**rows[i], "majority_label": classes[int(quality["consensus_label"].iloc[i])],
             "annotator_agreement": float(quality["annotator_agreement"].iloc[i]),
             "score": float(quality["consensus_quality_score"].iloc[i]), "issue": None} for i in order]
