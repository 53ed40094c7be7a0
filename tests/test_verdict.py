"""annotate verdict: the alt-test, agreement with its ceiling, the readers of every layout, and the run folder."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ttest_1samp
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from annotaudit.annotate import agreement
from annotaudit.annotate.alttest import NO_ANSWER, alt_test, benjamini_yekutieli
from annotaudit.annotate.verdict import Options, read_humans, read_llms, verdict
from annotaudit.cli.annotate import app
from annotaudit.core.runs import ConfigMismatch

NAN = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 coders, 12 units, "." missing.
WORKED_EXAMPLE = [
    "1 2 3 3 2 1 4 1 2 . . .",
    "1 2 3 3 2 2 4 1 2 5 . 3",
    ". 3 3 3 2 3 4 2 2 5 1 .",
    "1 2 3 3 2 4 4 1 2 5 1 .",
]


def worked_example() -> np.ndarray:
    return np.array([[NAN if v == "." else float(v) for v in row.split()] for row in WORKED_EXAMPLE]).T


# Agreement ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("level, expected", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)])
def test_alpha_equals_krippendorffs_worked_example(level, expected):
    assert round(agreement.krippendorff_alpha(worked_example(), level), 3) == expected


def random_table(rng: np.random.Generator, missing: float = 0.3) -> np.ndarray:
    n, coders, k = rng.integers(4, 50), rng.integers(2, 7), rng.integers(2, 7)
    data = (rng.integers(1, k + 1, (n, coders)) + rng.choice([0.0, 0.5], (n, coders))).astype(float)
    data[rng.random(data.shape) < missing] = NAN
    return data


def test_alpha_equals_the_reference_package_on_random_tables():
    krippendorff = pytest.importorskip("krippendorff")  # GPL: a test-only reference, never imported by annotaudit
    rng = np.random.default_rng(7)
    compared = 0
    for _ in range(200):
        data = random_table(rng)
        for level in agreement.LEVELS:
            ours = agreement.krippendorff_alpha(data, level)
            if not math.isfinite(ours):
                continue
            assert ours == pytest.approx(krippendorff.alpha(reliability_data=data.T, level_of_measurement=level), abs=1e-9)
            compared += 1
    assert compared > 700


def test_kappas_equal_scikit_learn_and_statsmodels():
    rng = np.random.default_rng(3)
    for _ in range(50):
        data = rng.integers(0, 4, (60, 4)).astype(float)
        data[rng.random(data.shape) < 0.2] = NAN
        both = ~np.isnan(data[:, 0]) & ~np.isnan(data[:, 1])
        ours = agreement.cohen_kappas([(data[:, 0], data[:, 1])])[0]
        assert ours["n_items"] == both.sum()
        assert ours["value"] == pytest.approx(cohen_kappa_score(data[both, 0], data[both, 1]), abs=1e-12)
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    complete = data[~np.isnan(data).any(1)]
    table, _ = inter_rater.aggregate_raters(complete.astype(int))
    fleiss = agreement.fleiss_kappa(data)
    assert fleiss["n_items"] == len(complete) and fleiss["value"] == pytest.approx(inter_rater.fleiss_kappa(table), abs=1e-12)


def test_bootstrap_intervals_hold_the_figure_and_narrow_with_more_items():
    rng = np.random.default_rng(0)

    def noisy(n):
        truth = rng.integers(0, 3, n)
        return np.stack([np.where(rng.random(n) < 0.3, rng.integers(0, 3, n), truth) for _ in range(3)], 1).astype(float)

    small, large = noisy(60), noisy(2000)
    a = agreement.alphas([(small, ("nominal",))], agreement.Bootstrap(60))[0]["nominal"]
    b = agreement.alphas([(large, ("nominal",))], agreement.Bootstrap(2000))[0]["nominal"]
    assert a["low"] < a["value"] < a["high"] and b["low"] < b["value"] < b["high"]
    assert b["high"] - b["low"] < (a["high"] - a["low"]) / 3
    assert agreement.majority(np.array([[1, 1, 2], [1, 2, NAN], [3, NAN, NAN]])).tolist()[::2] == [1.0, 3.0]
    assert math.isnan(agreement.majority(np.array([[1, 2, NAN]]))[0])


# The alt-test ------------------------------------------------------------------------------------


def procedure_by_hand(humans: dict, llm: dict, scoring: str, epsilon: float, q: float, min_humans: int, min_items: int):
    """The alt-test as the issue and the paper spell it, one item at a time with plain dicts (the check on alttest.alt_test)."""

    def score(label, others):
        if scoring == "accuracy":
            return sum(label == o for o in others) / len(others)
        if label is None:
            return -math.inf
        return -math.sqrt(sum((label - o) ** 2 for o in others) / len(others))

    who = {}
    for annotator, labels in humans.items():
        for item in labels:
            who.setdefault(item, []).append(annotator)
    kept = {item for item, names in who.items() if len(names) >= min_humans and item in llm}
    p_values, shares = {}, {}
    for h, labels in humans.items():
        items = [i for i in labels if i in kept]
        if len(items) < min_items:
            continue
        d, wins = [], []
        for i in items:
            others = [humans[g][i] for g in who[i] if g != h]
            s_h, s_f = score(labels[i], others), score(llm[i], others)
            d.append(int(s_h >= s_f) - int(s_f >= s_h))
            wins.append(int(s_f >= s_h))
        p = ttest_1samp(d, epsilon, alternative="less").pvalue
        p_values[h] = None if math.isnan(p) else p
        shares[h] = sum(wins) / len(wins)
    m = len(p_values)
    harmonic = sum(1 / k for k in range(1, m + 1))
    ranked = sorted(p_values, key=lambda h: math.inf if p_values[h] is None else p_values[h])
    cut = max((k for k, h in enumerate(ranked, 1) if p_values[h] is not None and p_values[h] <= k / m * q / harmonic), default=0)
    rejected = set(ranked[:cut])
    return len(rejected) / m, sum(shares.values()) / m, p_values, rejected


def as_matrix(humans: dict, llm: dict):
    items = sorted({i for labels in humans.values() for i in labels})
    table = np.array([[humans[a].get(i, NAN) for a in humans] for i in items], dtype=float)
    vector = np.array([NO_ANSWER if llm.get(i, NAN) is None else llm.get(i, NAN) for i in items], dtype=float)
    return table, vector


@pytest.mark.parametrize("scoring", ["accuracy", "neg_rmse"])
def test_alt_test_equals_the_procedure_written_out(scoring):
    rng = np.random.default_rng(11 if scoring == "accuracy" else 12)
    checked = 0
    for _ in range(40):
        n, coders = int(rng.integers(30, 90)), int(rng.integers(2, 6))
        truth = rng.integers(1, 6, n)
        humans = {f"h{a}": {f"i{i}": int(np.clip(truth[i] + rng.integers(-1, 2), 1, 5)) for i in range(n) if rng.random() < 0.8}
                  for a in range(coders)}
        llm = {f"i{i}": (None if rng.random() < 0.05 else int(np.clip(truth[i] + rng.integers(-1, 2), 1, 5))) for i in range(n) if rng.random() < 0.9}
        min_items = int(rng.integers(15, 40))
        try:
            expected = procedure_by_hand(humans, llm, scoring, 0.1, 0.05, 2, min_items)
        except ZeroDivisionError:  # no annotator reached min_items
            continue
        table, vector = as_matrix(humans, llm)
        result = alt_test(table, vector, list(humans), scoring, 0.1, 0.05, 2, min_items)
        omega, rho, p_values, rejected = expected
        assert result.winning_rate == omega and result.advantage_probability == pytest.approx(rho, abs=1e-12)
        assert {a: t.p_value for a, t in result.annotators.items()} == pytest.approx(p_values, abs=1e-12)
        assert {a for a, t in result.annotators.items() if t.rejected} == rejected
        assert result.passed == (omega >= 0.5)
        checked += 1
    assert checked >= 25


def test_benjamini_yekutieli_rejects_up_to_the_largest_k_below_its_line():
    # m = 4: H_4 = 25/12, lines k/4 * 0.05 / H_4 = 0.006, 0.012, 0.018, 0.024
    assert benjamini_yekutieli([0.001, 0.02, 0.013, None], 0.05) == [True, False, False, False]
    assert benjamini_yekutieli([0.02, 0.001, 0.011, 0.5], 0.05) == [False, True, True, False]
    assert benjamini_yekutieli([0.017, 0.0, 0.011, 0.03], 0.05) == [True, True, True, False]  # 0.017 <= 0.018 carries 0.011 with it
    assert benjamini_yekutieli([], 0.05) == []


def test_undefined_p_value_is_null_and_not_rejected():
    """All humans agree and so does the LLM: every item is a tie, d has no variance, and at ε = 0 the t-test is undefined."""
    labels = np.tile(np.arange(40) % 3, (3, 1)).T.astype(float)
    result = alt_test(labels, labels[:, 0], ["a", "b", "c"], "accuracy", epsilon=0.0)
    assert all(t.p_value is None and not t.rejected for t in result.annotators.values())
    assert result.winning_rate == 0.0 and result.advantage_probability == 1.0 and not result.passed
    at_ten = alt_test(labels, labels[:, 0], ["a", "b", "c"], "accuracy", epsilon=0.1)  # d = 0 < 0.1 with no variance: p = 0
    assert at_ten.winning_rate == 1.0 and all(t.p_value == 0.0 for t in at_ten.annotators.values())


def test_no_answer_matches_no_human():
    humans = np.array([[1, 1, 2]] * 40, dtype=float)
    llm = np.full(40, NO_ANSWER)
    for scoring in ("accuracy", "neg_rmse"):
        result = alt_test(humans, llm, ["a", "b", "c"], scoring, epsilon=0.2)
        assert result.annotators["a"].llm_wins == 0.0 and result.annotators["a"].human_wins == 1.0
    # under accuracy, annotator c matches nobody either, a tie that counts for both; under neg_rmse c is still closer
    assert alt_test(humans, llm, ["a", "b", "c"], "accuracy", epsilon=0.2).annotators["c"].llm_wins == 1.0
    assert alt_test(humans, llm, ["a", "b", "c"], "neg_rmse", epsilon=0.2).annotators["c"].llm_wins == 0.0


# Simulations: K categories; each annotator keeps the true label with probability 1 - eta, else draws from the prior.


def simulate(rng, items: int, annotators: int, prior: np.ndarray, eta_humans: float, eta_llm: float):
    truth = rng.choice(len(prior), items, p=prior)

    def annotate(eta):
        return np.where(rng.random(items) < eta, rng.choice(len(prior), items, p=prior), truth).astype(float)

    return np.stack([annotate(eta_humans) for _ in range(annotators)], 1), annotate(eta_llm)


PRIOR = np.array([0.4, 0.3, 0.2, 0.1])


def test_an_llm_as_noisy_as_the_humans_rarely_passes_at_epsilon_zero():
    rng = np.random.default_rng(2025)
    names = ["a", "b", "c"]
    passes = [alt_test(*simulate(rng, 100, 3, PRIOR, 0.3, 0.3), names, epsilon=0.0).passed for _ in range(200)]
    assert np.mean(passes) <= 0.10


def test_an_llm_three_times_less_noisy_passes_at_epsilon_one_tenth():
    rng = np.random.default_rng(2026)
    names = ["a", "b", "c"]
    passes = [alt_test(*simulate(rng, 100, 3, PRIOR, 0.3, 0.1), names, epsilon=0.1).passed for _ in range(200)]
    assert np.mean(passes) >= 0.80


# Readers and the run folder ----------------------------------------------------------------------

XNLI_COLUMNS = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
                "sentence1", "sentence2", "promptID", "pairID", "genre", "label1", "label2", "label3", "label4", "label5",
                "sentence1_tokenized", "sentence2_tokenized", "match"]
NLI = ("entailment", "neutral", "contradiction")


def crowd(items: int = 40, annotators: int = 3, seed: int = 0, classes=("yes", "no", "maybe")) -> tuple[dict, dict]:
    """Humans {annotator: {item: label}} with some labels missing, and an LLM {item: label} that skips a few items."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(classes), items)
    humans = {f"ann{a}": {f"q{i}": classes[t if rng.random() > 0.3 else rng.integers(len(classes))] for i, t in enumerate(truth) if rng.random() < 0.9}
              for a in range(annotators)}
    llm = {f"q{i}": classes[t if rng.random() > 0.15 else rng.integers(len(classes))] for i, t in enumerate(truth) if i % 13}
    return humans, llm


def write_layouts(root: Path, humans: dict) -> dict[str, tuple[Path, list[str] | None]]:
    """The same labels in every human layout: file and --annotator-columns."""
    root.mkdir(parents=True, exist_ok=True)
    names = list(humans)
    long_rows = [{"item": i, "annotator": a, "label": lab} for a, labels in humans.items() for i, lab in labels.items()]
    items = list(dict.fromkeys(i for labels in humans.values() for i in labels))
    wide_rows = [{"id": i, **{a: humans[a].get(i, "") for a in names}} for i in items]
    (root / "authors.json").write_text(json.dumps(humans))
    (root / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in long_rows))
    (root / "wide.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if v != ""}) + "\n" for r in wide_rows))
    for name, rows in (("long.csv", long_rows), ("wide.csv", wide_rows)):
        with open(root / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return {"authors": (root / "authors.json", None), "long-jsonl": (root / "long.jsonl", None), "long-csv": (root / "long.csv", None),
            "wide-jsonl": (root / "wide.jsonl", names), "wide-csv": (root / "wide.csv", names)}


def figures(metrics: dict) -> dict:
    """What must not depend on the layout: each LLM's verdict, its tests, and every agreement figure."""
    out = {}
    for name, m in metrics["llms"].items():
        out[name] = (m["winning_rate"], m["advantage_probability"], m["n_items"], {a: (t["p_value"], t["n_items"]) for a, t in m["annotators"].items()})
    return {"llms": out, "agreement": metrics["agreement"], "dropped": metrics["dropped"]}


def test_every_human_layout_gives_the_same_verdict(tmp_path):
    humans, llm = crowd()
    (tmp_path / "gpt.json").write_text(json.dumps(llm))
    results = {}
    for layout, (path, columns) in write_layouts(tmp_path / "in", humans).items():
        read = read_humans(path, columns)
        assert {a: {i: lab.value for i, lab in labels.items()} for a, labels in read.labels.items()} == humans, layout
        options = Options(epsilon=0.2, min_items=20, annotator_columns=columns)
        results[layout] = figures(verdict(path, [tmp_path / "gpt.json"], tmp_path / f"out-{layout}", options).metrics)
    first = results.pop("authors")
    assert first["llms"]["gpt"][2] == sum(1 for i in llm if sum(i in h for h in humans.values()) >= 2)
    assert first["dropped"]["llms"]["gpt"]["human_items_without_llm_label"] == 4  # q0, q13, q26, q39: the LLM skipped them
    for layout, found in results.items():
        assert found == first, layout


def test_llm_layouts_name_each_llm(tmp_path):
    humans, llm = crowd()
    _, other = crowd(seed=1)
    (tmp_path / "humans.json").write_text(json.dumps(humans))
    (tmp_path / "gpt-4o.json").write_text(json.dumps(llm))
    (tmp_path / "authors.json").write_text(json.dumps({"gemini": llm, "llama": other}))
    assert [x.name for x in read_llms(tmp_path / "authors.json")] == ["gemini", "llama"]
    result = verdict(tmp_path / "humans.json", [tmp_path / "gpt-4o.json", tmp_path / "authors.json"], tmp_path / "out", Options(min_items=20))
    assert list(result.metrics["llms"]) == ["gpt-4o", "gemini", "llama"]
    assert figures(result.metrics)["llms"]["gpt-4o"] == figures(result.metrics)["llms"]["gemini"]  # the same labels, read twice
    assert len(result.lines) == 3 and re.fullmatch(r"gpt-4o (passes|fails) the alt-test: ω = \d\.\d\d at ε = 0\.15 \(ρ = \d\.\d\d\)", result.lines[0])
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["kind"] == "verdict" and set(manifest["inputs"]) == {"humans", "llm1", "llm2"} and manifest["items"] == 40


def test_numeric_labels_get_ordinal_and_interval_alpha_and_neg_rmse(tmp_path):
    humans, llm = crowd(classes=(1, 2, 3, 4, 5))
    (tmp_path / "h.json").write_text(json.dumps(humans))
    (tmp_path / "llm.json").write_text(json.dumps(llm))
    result = verdict(tmp_path / "h.json", [tmp_path / "llm.json"], tmp_path / "out", Options(scoring="neg_rmse", min_items=20))
    alpha = result.metrics["agreement"]["humans"]["alpha"]
    assert set(alpha) == {"nominal", "ordinal", "interval"}
    table, vector = as_matrix(humans, llm)
    expected = alt_test(table, vector, list(humans), "neg_rmse", 0.15, 0.05, 2, 20)
    assert result.metrics["llms"]["llm"]["winning_rate"] == expected.winning_rate
    assert result.metrics["llms"]["llm"]["advantage_probability"] == pytest.approx(expected.advantage_probability, abs=1e-12)
    assert alpha["interval"]["value"] == pytest.approx(agreement.krippendorff_alpha(table, "interval"), abs=1e-12)


def test_single_annotator_gives_kappa_and_says_why_there_is_no_alt_test(tmp_path):
    humans, llm = crowd(annotators=1)
    (tmp_path / "h.json").write_text(json.dumps(humans))
    (tmp_path / "llm.json").write_text(json.dumps(llm))
    res = CliRunner().invoke(app, ["verdict", "--humans", str(tmp_path / "h.json"), "--llm", str(tmp_path / "llm.json"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "only one human annotator (ann0)" in res.output and "alt-test" in res.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["llms"] == {} and metrics["agreement"]["humans"] is None
    kappa = metrics["agreement"]["llms"]["llm"]["cohen_kappa"]["ann0"]
    both = [i for i in humans["ann0"] if i in llm]
    assert kappa["n_items"] == len(both) and kappa["value"] == pytest.approx(cohen_kappa_score([humans["ann0"][i] for i in both], [llm[i] for i in both]))


def test_the_run_folder_refuses_a_changed_option_or_input_unless_forced(tmp_path):
    humans, llm = crowd()
    (tmp_path / "h.json").write_text(json.dumps(humans))
    (tmp_path / "llm.json").write_text(json.dumps(llm))
    out = tmp_path / "out"
    verdict(tmp_path / "h.json", [tmp_path / "llm.json"], out, Options(min_items=20))
    first = (out / "metrics.json").read_bytes()
    with pytest.raises(ConfigMismatch, match="epsilon"):
        verdict(tmp_path / "h.json", [tmp_path / "llm.json"], out, Options(min_items=20, epsilon=0.1))
    llm["q1"] = "maybe" if llm["q1"] != "maybe" else "yes"
    (tmp_path / "llm.json").write_text(json.dumps(llm))
    with pytest.raises(ConfigMismatch, match="input llm1"):
        verdict(tmp_path / "h.json", [tmp_path / "llm.json"], out, Options(min_items=20))
    assert (out / "metrics.json").read_bytes() == first
    verdict(tmp_path / "h.json", [tmp_path / "llm.json"], out, Options(min_items=20, epsilon=0.1), force=True)
    assert json.loads((out / "metrics.json").read_text())["llms"]["llm"]["epsilon"] == 0.1
    assert "Can an LLM replace the annotators?" in (out / "report.html").read_text()


def xnli_with_annotators(path: Path, pairs: int = 12) -> Path:
    """An XNLI-1.0 style TSV (en and fr rows of each pair) with five annotators' labels, a few left blank."""
    rng = np.random.default_rng(5)
    rows = ["\t".join(XNLI_COLUMNS)]
    for p in range(pairs):
        gold = NLI[p % 3]
        labels = [gold if rng.random() > 0.25 else NLI[rng.integers(3)] for _ in range(5)]
        if p % 4 == 0:
            labels[4] = ""
        for lang in ("en", "fr"):
            cells = {"language": lang, "gold_label": gold, "sentence1": f"Sentence {p} in {lang}.", "sentence2": f"\"Quoted\" {p}.",
                     "pairID": str(100 + p), "promptID": str(p), "genre": "fiction", **{f"label{k + 1}": lab for k, lab in enumerate(labels)}}
            rows.append("\t".join(cells.get(c, "") for c in XNLI_COLUMNS))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_an_xnli_file_joins_annotate_runs_by_their_ids(tmp_path, tiny):
    data = xnli_with_annotators(tmp_path / "xnli.dev.tsv")
    for mode in ("generate", "score"):
        sampled = ["--samples", "2", "--max-new-tokens", "3"] if mode == "generate" else []
        res = CliRunner().invoke(app, ["run", "--task", "xnli", "--data", str(data), "--model", f"hf:{tiny('llama')}", *sampled,
                                       "--mode", mode, "--out", str(tmp_path / f"run-{mode}")])
        assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (tmp_path / "run-generate" / "records.jsonl").read_text().splitlines()]
    humans = read_humans(data)
    assert list(humans.labels) == [f"label{k}" for k in range(1, 6)]
    assert set(humans.labels["label1"]) == {r["id"] for r in records} == {f"en-{100 + p}" for p in range(12)}  # en only, as the runs
    result = verdict(data, [tmp_path / "run-generate", tmp_path / "run-score"], tmp_path / "out", Options(min_items=5, epsilon=0.2))
    model = json.loads((tmp_path / "run-generate" / "run.json").read_text())["config"]["model"]
    assert list(result.metrics["llms"]) == [f"{model} (run-generate)", f"{model} (run-score)"] and result.metrics["n_items"] == 12
    assert all(d["human_items_without_llm_label"] == 0 for d in result.metrics["dropped"]["llms"].values())
    # the same predictions as a JSON file, a no-answer written as null: the same verdict
    (tmp_path / "same.json").write_text(json.dumps({r["id"]: None if r["prediction"] == "NOANSWER" else r["prediction"] for r in records}))
    again = verdict(data, [tmp_path / "same.json"], tmp_path / "out2", Options(min_items=5, epsilon=0.2))
    assert figures(again.metrics)["llms"]["same"] == figures(result.metrics)["llms"][f"{model} (run-generate)"]
    issues = [json.loads(line) for line in (tmp_path / "out" / "label_issues.jsonl").read_text().splitlines()]
    scored = [row for row in issues if row["llm"] == f"{model} (run-score)"]
    assert [row["rank"] for row in scored] == list(range(1, 13)) and {row["item"] for row in scored} == set(humans.labels["label1"])
    assert all(0 <= row["score"] <= 1 and row["llm_label"] in NLI for row in scored)
    assert "Items to re-check" in (tmp_path / "out" / "report.md").read_text()


def test_xnli_annotators_follow_the_language_filter(tmp_path):
    data = xnli_with_annotators(tmp_path / "xnli.dev.tsv", pairs=6)
    assert set(read_humans(data).labels["label1"]) == {f"en-{100 + p}" for p in range(6)}
    both = read_humans(data, languages=["fr", "en"])
    assert set(both.labels["label1"]) == {f"{lang}-{100 + p}" for p in range(6) for lang in ("en", "fr")}
    assert len(both.labels["label5"]) == 8  # pairs 0 and 4 left label5 blank, in both languages
    assert both.task == "xnli"
