"""The alternative annotator test (alt-test) of Calderon, Reichart and Dror (ACL 2025), "The Alternative
Annotator Test for LLM-as-a-Judge: How to Statistically Justify Replacing Human Annotators with LLMs".

Can an LLM replace the annotators? Leave one annotator out at a time and ask who represents the others
better on each item: the left-out human or the LLM. The LLM "wins" against that annotator when a
one-sided t-test rejects, at level q after Benjamini-Yekutieli over the annotators, that the human's
advantage is at least epsilon (the cost-benefit allowance given to the LLM). It passes when it wins
against at least half of the annotators tested.

This follows the authors' released procedure step for step:

1. keep the items with an LLM label and at least `min_humans` human labels (counted over all annotators);
2. test each annotator with at least `min_items` kept items; the others are skipped and left out of the
   denominator, but their labels still count among "the other humans" of the annotators tested;
3. per item, score the left-out human and the LLM against the other humans' labels (accuracy: the share
   of equal labels; neg_rmse: minus the root mean squared difference) and set W_f = [S_f >= S_h],
   W_h = [S_h >= S_f] (a tie counts for both), d = W_h - W_f;
4. p = scipy's ttest_1samp(d, epsilon, alternative="less"); a p-value that is undefined (NaN: d has
   no variance and equals epsilon) is never rejected;
5. Benjamini-Yekutieli at q over all annotators tested (undefined p-values sort last);
6. winning rate = rejected / tested, advantage probability = mean over tested annotators of mean(W_f),
   passed = winning rate >= 0.5.

Labels are numbers: for accuracy, codes that are equal exactly when the labels are; for neg_rmse, the
values. NaN means no label. An LLM item that holds +inf is an explicit no-answer: under accuracy it
equals no human label, under neg_rmse its score is minus infinity, so the human wins that item.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import ttest_1samp

SCORINGS = ("accuracy", "neg_rmse")
NO_ANSWER = np.inf


@dataclass
class AnnotatorTest:
    """One left-out annotator: its items, p-value (None when undefined), whether it was rejected, and the win shares."""

    n_items: int
    p_value: float | None
    rejected: bool = False
    llm_wins: float = 0.0  # mean of W_f: how often the LLM did at least as well as this human
    human_wins: float = 0.0  # mean of W_h
    items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int), repr=False)  # row indices tested
    llm_indicators: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # W_f per tested item


@dataclass
class AltTest:
    """The verdict for one LLM."""

    winning_rate: float
    advantage_probability: float
    passed: bool
    epsilon: float
    q: float
    scoring: str
    n_items: int  # items kept: an LLM label and at least min_humans human labels
    annotators: dict[str, AnnotatorTest]  # the annotators tested, in input order
    skipped: dict[str, int]  # annotators below min_items: how many kept items each had


class NotTestable(ValueError):
    """No annotator has enough kept items, so there is nothing to test."""


def scores(label: np.ndarray, others: np.ndarray, scoring: str) -> np.ndarray:
    """Each item's score of `label` against the other humans' labels (items x others, NaN = none)."""
    present = ~np.isnan(others)
    count = present.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if scoring == "accuracy":
            return (others == label[:, None]).sum(1) / count
        if scoring == "neg_rmse":
            squared = np.where(present, (label[:, None] - np.where(present, others, 0.0)) ** 2, 0.0)
            return -np.sqrt(squared.sum(1) / count)
    raise ValueError(f"unknown scoring {scoring!r}; use {' or '.join(SCORINGS)}")


def benjamini_yekutieli(p_values: list[float | None], q: float) -> list[bool]:
    """Which hypotheses to reject: with p sorted and H_m = 1 + 1/2 + ... + 1/m, the k smallest for the largest
    k with p_(k) <= (k / m) * q / H_m. Undefined p-values (None or NaN) sort last and are never rejected."""
    p = np.array([np.nan if x is None else x for x in p_values], dtype=float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p)  # NaN last
    harmonic = np.sum(1.0 / np.arange(1, m + 1))
    thresholds = np.arange(1, m + 1) / m * (q / harmonic)
    below = np.flatnonzero(p[order] <= thresholds)
    rejected = np.zeros(m, dtype=bool)
    if below.size:
        rejected[order[: below[-1] + 1]] = True
    return rejected.tolist()


def one_sided_p(d: np.ndarray, epsilon: float) -> float | None:
    """p-value of the t-test of mean(d) >= epsilon against mean(d) < epsilon; None when undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_1samp(d, epsilon, alternative="less").pvalue)
    return None if np.isnan(p) else p


def alt_test(humans: np.ndarray, llm: np.ndarray, annotators: list[str], scoring: str = "accuracy", epsilon: float = 0.15,
             q: float = 0.05, min_humans: int = 2, min_items: int = 30) -> AltTest:
    """Run the alt-test of one LLM. `humans` is items x annotators, `llm` one label per item (NaN = not labelled)."""
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; use {' or '.join(SCORINGS)}")
    humans, llm = np.asarray(humans, dtype=float), np.asarray(llm, dtype=float)
    labelled = ~np.isnan(humans)
    kept = (labelled.sum(1) >= min_humans) & ~np.isnan(llm)
    tested: dict[str, AnnotatorTest] = {}
    skipped: dict[str, int] = {}
    for h, name in enumerate(annotators):
        rows = np.flatnonzero(kept & labelled[:, h])
        if rows.size < min_items:
            skipped[name] = int(rows.size)
            continue
        others = np.delete(humans[rows], h, axis=1)
        human_score = scores(humans[rows, h], others, scoring)
        llm_score = scores(llm[rows], others, scoring)
        llm_wins = (llm_score >= human_score).astype(float)
        human_wins = (human_score >= llm_score).astype(float)
        tested[name] = AnnotatorTest(int(rows.size), one_sided_p(human_wins - llm_wins, epsilon), llm_wins=float(llm_wins.mean()),
                                     human_wins=float(human_wins.mean()), items=rows, llm_indicators=llm_wins)
    if not tested:
        raise NotTestable(f"no annotator has {min_items} or more items with an LLM label and at least {min_humans} human labels "
                          f"(most: {max(skipped.values(), default=0)})")
    for test, rejected in zip(tested.values(), benjamini_yekutieli([t.p_value for t in tested.values()], q)):
        test.rejected = rejected
    winning_rate = sum(t.rejected for t in tested.values()) / len(tested)
    advantage = float(np.mean([t.llm_wins for t in tested.values()]))
    return AltTest(winning_rate, advantage, winning_rate >= 0.5, epsilon, q, scoring, int(kept.sum()), tested, skipped)


def advantage_replicates(result: AltTest, boot: Any) -> np.ndarray:
    """The advantage probability under each bootstrap replicate of the items (`boot` is an agreement.Bootstrap)."""
    tests = list(result.annotators.values())
    per_item = np.zeros((boot.n_items, 2 * len(tests)))
    for k, test in enumerate(tests):
        per_item[test.items, 2 * k] = test.llm_indicators
        per_item[test.items, 2 * k + 1] = 1.0
    sums = boot.sums([(np.arange(boot.n_items), per_item)])[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = sums[:, 0::2] / sums[:, 1::2]
    return shares.mean(1)
