"""Prediction-powered prevalence: valid where the LLM-only share is not, and the authors' ppi_py to the digit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from annotaudit.annotate.ppi import _labels_needed, classical_mean, ppi_mean, prevalence
from annotaudit.core.errors import InputError

Z95 = norm.ppf(0.975)


def _simulated(rng: np.random.Generator, n: int, big_n: int, p: float, sensitivity: float, false_positive: float):
    """One dataset: a single human gives the true label; the LLM says "yes" with the given rates."""
    truth = rng.random(n + big_n) < p
    says_yes = np.where(truth, rng.random(n + big_n) < sensitivity, rng.random(n + big_n) < false_positive)
    human = {i: ["yes" if truth[i] else "no"] for i in range(n)}
    llm = {i: "yes" if says_yes[i] else "no" for i in range(n + big_n)}
    return human, llm


def test_ppi_covers_the_true_prevalence_where_the_biased_llm_misses_it():
    rng = np.random.default_rng(0)
    p, datasets, n, big_n = 0.3, 500, 300, 3000
    truth = rng.random((datasets, n + big_n)) < p  # one human per item gives the true label
    says_yes = np.where(truth, rng.random(truth.shape) < 0.9, rng.random(truth.shape) < 0.2).astype(float)  # LLM share ~0.41
    ppi = [ppi_mean(truth[d, :n], says_yes[d, :n], says_yes[d, n:]) for d in range(datasets)]
    classical = [classical_mean(truth[d, :n]) for d in range(datasets)]
    llm_only = [classical_mean(says_yes[d]) for d in range(datasets)]
    covers = lambda fits: np.mean([f["low"] <= p <= f["high"] for f in fits])
    width = lambda fits: np.mean([f["high"] - f["low"] for f in fits])
    assert covers(ppi) >= 0.93
    assert covers(classical) >= 0.93
    assert 1 - covers(llm_only) > 0.5
    assert width(ppi) < 0.9 * width(classical)  # the LLM's labels buy a narrower interval


def _random_pairs(rng: np.random.Generator, binary: bool):
    n, big_n = int(rng.integers(2, 400)), int(rng.integers(1, 4000))
    if binary:
        y = (rng.random(n) < rng.random()).astype(float)
        flip = rng.random()
        yhat = np.where(rng.random(n) < flip, 1 - y, y)
        yhat_unlabeled = (rng.random(big_n) < rng.random()).astype(float)
    else:
        y = rng.normal(rng.normal(), 1, n)
        yhat = y * rng.normal() + rng.normal(0, 2 * rng.random(), n)
        yhat_unlabeled = rng.normal(rng.normal(), 1 + rng.random(), big_n)
    return y, yhat, yhat_unlabeled


@pytest.mark.parametrize("binary", [True, False], ids=["indicators", "continuous"])
def test_ppi_mean_equals_ppi_py(binary):
    ppi_py = pytest.importorskip("ppi_py")
    rng = np.random.default_rng(7)
    for _ in range(200):
        y, yhat, yhat_unlabeled = _random_pairs(rng, binary)
        alpha = float(rng.choice([0.05, 0.1, 0.01]))
        ours = ppi_mean(y, yhat, yhat_unlabeled, alpha=alpha)
        low, high = ppi_py.ppi_mean_ci(y, yhat, yhat_unlabeled, alpha=alpha)
        point = ppi_py.ppi_mean_pointestimate(y, yhat, yhat_unlabeled)
        assert ours["estimate"] == pytest.approx(float(np.squeeze(point)), abs=1e-9)
        assert ours["low"] == pytest.approx(float(np.squeeze(low)), abs=1e-9)
        assert ours["high"] == pytest.approx(float(np.squeeze(high)), abs=1e-9)
        c_low, c_high = ppi_py.classical_mean_ci(y, alpha=alpha)
        classical = classical_mean(y, alpha=alpha)
        assert (classical["low"], classical["high"]) == pytest.approx((c_low, c_high), abs=1e-9)


def test_prevalence_equals_ppi_py_per_class_with_several_humans():
    ppi_py = pytest.importorskip("ppi_py")
    rng = np.random.default_rng(3)
    classes = ["entailment", "neutral", "contradiction"]
    truth = rng.choice(3, size=1500, p=[0.5, 0.3, 0.2])
    noisy = lambda t: int(t) if rng.random() < 0.8 else int(rng.integers(3))
    human = {f"pair-{i}": [classes[noisy(truth[i])] for _ in range(int(rng.integers(1, 4)))] for i in range(250)}
    llm = {f"pair-{i}": classes[noisy(truth[i])] if rng.random() < 0.95 else "NOANSWER" for i in range(1500)}
    result = prevalence(human, llm, classes)
    labelled = list(human)
    unlabeled = [i for i in llm if i not in human]
    for c in classes:
        y = np.array([human[i].count(c) / len(human[i]) for i in labelled])
        yhat = np.array([llm[i] == c for i in labelled], dtype=float)
        yhat_unlabeled = np.array([llm[i] == c for i in unlabeled], dtype=float)
        low, high = ppi_py.ppi_mean_ci(y, yhat, yhat_unlabeled, alpha=0.05)
        point = ppi_py.ppi_mean_pointestimate(y, yhat, yhat_unlabeled)
        got = result[c]
        assert got["ppi"]["estimate"] == pytest.approx(float(np.squeeze(point)), abs=1e-9)
        assert (got["ppi"]["low"], got["ppi"]["high"]) == pytest.approx((float(low[0]), float(high[0])), abs=1e-9)
        c_low, c_high = ppi_py.classical_mean_ci(y, alpha=0.05)
        assert (got["classical"]["low"], got["classical"]["high"]) == pytest.approx((c_low, c_high), abs=1e-9)
        assert got["llm_only"]["estimate"] == pytest.approx(sum(v == c for v in llm.values()) / len(llm))
        assert (got["n_human"], got["n_llm_only"], got["classical"]["n"], got["llm_only"]["n"]) == (250, 1250, 250, 1500)


def test_worth_and_budget_of_a_good_llm():
    rng = np.random.default_rng(11)
    human, llm = _simulated(rng, n=300, big_n=5000, p=0.4, sensitivity=0.95, false_positive=0.05)
    yes = prevalence(human, llm, ["yes", "no"])["yes"]
    ppi_half = (yes["ppi"]["high"] - yes["ppi"]["low"]) / 2
    classical_half = (yes["classical"]["high"] - yes["classical"]["low"]) / 2
    assert yes["variance_ratio"] == pytest.approx((classical_half / ppi_half) ** 2)
    assert yes["effective_human_labels"] == pytest.approx(300 * yes["variance_ratio"])
    assert yes["llm_worth_in_human_labels"] == pytest.approx(yes["effective_human_labels"] - 300)
    assert yes["effective_human_labels"] > 2 * 300  # an LLM right 95% of the time is worth more than the humans it joins
    assert 0.5 < yes["lambda"] <= 1
    y = np.array([human[i][0] == "yes" for i in range(300)], dtype=float)
    for points, row in yes["budget"].items():
        assert row["half_width"] == int(points) / 100
        assert row["human_only"] == math.ceil(Z95**2 * y.var() / row["half_width"] ** 2)
        assert row["with_llm"] < row["human_only"]
    assert yes["budget"]["5"]["with_llm"] < yes["budget"]["5"]["human_only"] / 3
    # with the LLM's 5000 other items held fixed, its help shrinks as the human sample approaches their number
    assert yes["budget"]["1"]["with_llm"] / yes["budget"]["1"]["human_only"] > yes["budget"]["5"]["with_llm"] / yes["budget"]["5"]["human_only"]


def test_budget_at_the_observed_width_is_about_the_observed_sample():
    rng = np.random.default_rng(5)
    y = (rng.random(400) < 0.25).astype(float)
    yhat = np.where(rng.random(400) < 0.85, y, 1 - y)
    rest = (rng.random(4000) < 0.3).astype(float)
    fit = ppi_mean(y, yhat, rest)
    moments = {"var_y": y.var(), "var_yhat": yhat.var(), "cov": float(np.mean((y - y.mean()) * (yhat - yhat.mean()))), "var_unlabeled": rest.var(), "N": 4000}
    needed = _labels_needed(moments, (fit["high"] - fit["low"]) / 2, Z95)
    # the budget re-chooses lambda for the smallest variance, so it needs at most the 400 labels that gave this width
    assert 370 <= needed["with_llm"] <= 400
    assert needed["human_only"] > 400


def test_an_llm_that_says_the_same_thing_everywhere_adds_nothing():
    human = {i: ["yes" if i % 3 == 0 else "no"] for i in range(60)}
    llm = dict.fromkeys(range(600), "yes")
    yes = prevalence(human, llm, ["yes", "no"])["yes"]
    assert yes["lambda"] == 0.0
    assert yes["ppi"] == {k: yes["classical"][k] for k in ("estimate", "low", "high")}
    assert yes["llm_only"]["estimate"] == 1.0
    assert yes["budget"]["5"]["with_llm"] == yes["budget"]["5"]["human_only"]


@pytest.mark.parametrize(
    ("human", "llm", "message"),
    [
        ({}, {"a": "yes"}, "no human-labelled items"),
        ({"a": ["yes"], "b": ["no"]}, {"a": "yes", "c": "no"}, "item b: labelled by humans but not by the LLM"),
        ({"a": ["yes"], "b": ["maybe"]}, {"a": "yes", "b": "no", "c": "no"}, "item b: human label 'maybe' is not one of the classes"),
        ({"a": ["yes"], "b": []}, {"a": "yes", "b": "no", "c": "no"}, "item b: human labels must be a non-empty list"),
        ({"a": ["yes"]}, {"a": "yes", "c": "no"}, "only 1 human-labelled item"),
        ({"a": ["yes"], "b": ["no"]}, {"a": "yes", "b": "no"}, "the LLM labelled no item beyond the human-labelled ones"),
    ],
)
def test_input_ppi_cannot_use_is_refused_by_item(human, llm, message):
    with pytest.raises(InputError, match=message):
        prevalence(human, llm, ["yes", "no"])
