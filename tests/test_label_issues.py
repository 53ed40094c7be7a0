"""Label issues: cleanlab finds the human labels that were flipped, by one annotator or by a crowd."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cleanlab.multiannotator import get_label_quality_multiannotator

from annotaudit.annotate.label_issues import rank_label_issues
from annotaudit.core.errors import InputError

CLASSES = ["entailment", "neutral", "contradiction"]


def _llm(rng: np.random.Generator, truth: np.ndarray) -> list[dict[str, float]]:
    """An LLM right about 80% of the time, with softmax probabilities that are sometimes confidently wrong."""
    logits = rng.normal(0, 1.2, (len(truth), len(CLASSES)))
    logits[np.arange(len(truth)), truth] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return [dict(zip(CLASSES, row.tolist())) for row in probs]


def _flip(rng: np.random.Generator, labels: np.ndarray, items: np.ndarray) -> np.ndarray:
    out = labels.copy()
    out[items] = (out[items] + rng.integers(1, len(CLASSES), len(items))) % len(CLASSES)
    return out


def test_flipped_human_labels_rank_in_the_top_tenth():
    rng = np.random.default_rng(0)
    n = 1000
    truth = rng.choice(len(CLASSES), n, p=[0.5, 0.3, 0.2])
    probs = _llm(rng, truth)
    flipped = rng.choice(n, n // 20, replace=False)
    human = _flip(rng, truth, flipped)
    ids = [f"pair-{i}" for i in range(n)]
    rows = rank_label_issues(ids, [CLASSES[k] for k in human], probs, CLASSES)
    assert sorted(r["item"] for r in rows) == sorted(ids)
    top = {r["item"] for r in rows[: n // 10]}
    caught = sum(f"pair-{i}" in top for i in flipped)
    assert caught >= len(flipped) / 2
    issues = [r for r in rows if r["issue"]]
    assert issues and rows[: len(issues)] == issues  # cleanlab's flagged items lead, in its ranking
    assert [r["score"] for r in issues] == sorted(r["score"] for r in issues)
    first = rows[0]
    i = ids.index(first["item"])
    assert first["human_labels"] == [CLASSES[human[i]]]
    assert first["score"] == pytest.approx(probs[i][CLASSES[human[i]]])  # self-confidence: the LLM's probability for the human label
    assert first["llm_label"] == max(probs[i], key=probs[i].get)
    assert first["llm_probability"] == pytest.approx(max(probs[i].values()))


def test_a_crowd_outvoted_by_wrong_annotators_ranks_first():
    rng = np.random.default_rng(1)
    n = 600
    truth = rng.choice(len(CLASSES), n, p=[0.4, 0.4, 0.2])
    probs = _llm(rng, truth)
    crowd = np.stack([_flip(rng, truth, np.flatnonzero(rng.random(n) < rate)) for rate in (0.05, 0.1, 0.15)], axis=1)
    outvoted = rng.choice(n, n // 20, replace=False)
    wrong = _flip(rng, truth, outvoted)
    crowd[outvoted, 0] = crowd[outvoted, 1] = wrong[outvoted]  # two of three agree on the same wrong label
    human = [[CLASSES[k] for k in row] for row in crowd]
    human[5][2] = None  # an annotator who skipped an item
    rows = rank_label_issues(list(range(n)), human, probs, CLASSES)
    top = {r["item"] for r in rows[: n // 10]}
    assert sum(int(i) in top for i in outvoted) >= len(outvoted) / 2
    assert all(r["issue"] is None for r in rows)
    assert [r["score"] for r in rows] == sorted(r["score"] for r in rows)
    table = pd.DataFrame([[CLASSES.index(x) if x is not None else np.nan for x in row] for row in human], columns=["0", "1", "2"])
    matrix = np.array([[p[c] for c in CLASSES] for p in probs])
    direct = get_label_quality_multiannotator(table, matrix / matrix.sum(1, keepdims=True), consensus_method="majority_vote", verbose=False)
    direct = direct["label_quality"]
    for r in rows[:20]:
        assert r["score"] == pytest.approx(direct["consensus_quality_score"].iloc[r["item"]])
        assert r["majority_label"] == CLASSES[int(direct["consensus_label"].iloc[r["item"]])]
    assert next(r for r in rows if r["item"] == 5)["human_labels"] == human[5][:2]


def test_annotators_named_in_a_mapping():
    rows = rank_label_issues(["a", "b", "c"], [{"ann1": "yes", "ann2": "no"}, {"ann1": "yes"}, {"ann2": "no", "ann3": "no"}],
                             [{"yes": 0.9, "no": 0.1}, {"yes": 0.2, "no": 0.8}, {"yes": 0.3, "no": 0.7}], ["yes", "no"])
    by_item = {r["item"]: r for r in rows}
    assert by_item["a"]["human_labels"] == {"ann1": "yes", "ann2": "no"}
    assert rows[0]["item"] == "b"  # one human against a confident LLM ranks before two humans the LLM agrees with
    assert (by_item["b"]["majority_label"], by_item["a"]["majority_label"]) == ("yes", "yes")  # a's tie goes to the LLM's side


@pytest.mark.parametrize(
    ("ids", "human", "probs", "message"),
    [
        (["a", "b"], ["yes"], [{"yes": 1.0}, {"no": 1.0}], "2 items, 1 human labels and 2 LLM probability rows"),
        ([], [], [], "no items to rank"),
        (["a", "b"], ["yes", "maybe"], [{"yes": 1.0}, {"no": 1.0}], "item b: human label 'maybe' is not one of the classes"),
        (["a", "b"], ["yes", None], [{"yes": 1.0}, {"no": 1.0}], "item b: no human label"),
        (["a", "b"], ["yes", "no"], [{"yes": 1.0}, {"maybe": 1.0}], "item b: no LLM probability on any of the classes"),
        (["a", "b"], ["yes", "no"], [{"yes": 1.0}, {"no": float("nan")}], "item b: LLM probabilities must be finite"),
    ],
)
def test_bad_input_is_refused_by_item(ids, human, probs, message):
    with pytest.raises(InputError, match=message):
        rank_label_issues(ids, human, probs, ["yes", "no"])
