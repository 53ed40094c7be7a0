"""POPE: parsing and scoring parity, the builder's guarantees, reading the published files, runs."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from annotaudit.audit.pope.build import build_question_sets, frequency, negatives, objects_from_coco, objects_from_json, ranking_from_table
from annotaudit.audit.pope.protocol import (
    CANDIDATES,
    coco_italian_names,
    italian_article,
    italian_phrase,
    metrics,
    parse_pope,
    parse_question,
    parse_strict,
    parse_vlmevalkit,
    question_text,
    read_questions,
    score_answers,
)
from annotaudit.audit.pope.run import PopeConfig, best_threshold, run_pope, score_pope
from annotaudit.cli.audit_pope import app
from annotaudit.core.errors import InputError

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pope"
needs_ref = pytest.mark.skipif(not (REF / "coco_pope_random.json").is_file(), reason="shared/reference/pope is absent")
SETTINGS = ("random", "popular", "adversarial")


def _by_image(questions):
    out = defaultdict(list)
    for q in questions:
        out[q["image"]].append(q)
    return out


def _image_id(name: str) -> int:
    return int(name.rsplit("_", 1)[1].split(".")[0])


# Parsing and metrics ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("No.", "no"), ("NO", "yes"), ("Nope", "yes"), ("Yes, there is not a dog.", "no"), ("", "yes"),
    ("Yes.", "yes"), ("no", "no"), ("There is no dog in the image.", "no"), ("Yes. No dog though.", "yes"),
    ("Yes, no doubt.", "no"), ("There's not a cat", "no"), ("No, there isn't.", "no"), ("Not really", "yes"),
    ("I cannot tell", "yes"), ("yes,no", "yes"), ("Nope.", "yes"), ("No,", "no"), ("  No", "no"),
])
def test_pope_parser_follows_evaluate_py(text, expected):
    assert parse_pope(text) == expected


def test_italian_answers_parsed_for_si_no_non():
    assert parse_pope("Sì, c'è un cane.", "it") == "yes"
    assert parse_pope("Non c'è nessun cane.", "it") == "no"
    assert parse_pope("No.", "it") == "no"
    assert parse_pope("Non c'è", "en") == "yes"  # English keeps POPE's exact word list
    assert parse_strict("Sì", "it") == "yes" and parse_strict("non credo", "it") == "no"
    assert parse_vlmevalkit("Si, certo", "it") == "yes"


def test_other_parsers_differ_where_documented():
    assert parse_strict("Yes, there is not a dog.") == "yes"  # first word decides
    assert parse_strict("There is a dog.") == "unknown"
    assert parse_vlmevalkit("Yes, there is not a dog.") == "yes"  # 'not' alone decides nothing
    assert parse_vlmevalkit("Yes and no") == "unknown"
    assert parse_vlmevalkit("NO") == "no" and parse_pope("NO") == "yes"


def test_metrics_by_hand():
    m = metrics(["yes", "yes", "no", "no", "no"], ["yes", "no", "yes", "no", "unknown"])
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["unknown"]) == (1, 1, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5) and m["f1"] == pytest.approx(0.5)
    assert m["yes_ratio"] == pytest.approx(2 / 5)


def _pope_reference(labels, answers):
    """POPE's rule as the shared README states it, written independently of audit.pope."""
    preds = []
    for a in answers:
        words = a.split(".")[0].replace(",", "").split(" ")
        preds.append(0 if ("No" in words or "not" in words or "no" in words) else 1)
    y = [1 if lab == "yes" else 0 for lab in labels]
    tp = sum(p == 1 and t == 1 for p, t in zip(preds, y))
    fp = sum(p == 1 and t == 0 for p, t in zip(preds, y))
    tn = sum(p == 0 and t == 0 for p, t in zip(preds, y))
    fn = sum(p == 0 and t == 1 for p, t in zip(preds, y))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"accuracy": (tp + tn) / len(y), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall), "yes_ratio": preds.count(1) / len(preds)}


TRICKY = ["Yes", "No", "No.", "NO", "Nope", "Yes, there is not a {}.", "", "yes", "no", "Yes, there is a {} in the image.",
          "There is no {}.", "I am not sure.", "Yes. Not a {} though", "no,", "Non", "There is a {}, no doubt"]


@needs_ref
@pytest.mark.parametrize("setting", SETTINGS)
def test_score_matches_pope_rule_on_shared_files(tmp_path, setting):
    questions = REF / f"coco_pope_{setting}.json"
    rng = random.Random(setting)
    labels = [json.loads(line)["label"] for line in questions.read_text().splitlines() if line.strip()]
    answers = [rng.choice(TRICKY).format("dog") for _ in labels]
    path = tmp_path / "answers.jsonl"  # POPE's own answer format: by line order, 'answer' field
    path.write_text("".join(json.dumps({"question": "q", "answer": a}) + "\n" for a in answers))
    ours = score_answers(questions, path)
    ref = _pope_reference(labels, answers)
    assert ours["n"] == 3000
    for k, v in ref.items():
        assert ours[k] == v, k
    out = tmp_path / "scored"
    result = CliRunner().invoke(app, ["score", "--questions", str(questions), "--answers", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["templates"][setting]["1"]["f1"] == ref["f1"]  # the setting, not the file stem


def test_score_pairs_by_question_id_and_reports_bad_lines(tmp_path):
    q = tmp_path / "q.json"
    q.write_text('{"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "label": "yes"}\r\n'
                 '{"question_id": 2, "image": "a.jpg", "text": "Is there a cat in the image?", "label": "no"}\r\n')
    a = tmp_path / "a.jsonl"
    a.write_text('{"question_id": 2, "text": "No."}\n{"question_id": 1, "text": "Yes"}\n')
    assert score_answers(q, a)["accuracy"] == 1.0
    a.write_text('{"question_id": 2, "text": "No."}\n{"question_id": 1, "text": "Yes"\n')
    with pytest.raises(InputError, match=r"a.jsonl:2: malformed JSON"):
        score_answers(q, a)
    a.write_text('{"text": "No."}\n')
    with pytest.raises(InputError, match="1 answers for 2 questions"):
        score_answers(q, a)


def test_score_refuses_an_answer_given_twice(tmp_path):
    q = tmp_path / "q.json"
    q.write_text('{"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "label": "yes"}\n')
    a = tmp_path / "a.jsonl"
    a.write_text('{"question_id": 1, "text": "No."}\n{"question_id": 1, "text": "Yes"}\n')
    with pytest.raises(InputError, match=r"a.jsonl:2: question_id 1 is answered twice"):
        score_answers(q, a)


def test_score_writes_a_run_folder_that_scores_again(tmp_path):
    q = tmp_path / "q.json"
    q.write_text("".join(json.dumps({"question_id": k, "image": f"{k // 2}.jpg", "text": "Is there a dog in the image?", "label": lab}) + "\n"
                         for k, lab in enumerate(["yes", "no", "yes", "no"])))
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps({"question_id": k, "text": t}) + "\n" for k, t in enumerate(["Yes", "Yes, there is not", "NO", "No."])))
    first = tmp_path / "first"
    r = CliRunner().invoke(app, ["score", "--questions", str(q), "--answers", str(a), "--out", str(first)])
    assert r.exit_code == 0, r.output
    assert {p.name for p in first.iterdir()} >= {"run.json", "records.jsonl", "metrics.json", "report.md", "report.html"}
    records = [json.loads(line) for line in (first / "records.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in records] == ["yes", "no", "yes", "no"] and records[2]["raw"] == "NO"
    assert records[0]["input"] == {"prompt": "Is there a dog in the image?", "image": "0.jpg"} and records[0]["scores"] is None
    pope = json.loads((first / "metrics.json").read_text())
    assert pope["templates"]["q"]["1"]["accuracy"] == 1.0 and pope["parser"] == "pope"
    assert score_pope(run=first)["summary"] == pope["summary"]
    strict = tmp_path / "strict"
    r = CliRunner().invoke(app, ["score", "--run", str(first), "--parser", "strict", "--out", str(strict)])
    assert r.exit_code == 0, r.output
    again = [json.loads(line) for line in (strict / "records.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in again] == ["yes", "yes", "no", "no"]
    assert json.loads((strict / "metrics.json").read_text())["templates"]["q"]["1"]["accuracy"] == 0.5
    with pytest.raises(InputError, match="in place"):
        score_pope(run=first, out=first, parser="strict")


# Reading the published files -------------------------------------------------------------------

@needs_ref
@pytest.mark.parametrize("setting", SETTINGS)
def test_reads_all_shared_files(setting):
    path = REF / f"coco_pope_{setting}.json"
    if setting != "random":
        assert b"\r\n" in path.read_bytes()  # the quirk this test exists for
    qs = read_questions(path)
    assert len(qs) == 3000 and len(_by_image(qs)) == 500
    assert sum(q["label"] == "yes" for q in qs) == 1500
    assert all(not q["text"].endswith("\r") for q in qs)
    objects = [parse_question(q["text"]) for q in qs]
    assert all(o is not None and o[0] == "en" for o in objects)
    if setting == "random":
        odd = [o[1] for q, o in zip(qs, objects) if "an traffic" in q["text"]]
        assert odd == ["traffic light"]


def test_reads_older_shorter_file(tmp_path):
    """Several papers used a 2,910-line random file: any length is fine, balance is not assumed."""
    lines = [json.dumps({"question_id": i, "image": f"im{i // 6}.jpg", "text": "Is there a dog in the image?", "label": "yes" if i % 2 else "no"}) for i in range(1, 2911)]
    path = tmp_path / "old.json"
    path.write_text("\n".join(lines))  # no final newline either
    assert len(read_questions(path)) == 2910


def test_bad_question_file_names_file_and_line(tmp_path):
    path = tmp_path / "q.json"
    path.write_text('{"question_id": 1, "image": "a.jpg", "text": "t", "label": "yes"}\n\n{"question_id": 2, "image": "a.jpg", "text": "t", "label": "maybe"}\n')
    with pytest.raises(InputError, match=r"q.json:3: label must be"):
        read_questions(path)


# Italian ---------------------------------------------------------------------------------------

def test_italian_table_covers_coco_with_grammatical_articles():
    table = coco_italian_names()
    assert len(table) == 80
    for en, e in table.items():
        assert set(e) == {"it", "gender", "plural", "article"} and e["gender"] in ("m", "f")
        assert e["article"] == italian_article(e["it"], e["gender"]), en
    assert question_text("dog", "it") == "C'è un cane nell'immagine?"
    assert question_text("backpack", "it") == "C'è uno zaino nell'immagine?"
    assert question_text("orange", "it") == "C'è un'arancia nell'immagine?"
    assert question_text("toothbrush", "it") == "C'è uno spazzolino da denti nell'immagine?"
    assert question_text("airplane", "it") == "C'è un aereo nell'immagine?"
    assert question_text("apple", "en") == "Is there an apple in the image?"
    assert parse_question("C'è un'arancia nell'immagine?") == ("it", "orange")
    with pytest.raises(InputError, match="not in the Italian table"):
        italian_phrase("spaceship")


# Builder ---------------------------------------------------------------------------------------

def _check_guarantees(sets, truth):
    for questions in sets.values():
        for image, qs in _by_image(questions).items():
            gt = truth[_image_id(image)]
            objs = [q["object"] for q in qs]
            assert len(objs) == len(set(objs)), image
            assert sum(q["label"] == "yes" for q in qs) == sum(q["label"] == "no" for q in qs)
            assert all((q["object"] in gt) == (q["label"] == "yes") for q in qs), image


@needs_ref
def test_builder_guarantees_and_rankings_on_shared_objects():
    truth = {k: set(v) for k, v in objects_from_json(REF / "coco_pope_500_objects.json").items()}
    freq = json.loads((REF / "coco_ground_truth_objects.json").read_text())
    co = json.loads((REF / "coco_co_occur.json").read_text())
    sets = build_question_sets(objects_from_json(REF / "coco_pope_500_objects.json"), list(SETTINGS), seed=3, frequency_table=freq, co_occur_table=co)
    assert all(len(s) == 3000 for s in sets.values())
    _check_guarantees(sets, truth)
    ranking = ranking_from_table(freq)
    pops, advs = _by_image(sets["popular"]), _by_image(sets["adversarial"])
    for image, qs in pops.items():
        gt = truth[_image_id(image)]
        assert [q["object"] for q in qs if q["label"] == "no"] == [o for o in ranking if o not in gt][:3]
    for image, qs in advs.items():
        gt, chosen = truth[_image_id(image)], []
        for pos, neg in zip([q["object"] for q in qs if q["label"] == "yes"], [q["object"] for q in qs if q["label"] == "no"]):
            ranked = [o for o in co.get(pos, []) if o not in gt and o not in chosen]
            if ranked:
                assert neg == ranked[0], image
            chosen.append(neg)
    again = build_question_sets(objects_from_json(REF / "coco_pope_500_objects.json"), ["random"], seed=3)
    assert again["random"] == build_question_sets(objects_from_json(REF / "coco_pope_500_objects.json"), ["random"], seed=3)["random"]


@needs_ref
def test_negatives_reproduce_published_sets_from_their_positives():
    """Given the published positives, popular matches exactly; adversarial on every image where a
    co-occurrence list does not run out (where it does, POPE drew at random)."""
    truth = {k: set(v) for k, v in objects_from_json(REF / "coco_pope_500_objects.json").items()}
    ranking = ranking_from_table(json.loads((REF / "coco_ground_truth_objects.json").read_text()))
    co = json.loads((REF / "coco_co_occur.json").read_text())
    vocab = sorted(ranking)
    for setting in ("popular", "adversarial"):
        same = 0
        groups = _by_image(read_questions(REF / f"coco_pope_{setting}.json"))
        for image, qs in groups.items():
            pos = [parse_question(q["text"])[1] for q in qs if q["label"] == "yes"]
            neg = [parse_question(q["text"])[1] for q in qs if q["label"] == "no"]
            same += negatives(setting, truth[_image_id(image)], pos, vocab, ranking, co, random.Random(0)) == neg
        assert same == (500 if setting == "popular" else 497), setting


@needs_ref
def test_computed_frequency_agrees_with_published_table():
    objs = objects_from_json(REF / "coco_pope_500_objects.json")
    freq = json.loads((REF / "coco_ground_truth_objects.json").read_text())
    ours = frequency(objs, list(objs))
    assert ours == freq and sum(ours.values()) == 2164
    assert list(ours.values()) == sorted(ours.values(), reverse=True)


def _coco(tmp_path, n_images=12):
    names = ["dog", "cat", "person", "car", "chair", "cup", "bottle", "bench"]
    rng = random.Random(1)
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"img_{i}.png"})
        for c in rng.sample(range(len(names)), 2 + i % 4):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c + 1})
    inst = tmp_path / "instances.json"
    inst.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}))
    return inst


def test_build_from_coco_instances_cli_both_languages(tmp_path):
    inst = _coco(tmp_path)
    truth, files = objects_from_coco([inst])
    for lang in ("en", "it"):
        out = tmp_path / lang / "pope.json"
        r = CliRunner().invoke(app, ["build", "--annotations", str(inst), "--out", str(out), "--images", "5", "--language", lang, "--seed", "1"])
        assert r.exit_code == 0, r.output
        sets = {s: read_questions(out.with_name(f"pope_{s}.json")) for s in SETTINGS}
        assert all(len(_by_image(s)) == 5 for s in sets.values())
        for s in sets.values():
            for q in s:
                gt = truth[int(q["image"][4:-4])]
                assert (q["object"] in gt) == (q["label"] == "yes")
                assert parse_question(q["text"]) == (lang, q["object"])
    r = CliRunner().invoke(app, ["build", "--annotations", str(inst), "--objects", str(inst), "--out", str(tmp_path / "x.json")])
    assert isinstance(r.exception, InputError)


# Runs with tiny models -------------------------------------------------------------------------

def _dataset(tmp_path, n_images=3):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    rng = random.Random(0)
    objs = ["dog", "cat", "person", "car", "chair", "cup", "bottle", "bench", "orange", "umbrella"]
    truth = {}
    for i in range(n_images):
        Image.new("RGB", (40, 40), (rng.randrange(256), rng.randrange(256), rng.randrange(256))).save(img_dir / f"COCO_val2014_{i:012d}.jpg")
        truth[str(i)] = rng.sample(objs, 4)
    (tmp_path / "objects.json").write_text(json.dumps(truth))
    sets = build_question_sets(objects_from_json(tmp_path / "objects.json"), list(SETTINGS), n_images=n_images, per_image=2)
    qdir = tmp_path / "questions"
    qdir.mkdir()
    for s, qs in sets.items():
        (qdir / f"tiny_pope_{s}.json").write_text("".join(json.dumps(q) + "\r\n" for q in qs))
    return qdir, img_dir


@pytest.mark.parametrize("kind, mode, language", [
    ("llava", "generate", "en"), ("llava", "score", "it"), ("llava_next", "score", "en"), ("llava_next", "generate", "it"),
    ("instructblip-vicuna", "generate", "en"), ("instructblip-flan-t5", "score", "it"),
])
def test_run_tiny_lvlm(tmp_path, tiny, kind, mode, language):
    qdir, img_dir = _dataset(tmp_path)
    out = tmp_path / "run"
    model = "hf:" + str(tiny(kind))
    summary = run_pope(PopeConfig(qdir / "tiny_pope_random.json", img_dir, model, mode=mode, language=language, max_new_tokens=6), out)
    answers = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(answers) == 12 and {a["meta"]["question_id"] for a in answers} == set(range(1, 13))
    assert all(a["prediction"] in ("yes", "no") and set(a) == {"id", "input", "target", "prediction", "raw", "scores", "meta"} for a in answers)
    assert all(a["target"] in ("yes", "no") and set(a["input"]) == {"prompt", "image"} for a in answers)
    if language == "it":
        assert all(a["input"]["prompt"].startswith("C'è ") for a in answers)
    m = json.loads((out / "metrics.json").read_text())["templates"]["random"]["1"]
    assert m["n"] == 12 and m["yes_ratio"] == sum(a["prediction"] == "yes" for a in answers) / 12
    assert summary["random"]["accuracy"] == m["accuracy"]
    if mode == "score":
        assert all(a["prediction"] == ("yes" if a["scores"]["logp_yes"] > a["scores"]["logp_no"] else "no") for a in answers)
        assert 0.0 <= m["auroc"] <= 1.0 and "calibration" in m
    else:
        assert all(a["prediction"] == parse_pope(a["raw"], language) and a["scores"] is None for a in answers)
    assert (out / "report.html").is_file() and (out / "run.json").is_file()
    assert score_pope(run=out)["templates"] == json.loads((out / "metrics.json").read_text())["templates"]
    protocol = json.loads((out / "metrics.json").read_text())["protocol"]  # what made the figures
    assert protocol["answer_tokens"] == (list(CANDIDATES[language]) if mode == "score" else None)
    assert protocol["parser"] == (None if mode == "score" else "pope") and protocol["labels"]["random"]["questions"] == 12
    assert protocol["version"] == "unknown" and protocol["labels"]["random"]["file"] == str(qdir / "tiny_pope_random.json")


def test_run_all_settings_resumes_and_writes_one_table(tmp_path, tiny):
    qdir, img_dir = _dataset(tmp_path, n_images=2)
    out = tmp_path / "run"
    model = "hf:" + str(tiny("llava"))
    run_pope(PopeConfig(qdir, img_dir, model, setting="all", mode="generate", max_new_tokens=4), out)
    first = (out / "records.jsonl").read_text()
    lines = first.splitlines(keepends=True)
    assert len(lines) == 24 and [json.loads(x)["id"] for x in lines[8:10]] == ["popular/1/1", "popular/1/2"]
    # a killed run: keep random and three popular answers, tear the next line, and resume
    (out / "records.jsonl").write_text("".join(lines[:11]) + lines[11][:10])
    run_pope(PopeConfig(qdir, img_dir, model, setting="all", mode="generate", max_new_tokens=4), out)
    assert (out / "records.jsonl").read_text() == first
    report = (out / "report.md").read_text()
    assert all(f"| {s} |" in report for s in SETTINGS)
    metrics_file = json.loads((out / "metrics.json").read_text())
    for s in SETTINGS:
        assert metrics_file["summary"][s]["f1"] == metrics_file["templates"][s]["1"]["f1"]
    assert score_pope(run=out)["summary"] == metrics_file["summary"]  # the records score again without the model
    from annotaudit.core.runs import ConfigMismatch

    with pytest.raises(ConfigMismatch):
        run_pope(PopeConfig(qdir, img_dir, model, setting="all", mode="score"), out)
    with open(qdir / "tiny_pope_popular.json", "a") as fh:  # an edited question file is another input
        fh.write("\n")
    with pytest.raises(ConfigMismatch, match="questions"):
        run_pope(PopeConfig(qdir, img_dir, model, setting="all", mode="generate", max_new_tokens=4), out)


def test_run_cli_prompt_variants_all(tmp_path, tiny):
    qdir, img_dir = _dataset(tmp_path, n_images=2)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--questions", str(qdir / "tiny_pope_adversarial.json"), "--images", str(img_dir),
                                 "--model", "hf:" + str(tiny("llava")), "--out", str(out), "--prompt-variant", "all", "--mode", "score"])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    texts = defaultdict(set)
    for r in records:
        texts[r["meta"]["template"]].add(r["input"]["prompt"].split(" ")[0])
    assert dict(texts) == {1: {"Is"}, 2: {"Does"}, 3: {"Have"}, 4: {"Can"}}
    metrics_file = json.loads((out / "metrics.json").read_text())
    summary = metrics_file["summary"]["adversarial"]
    f1s = [metrics_file["templates"]["adversarial"][str(v)]["f1"] for v in range(1, 5)]
    assert summary["f1"] == pytest.approx(sum(f1s) / 4) and "f1_std" in summary
    assert "±" in (out / "report.md").read_text()


def test_run_missing_image_names_question_line(tmp_path, tiny):
    qdir, img_dir = _dataset(tmp_path, n_images=2)
    next(img_dir.glob("*.jpg")).unlink()
    with pytest.raises(InputError, match=r"tiny_pope_random.json:\d+: image"):
        run_pope(PopeConfig(qdir / "tiny_pope_random.json", img_dir, "hf:" + str(tiny("llava")), batch_images=1), tmp_path / "run")


@pytest.mark.parametrize("option, value, message", [
    ("calibration", 1.5, r"--calibration is the share of images held out to fit the threshold, between 0 and 1 \(got 1.5\)"),
    ("calibration", 0.0, r"--calibration .* \(got 0.0\)"),
    ("batch_images", 0, r"--batch-images must be at least 1 \(got 0\)"),
    ("max_new_tokens", -1, r"--max-new-tokens must be at least 1 \(got -1\)"),
    ("mode", "sample", r"unknown mode 'sample'"),
    ("language", "fr", r"unknown language 'fr'"),
    ("prompt_variant", "5", r"--prompt-variant must be 1..4 or all"),
])
def test_pope_config_refuses_a_bad_value_itself(tmp_path, option, value, message):
    qdir, img_dir = _dataset(tmp_path)
    with pytest.raises(InputError, match=message):
        PopeConfig(qdir / "tiny_pope_random.json", img_dir, "hf:no-model-is-loaded", **{"mode": "score", option: value})
    assert PopeConfig(qdir / "tiny_pope_random.json", img_dir, "hf:no-model-is-loaded", mode="score", calibration=0.5).calibration == 0.5


def test_best_threshold_removes_a_yes_bias():
    scores = [2.0, 2.5, 3.0, 3.5, 0.5, 1.0, 1.2, 0.8]
    labels = ["yes"] * 4 + ["no"] * 4
    cut = best_threshold(scores, labels)
    assert 1.2 < cut < 2.0
    assert all((s > cut) == (y == "yes") for s, y in zip(scores, labels))


def test_captions_objects_join_the_ground_truth(tmp_path):
    inst = _coco(tmp_path)
    data = json.loads(inst.read_text())
    caps = tmp_path / "captions.json"
    caps.write_text(json.dumps({"images": data["images"], "annotations": [
        {"id": 1, "image_id": 1, "caption": "A giraffe standing next to a toaster."}]}))
    plain, _ = objects_from_coco([inst])
    both, files = objects_from_coco([inst], [caps])
    assert set(both[1]) == set(plain[1]) | {"giraffe", "toaster"}
    assert both[2] == plain[2] and files[1] == "img_1.png"
