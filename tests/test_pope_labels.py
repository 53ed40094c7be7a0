"""POPE label sets side by side (POPE, RePOPE-like relabelings, the older random file) and the protocol fingerprint."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from annotaudit.audit.pope.labels import file_fingerprint, read_label_sets, rows_hash
from annotaudit.audit.pope.protocol import metrics, parse_repope
from annotaudit.audit.pope.run import score_pope
from annotaudit.core.errors import InputError

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pope"
OLD = REF / "e3e3926"
needs_ref = pytest.mark.skipif(not (OLD / "coco_pope_random.json").is_file(), reason="shared/reference/pope is absent")
SETTINGS = ("random", "popular", "adversarial")
LLAVA_SUFFIX = "\nAnswer the question using a single word or phrase."


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "annotaudit.cli.main", *map(str, args)], capture_output=True, text=True, timeout=300)


def _relabel(rows: list[dict], drop, flip, seed: int = 0) -> list[dict]:
    """A relabeling the way RePOPE makes one: some questions dropped, some labels flipped, new ids, another order."""
    out = []
    for r in rows:
        if drop(r):
            continue
        label = ({"yes": "no", "no": "yes"}[r["label"]]) if flip(r) else r["label"]
        out.append({**r, "label": label})
    random.Random(seed).shuffle(out)
    return [{**r, "question_id": 10_000 + k} for k, r in enumerate(out)]


def _counts(labels: list[str], preds: list[str]) -> dict:
    """TP, FP, TN, FN and F1 written out here, independently of audit.pope."""
    tp = sum(y == "yes" and p == "yes" for y, p in zip(labels, preds))
    fp = sum(y == "no" and p == "yes" for y, p in zip(labels, preds))
    tn = sum(y == "no" and p == "no" for y, p in zip(labels, preds))
    fn = sum(y == "yes" and p == "no" for y, p in zip(labels, preds))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "n": len(labels), "f1": 2 * precision * recall / (precision + recall)}


# Parsing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Yes", "yes"), ("NO.", "no"), ("There are eyes", "yes"), ("Yes and no", "yes"), ("Nothing there", "no"), ("I do not know", "no"),
    ("Not at all", "no"), ("I cannot tell", "no"), ("Maybe", "none"), ("", "none"), ("There is a dog.", "none"),
])
def test_repope_parser_follows_their_substring_rule(text, expected):
    assert parse_repope(text) == expected


def test_no_answer_is_left_out_of_the_four_counts_and_counted():
    m = metrics(["yes", "no", "yes", "no"], ["yes", "none", "none", "yes"])
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"], m["no_answer"]) == (1, 1, 0, 0, 2, 2)
    assert m["accuracy"] == 0.5 and m["yes_ratio"] == 1.0 and m["recall"] == 1.0


# Two label sets on one answers file, counted by hand ------------------------------------------

@needs_ref
def test_two_derived_label_sets_every_count_by_hand(tmp_path):
    """Questions 1-8 of the shared random file (labels Y N Y N Y N Y N), answered Y Y N N Y N Y Y.

    Own labels: TP 3 (q1 q5 q7), FP 2 (q2 q8), TN 2 (q4 q6), FN 1 (q3); F1 = 2/3.
    'same': the eight rows under new ids in reverse order: nothing changes.
    'relabelled': q3 and q6 removed, q2 flipped to yes and q5 to no, two labels no question asks:
    TP 3 (q1 q2 q7), FP 2 (q5 q8), TN 1 (q4), FN 0; n 6, excluded 2; F1 = 0.75, +8.33 points.
    """
    rows = _rows(REF / "coco_pope_random.json")[:8]
    assert [r["label"][0] for r in rows] == list("ynynynyn")
    questions = _write(tmp_path / "pope" / "q_random.json", rows)
    answers = _write(tmp_path / "answers.jsonl", [{"question_id": r["question_id"], "text": t} for r, t in zip(rows, "Yes Yes No No Yes No Yes Yes".split())])
    same = [{**r, "question_id": 500 + k} for k, r in enumerate(reversed(rows))]
    _write(tmp_path / "same" / "random.json", same)
    relabelled = _relabel(rows, drop=lambda r: r["question_id"] in (3, 6), flip=lambda r: r["question_id"] in (2, 5))
    relabelled += [{"question_id": 90, "image": rows[0]["image"], "text": "Is there a zebra in the image?", "label": "no"},
                   {"question_id": 91, "image": "COCO_val2014_000000000999.jpg", "text": "Is there a dog in the image?", "label": "yes"}]
    _write(tmp_path / "relabelled" / "coco_repope_random.json", relabelled)
    out = tmp_path / "scored"
    res = _cli("audit", "pope", "score", "--questions", questions, "--answers", answers, "--labels", tmp_path / "same",
               "--labels", f"relabelled={tmp_path / 'relabelled'}", "--model", "my-model", "--out", out)
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["summary"]) == ["random"]  # the setting, not the file's stem 'q_random'
    assert list(m["label_sets"]) == ["pope", "same", "relabelled"]
    own, kept, changed = (m["label_sets"][k]["settings"]["random"] for k in ("pope", "same", "relabelled"))
    assert {k: own[k] for k in ("tp", "fp", "tn", "fn", "n", "excluded")} == {"tp": 3, "fp": 2, "tn": 2, "fn": 1, "n": 8, "excluded": 0}
    assert own["f1"] == pytest.approx(2 / 3) == m["summary"]["random"]["f1"]  # the first set's figures stay where they were
    assert {k: kept[k] for k in ("tp", "fp", "tn", "fn", "n", "excluded", "labels_without_question")} == {**{k: own[k] for k in ("tp", "fp", "tn", "fn", "n")},
                                                                                                        "excluded": 0, "labels_without_question": 0}
    assert kept["changed"] == {"yes_to_no": 0, "no_to_yes": 0}
    assert {k: changed[k] for k in ("tp", "fp", "tn", "fn", "n", "excluded", "labels_without_question")} == {
        "tp": 3, "fp": 2, "tn": 1, "fn": 0, "n": 6, "excluded": 2, "labels_without_question": 2}
    assert changed["changed"] == {"yes_to_no": 1, "no_to_yes": 1}
    assert changed["f1"] == pytest.approx(0.75) and changed["accuracy"] == pytest.approx(4 / 6) and changed["yes_ratio"] == pytest.approx(5 / 6)
    assert "random: F1 66.67 (pope) -> 75.00 (relabelled), +8.33; 6 questions, 2 excluded, 1 yes->no and 1 no->yes, 2 labels without a question" in res.stdout
    assert "labels: relabelled" in res.stdout  # one table per label set
    config = json.loads((out / "run.json").read_text())["config"]
    assert config["model"] == "my-model" and set(config["labels"]) == {"same", "relabelled"}
    assert m["label_sets"]["relabelled"]["protocol"]["version"] == "unknown"


@needs_ref
def test_full_size_relabeling_and_the_older_random_file(tmp_path):
    """Today's popular questions, answered with errors, against a relabeling of the whole file; today's random
    questions against the older random file, which asks the same image and object for all its 2,910 questions."""
    popular = _rows(REF / "coco_pope_popular.json")
    rng = random.Random(1)
    replies = {r["question_id"]: (r["label"] if rng.random() > 0.2 else {"yes": "no", "no": "yes"}[r["label"]]) for r in popular}
    answers = _write(tmp_path / "answers.jsonl", [{"question_id": q, "text": a.capitalize() + "."} for q, a in replies.items()])
    relabelled = _relabel(popular, drop=lambda r: r["question_id"] % 9 == 0, flip=lambda r: r["question_id"] % 13 == 0, seed=3)
    _write(tmp_path / "repope" / "coco_repope_popular.json", relabelled)
    result = score_pope(questions=REF / "coco_pope_popular.json", answers=answers, labels=[tmp_path / "repope"])
    new_label = {(r["image"], r["text"]): r["label"] for r in relabelled}
    kept = [r for r in popular if (r["image"], r["text"]) in new_label]
    expected = _counts([new_label[(r["image"], r["text"])] for r in kept], [replies[r["question_id"]] for r in kept])
    got = result["label_sets"]["repope"]["settings"]["popular"]
    assert {k: got[k] for k in ("tp", "fp", "tn", "fn", "n")} == {k: expected[k] for k in ("tp", "fp", "tn", "fn", "n")}
    assert got["f1"] == pytest.approx(expected["f1"])
    assert got["excluded"] == sum(r["question_id"] % 9 == 0 for r in popular) == 333
    flipped = [r for r in popular if r["question_id"] % 9 and r["question_id"] % 13 == 0]
    assert got["changed"] == {"yes_to_no": sum(r["label"] == "yes" for r in flipped), "no_to_yes": sum(r["label"] == "no" for r in flipped)}
    assert result["protocol"]["version"] == "pope-current"

    random_answers = _write(tmp_path / "random.jsonl", [{"question_id": r["question_id"], "text": "Yes"} for r in _rows(REF / "coco_pope_random.json")])
    older = score_pope(questions=REF / "coco_pope_random.json", answers=random_answers, labels=[f"e3e3926={OLD / 'coco_pope_random.json'}"])
    fig = older["label_sets"]["e3e3926"]["settings"]["random"]
    assert (fig["n"], fig["excluded"], fig["labels_without_question"], fig["changed"]) == (2910, 90, 0, {"yes_to_no": 0, "no_to_yes": 0})
    assert (fig["tp"], fig["fp"]) == (1500, 1410)  # every answer is yes: the older file has 1,500 yes and 1,410 no
    assert older["label_sets"]["e3e3926"]["protocol"]["labels"]["random"]["version"] == "pope-e3e3926"


# LLaVA's layout against two label sets ---------------------------------------------------------

@needs_ref
def test_llava_layout_against_pope_and_a_relabeling(tmp_path):
    coco, relabel = tmp_path / "pope" / "coco", tmp_path / "repope"
    questions, answers, replies, own = [], [], {}, {}
    rng = random.Random(0)
    coco.mkdir(parents=True)
    for setting in SETTINGS:
        shutil.copy(OLD / f"coco_pope_{setting}.json", coco / f"coco_pope_{setting}.json")
        rows = _rows(OLD / f"coco_pope_{setting}.json")
        _write(relabel / f"coco_repope_{setting}.json", _relabel(rows, drop=lambda r: r["question_id"] % 10 == 0, flip=lambda r: r["question_id"] % 7 == 0))
        for r in rows:
            qid = len(questions)
            said = r["label"] if rng.random() > 0.15 else {"yes": "no", "no": "yes"}[r["label"]]
            replies[(setting, r["question_id"])] = said
            questions.append({"question_id": qid, "image": r["image"], "text": r["text"] + LLAVA_SUFFIX, "category": setting})
            answers.append({"question_id": qid, "prompt": r["text"] + LLAVA_SUFFIX, "text": said.capitalize(), "answer_id": f"a{qid}", "model_id": "llava", "metadata": {}})
        own[setting] = rows
    qfile = _write(tmp_path / "pope" / "llava_pope_test.jsonl", questions)
    afile = _write(tmp_path / "pope" / "answers" / "llava-v1.5-13b.jsonl", answers)
    out = tmp_path / "scored"
    res = _cli("audit", "pope", "score", "--questions", qfile, "--labels", coco, "--labels", relabel, "--answers", afile, "--out", out)
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["label_sets"]) == ["coco", "repope"]
    assert m["protocol"]["version"] == "pope-e3e3926" and m["protocol"]["parser"] == "pope" and m["protocol"]["answer_tokens"] is None
    f1s = []
    for setting in SETTINGS:
        rows = own[setting]
        kept = [r for r in rows if r["question_id"] % 10]
        labels = [({"yes": "no", "no": "yes"}[r["label"]]) if r["question_id"] % 7 == 0 else r["label"] for r in kept]
        expected = _counts(labels, [replies[(setting, r["question_id"])] for r in kept])
        got = m["label_sets"]["repope"]["settings"][setting]
        assert {k: got[k] for k in ("tp", "fp", "tn", "fn", "n")} == {k: expected[k] for k in ("tp", "fp", "tn", "fn", "n")}, setting
        assert got["excluded"] == len(rows) - len(kept) and got["labels_without_question"] == 0
        assert m["label_sets"]["coco"]["settings"][setting]["f1"] == pytest.approx(m["summary"][setting]["f1"])
        assert f"{setting}: F1 {100 * m['summary'][setting]['f1']:.2f} (coco) -> {100 * expected['f1']:.2f} (repope)" in res.stdout
        f1s.append(expected["f1"])
    assert m["label_sets"]["repope"]["mean_f1"] == pytest.approx(sum(f1s) / 3)
    assert m["mean_f1"] == pytest.approx(m["label_sets"]["coco"]["mean_f1"])


# The protocol fingerprint ----------------------------------------------------------------------

@needs_ref
@pytest.mark.parametrize("folder, version", [(REF, "pope-current"), (OLD, "pope-e3e3926")])
def test_fingerprint_recognises_the_shared_files_at_both_versions(tmp_path, folder, version):
    labels = read_label_sets([folder])[0]
    for setting in SETTINGS:
        rows = labels.rows[setting]
        got = file_fingerprint(rows, setting, labels.files[setting])
        assert (got["version"], got["recognised_by"]) == (version, "hash"), setting
        assert got["questions"] == (2910 if (setting, version) == ("random", "pope-e3e3926") else 3000)
    # the same rows with other line endings, in another order, hash the same; one changed label does not
    raw = (folder / "coco_pope_popular.json").read_bytes()
    lines = raw.replace(b"\r\n", b"\n").splitlines()
    random.Random(0).shuffle(lines)
    copy = tmp_path / "popular.json"
    copy.write_bytes(b"\r\n".join(lines) + b"\r\n")
    again = read_label_sets([copy])[0]
    assert rows_hash(again.rows["popular"]) == rows_hash(labels.rows["popular"])
    edited = [dict(r) for r in again.rows["popular"]]
    edited[0]["label"] = "no" if edited[0]["label"] == "yes" else "yes"
    assert file_fingerprint(edited, "popular", copy)["version"] == "unknown"


@needs_ref
def test_repope_recognised_by_question_count_only(tmp_path):
    rows = _rows(REF / "coco_pope_random.json")
    repope_like = _relabel(rows, drop=lambda r: r["question_id"] <= 226, flip=lambda r: False)
    assert len(repope_like) == 2774
    got = file_fingerprint(repope_like, "random", None)
    assert (got["version"], got["recognised_by"]) == ("repope", "question count")
    assert file_fingerprint(repope_like, "popular", None)["version"] == "unknown"  # RePOPE's popular has 2,727


# Naming label sets -----------------------------------------------------------------------------

@needs_ref
def test_a_folder_with_pope_and_repope_names_asks_for_a_narrower_path(tmp_path):
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    shutil.copy(REF / "coco_pope_random.json", annotations / "coco_pope_random.json")
    _write(annotations / "coco_repope_random.json", _relabel(_rows(REF / "coco_pope_random.json"), lambda r: r["question_id"] > 2774, lambda r: False))
    with pytest.raises(InputError, match=r"two sets of label files .*NAME=.*narrower path"):
        read_label_sets([annotations])
    narrowed = read_label_sets([f"repope={annotations / 'coco_repope'}", f"pope={annotations / 'coco_pope_random.json'}"])
    assert [s.name for s in narrowed] == ["repope", "pope"]
    assert narrowed[0].files == {"random": annotations / "coco_repope_random.json"}
    res = _cli("audit", "pope", "score", "--questions", REF / "coco_pope_random.json", "--answers", tmp_path / "none.jsonl",
               "--labels", annotations, "--out", tmp_path / "o")
    assert res.returncode == 2 and "NAME=" in res.stderr and "Traceback" not in res.stderr
    with pytest.raises(InputError, match="two label sets are named 'annotations'"):
        read_label_sets([annotations / "coco_pope_random.json", annotations / "coco_repope_random.json"])


# Naming the model ------------------------------------------------------------------------------

def test_model_is_recorded_by_pope_score_and_chair_score(tmp_path):
    q = _write(tmp_path / "pope" / "q_random.json", [{"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a dog in the image?", "label": "yes"},
                                                     {"question_id": 2, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a cat in the image?", "label": "no"}])
    a = _write(tmp_path / "answers.jsonl", [{"question_id": 1, "text": "Yes"}, {"question_id": 2, "text": "I see nothing like it"}])
    res = _cli("audit", "pope", "score", "--questions", q, "--answers", a, "--model", "llava-1.5-7b", "--parser", "repope", "--out", tmp_path / "p")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "p" / "run.json").read_text())["config"]["model"] == "llava-1.5-7b"
    m = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert m["model"] == "llava-1.5-7b" and list(m["summary"]) == ["random"]
    assert m["protocol"]["parser"] == "repope" and m["templates"]["random"]["1"]["tn"] == 1  # 'nothing' holds 'no'
    rescored = tmp_path / "p2"
    assert _cli("audit", "pope", "score", "--run", tmp_path / "p", "--out", rescored).returncode == 0
    assert json.loads((rescored / "run.json").read_text())["config"]["model"] == "llava-1.5-7b"  # a re-scoring keeps the run's model

    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"1": ["dog"]}))
    captions = _write(tmp_path / "captions.jsonl", [{"image_id": 1, "caption": "A dog and a cat."}])
    res = _cli("audit", "chair", "score", "--captions", captions, "--ground-truth", gt, "--model", "llava-1.5-7b", "--out", tmp_path / "c")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "c" / "run.json").read_text())["config"]["model"] == "llava-1.5-7b"
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["model"] == "llava-1.5-7b"


@needs_ref
def test_rescoring_a_run_keeps_its_protocol_and_adds_label_sets(tmp_path):
    rows = _rows(OLD / "coco_pope_random.json")
    answers = _write(tmp_path / "a.jsonl", [{"question_id": r["question_id"], "text": "No" if r["question_id"] % 3 else "Yes"} for r in rows])
    first = tmp_path / "first"
    score_pope(questions=OLD / "coco_pope_random.json", answers=answers, out=first)
    again = score_pope(run=first, labels=[f"today={REF / 'coco_pope_random.json'}"], parser="repope", out=tmp_path / "again")
    assert list(again["label_sets"]) == ["e3e3926", "today"]
    assert again["protocol"]["version"] == "pope-e3e3926" and again["protocol"]["parser"] == "repope"
    assert again["label_sets"]["today"]["protocol"]["version"] == "pope-current"
    today = again["label_sets"]["today"]["settings"]["random"]
    assert (today["n"], today["excluded"], today["labels_without_question"]) == (2910, 0, 90)
