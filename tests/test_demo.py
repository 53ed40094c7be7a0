"""`annotaudit demo --quick`, end to end through the command line, as CI runs it."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from annotaudit.demo import shapes


@pytest.mark.slow
def test_demo_quick_writes_report_and_summary(quick_demo):
    out = quick_demo
    summary = json.loads((out / "summary.json").read_text())
    for when in ("before", "after"):
        for lang in ("en", "it"):
            for setting in ("random", "popular", "adversarial"):
                for metric in ("f1", "accuracy", "yes_ratio"):
                    value = summary[f"pope.{when}.{lang}.{setting}.{metric}"]
                    assert 0.0 <= value <= 1.0
            assert f"chair.{when}.{lang}.chair_s" in summary
    for who in ("lvlm", "smollm2"):
        assert 0.0 <= summary[f"annotate.{who}.answer_rate"] <= 1.0
    assert summary["annotate.lvlm.answer_rate"] == 1.0  # score mode always answers
    assert any(k.startswith("mmbt.human.") for k in summary)
    assert {"mmbt.human.auroc", "mmbt.lvlm.auroc", "mmbt.smollm2.auroc"} <= set(summary)  # human, LVLM, SmolLM2
    html = (out / "report.html").read_text()
    assert "POPE" in html and "CHAIR" in html and "MMBT" in html and "data:image/png;base64," in html
    assert (out / "report.md").is_file() and (out / "run.json").is_file()
    # every step kept its own run directory with a manifest
    for sub in ("audit_before/pope_en", "audit_after/chair_it", "annotate_lvlm", "annotate_smollm2", "models/lvlm_stage2"):
        assert (out / sub / "run.json").is_file(), sub


# The quick demo's MMBT, trained on the human labels of its 180 training items, scored AUROC 0.847 [0.761, 0.924]
# on its 90 test items here (the run is deterministic); chance is 0.5.
QUICK_HUMAN_AUROC_FLOOR = 0.65


@pytest.mark.slow
def test_quick_demo_mmbt_learns_from_human_labels_and_needs_the_picture(quick_demo):
    summary = json.loads((quick_demo / "summary.json").read_text())
    assert summary["mmbt.human.auroc"] >= QUICK_HUMAN_AUROC_FLOOR, summary["mmbt.human.auroc"]
    assert summary["mmbt.human.auroc.low"] > 0.5  # the interval excludes chance
    # the same MMBT without the picture cannot tell a true sentence from a false one
    assert summary["mmbt.text_only.auroc.low"] <= 0.5 <= summary["mmbt.text_only.auroc.high"]
    for arm in ("human", "lvlm", "smollm2", "text_only"):
        assert summary[f"mmbt.{arm}.auroc.low"] <= summary[f"mmbt.{arm}.auroc"] <= summary[f"mmbt.{arm}.auroc.high"]


# the crowd and the verdict -----------------------------------------------------------------------


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_crowd_moves_nothing_else_in_the_world(tmp_path):
    """The crowd's labels come from a stream of their own: every other file of the world is the same bytes without them."""
    with_crowd = shapes.generate_world(tmp_path / "with", n_train=30, n_val=6, n_memes=250, seed=2, image_size=64)
    without = shapes.generate_world(tmp_path / "without", n_train=30, n_val=6, n_memes=250, seed=2, image_size=64, crowd_items=0)
    crowd = with_crowd.memes / shapes.CROWD_FILE
    assert crowd.is_file() and not (without.memes / shapes.CROWD_FILE).exists()
    found = _digest(with_crowd.root)
    del found[str(crowd.relative_to(with_crowd.root))]
    assert found == _digest(without.root)
    rows = list(csv.DictReader(crowd.open()))
    train = {str(json.loads(line)["id"]): json.loads(line)["truth"] for line in (with_crowd.memes / "train.jsonl").read_text().splitlines()}
    items = {row["item"] for row in rows}
    assert len(items) == shapes.CROWD_ITEMS and items <= set(train)  # 120 of the 150 training items
    assert len(rows) == 3 * shapes.CROWD_ITEMS and {row["annotator"] for row in rows} == set(shapes.CROWD_FLIP_RATES)
    assert {row["label"] for row in rows} == {"hateful", "not_hateful"}
    for worker in shapes.CROWD_FLIP_RATES:
        wrong = sum(row["label"] != shapes.CROWD_LABELS[train[row["item"]]] for row in rows if row["annotator"] == worker)
        assert 0 < wrong < shapes.CROWD_ITEMS / 2, (worker, wrong)  # noisy, yet mostly right


@pytest.mark.slow
def test_quick_demo_gives_the_verdict_against_the_crowd(quick_demo):
    summary = json.loads((quick_demo / "summary.json").read_text())
    n_train = len((quick_demo / "world" / "memes" / "train.jsonl").read_text().splitlines())
    assert 0 <= summary["alpha.humans.low"] <= summary["alpha.humans"] <= summary["alpha.humans.high"] <= 1
    assert summary["alpha.humans.n"] == shapes.CROWD_ITEMS
    for who in ("lvlm", "smollm2"):
        v = f"verdict.{who}"
        assert summary[f"{v}.epsilon"] == 0.1 and summary[f"{v}.n_items"] == shapes.CROWD_ITEMS
        assert 0 <= summary[f"{v}.winning_rate"] <= 1 and summary[f"{v}.passed"] == (summary[f"{v}.winning_rate"] >= 0.5)
        assert summary[f"{v}.advantage_probability.low"] <= summary[f"{v}.advantage_probability"] <= summary[f"{v}.advantage_probability.high"]
        assert summary[f"alpha.with_{who}.low"] <= summary[f"alpha.with_{who}"] <= summary[f"alpha.with_{who}.high"]
        p = f"prevalence.true.{who}"
        for estimator in ("ppi", "humans_only", "llm_only"):
            assert summary[f"{p}.{estimator}.low"] <= summary[f"{p}.{estimator}"] <= summary[f"{p}.{estimator}.high"], estimator
        assert summary[f"{p}.humans_only.n"] == summary[f"{p}.n_human"] == shapes.CROWD_ITEMS
        assert summary[f"{p}.llm_only.n"] == summary[f"{p}.n_human"] + summary[f"{p}.n_llm_only"] == n_train
        assert 0 <= summary[f"{p}.lambda"] <= 1
    assert 0 < summary["seconds"]["verdict"]
    # the LVLM scored both answers, so its probabilities rank the crowd's labels; SmolLM2 sampled one answer and gave none
    issues = [json.loads(line) for line in (quick_demo / "verdict" / "label_issues.jsonl").read_text().splitlines()]
    assert {row["llm"] for row in issues} == {"hf:" + str(quick_demo / "models" / "lvlm_stage2")}
    assert [row["rank"] for row in issues] == list(range(1, shapes.CROWD_ITEMS + 1))
