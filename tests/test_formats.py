"""The formats other projects publish: each written here in its exact layout, read and scored, with alignment checked."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from annotaudit.audit.pope.run import score_pope
from annotaudit.cli.main import app
from annotaudit.core.errors import InputError

REF = Path(__file__).resolve().parents[2] / "shared" / "reference"
POPE, OLD = REF / "pope", REF / "pope" / "e3e3926"
needs_ref = pytest.mark.skipif(not (OLD / "coco_pope_random.json").is_file(), reason="shared/reference/pope/e3e3926 is absent")
SETTINGS = ("adversarial", "popular", "random")
LLAVA_SUFFIX = "\nAnswer the question using a single word or phrase."
REPLIES = {"yes": ["Yes", "Yes.", "Yes, there is a {} in the image."], "no": ["No", "No.", "No, there is no {} in the image."]}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The installed command as a user runs it: bad input is one line and exit code 2."""
    return subprocess.run([sys.executable, "-m", "annotaudit.cli.main", *map(str, args)], capture_output=True, text=True, timeout=300)


def _reply(label: str, obj: str, rng: random.Random, error_rate: float = 0.15) -> str:
    said = label if rng.random() > error_rate else ("no" if label == "yes" else "yes")
    return rng.choice(REPLIES[said]).format(obj)


def _object(text: str) -> str:
    return text.split("Is there ")[1].split(" in the im")[0].split(" ", 1)[1]  # the older files write 'imange' at times


def _reference(labels: list[str], replies: list[str]) -> dict:
    """POPE's rule, written out here independently: first sentence, commas gone, No/not/no among the words means no."""
    preds = ["no" if {"No", "not", "no"} & set(r.split(".")[0].replace(",", "").split(" ")) else "yes" for r in replies]
    tp = sum(p == "yes" and y == "yes" for p, y in zip(preds, labels))
    fp = sum(p == "yes" and y == "no" for p, y in zip(preds, labels))
    tn = sum(p == "no" and y == "no" for p, y in zip(preds, labels))
    fn = sum(p == "no" and y == "yes" for p, y in zip(preds, labels))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"accuracy": (tp + tn) / len(labels), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall), "yes_ratio": (tp + fp) / len(labels), "n": len(labels)}


def _llava_layout(root: Path, labels_from: dict[str, Path]) -> tuple[Path, Path, Path, dict]:
    """LLaVA's eval layout: pope/coco/ (the label files), pope/llava_pope_test.jsonl, pope/answers/<model>.jsonl.

    The question file lists each setting's questions in its label file's order, with ids running over the whole file
    and the answer-format line LLaVA-1.5 appends; the answers are LLaVA's model_vqa_loader lines."""
    coco = root / "pope" / "coco"
    coco.mkdir(parents=True)
    for setting in SETTINGS:
        shutil.copy(labels_from[setting], coco / f"coco_pope_{setting}.json")
    questions, answers, expected = [], [], {}
    rng = random.Random(0)
    for setting in SETTINGS:
        rows = _lines(OLD / f"coco_pope_{setting}.json")
        replies = []
        for q in rows:
            qid = len(questions)
            questions.append({"question_id": qid, "image": q["image"], "text": q["text"] + LLAVA_SUFFIX, "category": setting})
            replies.append(_reply(q["label"], _object(q["text"]), rng))
            answers.append({"question_id": qid, "prompt": q["text"] + LLAVA_SUFFIX, "text": replies[-1], "answer_id": f"a{qid:05d}",
                            "model_id": "llava-v1.5-13b", "metadata": {}})
        expected[setting] = _reference([q["label"] for q in rows], replies)
    qfile = _write_jsonl(root / "pope" / "llava_pope_test.jsonl", questions)
    (root / "pope" / "answers").mkdir()
    afile = _write_jsonl(root / "pope" / "answers" / "llava-v1.5-13b.jsonl", answers)
    return qfile, coco, afile, expected


# LLaVA's layout ------------------------------------------------------------------------------

@needs_ref
def test_llava_layout_scores_in_one_command_per_setting_and_mean_f1(tmp_path):
    qfile, coco, afile, expected = _llava_layout(tmp_path, {s: OLD / f"coco_pope_{s}.json" for s in SETTINGS})
    assert sum(1 for _ in qfile.open()) == 3000 + 3000 + 2910
    out = tmp_path / "scored"
    res = _cli("audit", "pope", "score", "--questions", qfile, "--labels", coco, "--answers", afile, "--out", out)
    assert res.returncode == 0, res.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for setting in SETTINGS:
        for key, value in expected[setting].items():
            assert metrics["summary"][setting].get(key, metrics["templates"][setting]["1"].get(key)) == pytest.approx(value), (setting, key)
    mean = sum(expected[s]["f1"] for s in SETTINGS) / 3
    assert metrics["mean_f1"] == pytest.approx(mean)
    assert f"mean F1 over settings: {100 * mean:.2f}" in res.stdout
    assert metrics["alignment"]["verified"] and metrics["alignment"]["fields"] == ["image", "object"] or metrics["alignment"]["fields"] == ["object"]
    assert "alignment verified" in res.stdout
    assert "Mean F1 over the settings" in (out / "report.md").read_text()
    records = _lines(out / "records.jsonl")
    assert len(records) == 8910 and records[0]["meta"]["label_line"] == 1


@needs_ref
def test_llava_answers_against_todays_random_file_are_refused(tmp_path):
    labels = {s: OLD / f"coco_pope_{s}.json" for s in SETTINGS} | {"random": POPE / "coco_pope_random.json"}
    qfile, coco, afile, _ = _llava_layout(tmp_path, labels)
    with pytest.raises(InputError) as err:
        score_pope(questions=qfile, labels=coco, answers=afile, out=tmp_path / "x")
    msg = str(err.value)
    first_random_line = 3000 + 3000 + 1
    old, new = _lines(OLD / "coco_pope_random.json"), _lines(POPE / "coco_pope_random.json")
    k = next(i for i, (a, b) in enumerate(zip(old, new)) if (a["image"], _object(a["text"])) != (b["image"], _object(b["text"])))
    disagree = sum((a["image"], _object(a["text"])) != (b["image"], _object(b["text"])) for a, b in zip(old, new))
    assert f"llava_pope_test.jsonl:{first_random_line + k}" in msg and f"coco_pope_random.json:{k + 1} " in msg
    assert f"{disagree:,} of 2,910 pairs disagree" in msg and "has 2910 random questions and coco_pope_random.json has 3000 lines" in msg
    assert not (tmp_path / "x" / "metrics.json").exists()
    res = _cli("audit", "pope", "score", "--questions", qfile, "--labels", coco, "--answers", afile, "--out", tmp_path / "y")
    assert res.returncode == 2 and "do not align" in res.stderr and "Traceback" not in res.stderr


@needs_ref
def test_pope_answers_by_question_id_against_another_version_are_refused(tmp_path):
    """Ids 1..2910 exist in both random files, so only the image and the object show the answers belong to the old one."""
    old = _lines(OLD / "coco_pope_random.json")
    answers = _write_jsonl(tmp_path / "answers.jsonl", [{"question_id": q["question_id"], "question": q["text"], "answer": "Yes"} for q in old])
    assert score_pope(questions=OLD / "coco_pope_random.json", answers=answers)["alignment"]["verified"]
    new = _lines(POPE / "coco_pope_random.json")
    k = next(i for i, (a, b) in enumerate(zip(old, new)) if (a["image"], _object(a["text"])) != (b["image"], _object(b["text"])))
    with pytest.raises(InputError, match=rf"pairs disagree; first: .*answers.jsonl:{k + 1} \(.*\) against .*coco_pope_random.json:{k + 1} "):
        score_pope(questions=POPE / "coco_pope_random.json", answers=answers)


def test_answers_without_any_shared_field_say_alignment_unverified(tmp_path):
    q = _write_jsonl(tmp_path / "q.json", [{"question_id": k, "image": f"{k}.jpg", "text": "Is there a dog in the image?", "label": "yes"} for k in range(3)])
    a = _write_jsonl(tmp_path / "a.jsonl", [{"answer": "Yes"} for _ in range(3)])
    res = CliRunner().invoke(app, ["audit", "pope", "score", "--questions", str(q), "--answers", str(a), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "alignment unverified" in res.output
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["alignment"]["verified"] is False
    assert "alignment unverified" in (tmp_path / "o" / "report.md").read_text()


# lmms-eval, VLMEvalKit, concatenated JSON --------------------------------------------------------

def _pope_sample(rows: list[dict], setting: str, rng: random.Random) -> tuple[list[dict], dict]:
    """lmms-eval's --log_samples lines of its pope task (doc without the image, as lmms-eval saves it)."""
    out, replies = [], []
    for k, q in enumerate(rows):
        reply = _reply(q["label"], _object(q["text"]), rng)
        replies.append(reply)
        doc = {"id": str(k), "question_id": str(q["question_id"]), "question": q["text"], "answer": q["label"],
               "image_source": q["image"].rsplit(".", 1)[0], "category": setting}
        scored = {"question_id": doc["question_id"], "score": float(reply.lower().strip() == q["label"]), "prediction": reply.lower().strip(),
                  "ground_truth": q["label"]}
        out.append({"doc_id": k, "doc": doc, "target": q["label"], "arguments": [[q["text"] + LLAVA_SUFFIX, {"max_new_tokens": 128}]],
                    "resps": [[reply]], "filtered_resps": [reply], "doc_hash": "h", "prompt_hash": "p", "target_hash": "t",
                    **{f"pope_{m}": scored for m in ("accuracy", "precision", "recall", "f1_score", "yes_ratio")}})
    return out, _reference([q["label"] for q in rows], replies)


@needs_ref
def test_lmms_eval_pope_samples_score_on_their_own_labels(tmp_path):
    rng, samples, expected = random.Random(1), [], {}
    for setting in SETTINGS:
        rows, expected[setting] = _pope_sample(_lines(POPE / f"coco_pope_{setting}.json")[:300], setting, rng)
        samples += rows
    jsonl = _write_jsonl(tmp_path / "20240101_samples_pope.jsonl", samples)
    res = _cli("audit", "pope", "score", "--answers", jsonl, "--out", tmp_path / "a")
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    for setting in SETTINGS:
        assert metrics["summary"][setting]["f1"] == pytest.approx(expected[setting]["f1"])
        assert metrics["templates"][setting]["1"]["n"] == 300
    assert metrics["mean_f1"] == pytest.approx(sum(e["f1"] for e in expected.values()) / 3)
    # the older layout: one JSON per task holding {"args": ..., "logs": [...]}; against the question file too
    logs = tmp_path / "pope.json"
    logs.write_text(json.dumps({"args": {"tasks": "pope"}, "logs": samples[:300]}, indent=2))
    ours = score_pope(answers=logs)
    assert ours["summary"]["adversarial"]["f1"] == pytest.approx(expected["adversarial"]["f1"])
    assert ours["alignment"]["message"].startswith("labels read from the answers file itself (lmms-eval)")


def _vlmevalkit_rows(n_per_setting: int = 40) -> tuple[list[dict], dict[str, tuple[list[str], list[str]]]]:
    """VLMEvalKit's POPE sheet: one row per distinct question, category 'popular,random' when it is in both settings."""
    rng = random.Random(2)
    by_key: dict[tuple, dict] = {}
    for setting in SETTINGS:
        for q in _lines(POPE / f"coco_pope_{setting}.json")[:n_per_setting]:
            key = (q["image"], q["text"])
            if key not in by_key:
                by_key[key] = {"index": len(by_key), "question": q["text"], "answer": q["label"].capitalize(), "category": setting,
                               "image_path": q["image"], "prediction": _reply(q["label"], _object(q["text"]), rng)}
            else:
                by_key[key]["category"] += "," + setting
    truth: dict[str, tuple[list[str], list[str]]] = {s: ([], []) for s in SETTINGS}
    for row in by_key.values():
        for s in row["category"].split(","):
            truth[s][0].append(row["answer"].lower())
            truth[s][1].append(row["prediction"])
    return list(by_key.values()), truth


@needs_ref
@pytest.mark.parametrize("suffix", ["xlsx", "tsv"])
def test_vlmevalkit_sheets_count_a_shared_question_in_each_setting(tmp_path, suffix):
    import pandas

    rows, truth = _vlmevalkit_rows()
    assert any("," in r["category"] for r in rows)
    sheet = tmp_path / f"llava_v1.5_7b_POPE.{suffix}"
    frame = pandas.DataFrame(rows)
    if suffix == "xlsx":
        frame.to_excel(sheet, index=False)
    else:
        frame.to_csv(sheet, sep="\t", index=False)
    result = score_pope(answers=sheet, out=tmp_path / "o")
    for setting, (labels, preds) in truth.items():
        ref = _reference(labels, preds)
        assert result["templates"][setting]["1"]["n"] == ref["n"] == 40
        assert result["summary"][setting]["f1"] == pytest.approx(ref["f1"])


def test_concatenated_pretty_printed_answers_score(tmp_path):
    q = _write_jsonl(tmp_path / "q.json", [{"question_id": k, "image": f"COCO_val2014_{k:012d}.jpg", "text": f"Is there a {o} in the image?", "label": lab}
                                           for k, (o, lab) in enumerate([("dog", "yes"), ("cat", "no"), ("car", "yes"), ("bus", "no")])])
    answers = tmp_path / "answers.json"
    answers.write_text("".join(json.dumps({"question_id": k, "question": f"Is there a {o} in the image?", "answer": a}, indent=4) + "\n"
                               for k, (o, a) in enumerate([("dog", "Yes"), ("cat", "No"), ("car", "No"), ("bus", "No")])))
    res = _cli("audit", "pope", "score", "--questions", q, "--answers", answers, "--out", tmp_path / "o")
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())["templates"]["q"]["1"]
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (1, 1, 2, 0)
    assert "alignment verified" in res.stdout


def test_reading_no_answers_exits_2_and_names_the_formats_tried(tmp_path):
    q = _write_jsonl(tmp_path / "q.json", [{"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "label": "yes"}])
    empty = tmp_path / "answers.jsonl"
    empty.write_text("\n\n")
    res = _cli("audit", "pope", "score", "--questions", q, "--answers", empty, "--out", tmp_path / "o")
    assert res.returncode == 2 and "no answers read; formats tried:" in res.stderr and "lmms-eval" in res.stderr and "VLMEvalKit" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    captions = tmp_path / "captions.json"
    captions.write_text("[]")
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"1": ["dog"]}))
    res = _cli("audit", "chair", "score", "--captions", captions, "--ground-truth", gt, "--out", tmp_path / "c")
    assert res.returncode == 2 and "no captions read; formats tried:" in res.stderr and "coco_cap_chair" in res.stderr
    data = tmp_path / "data.jsonl"
    data.write_text("")
    res = _cli("annotate", "run", "--task", "hateful_memes", "--data", tmp_path / "none.parquet", "--model", "x", "--out", tmp_path / "r")
    assert res.returncode == 2
    from annotaudit.annotate.readers import read_generic

    with pytest.raises(InputError, match="no records read; formats tried: JSON Lines.*parquet"):
        read_generic(data)


# CHAIR ---------------------------------------------------------------------------------------

def test_concatenated_caption_objects_score_in_chair(tmp_path):
    captions = tmp_path / "captions.json"
    rows = [{"image_id": 1, "caption": "A dog sits on a couch next to a cat."}, {"image_id": 2, "caption": "A man rides a horse."}]
    captions.write_text("".join(json.dumps(r, indent=2) + "\n" for r in rows))
    assert captions.read_text().count("\n") > 6  # pretty-printed: neither JSON Lines nor one JSON list
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"1": ["dog", "couch"], "2": ["person", "horse"]}))
    res = _cli("audit", "chair", "score", "--captions", captions, "--ground-truth", gt, "--out", tmp_path / "o")
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert (metrics["n_captions"], metrics["n_mentions"], metrics["n_hallucinated"], metrics["chair_s"]) == (2, 5, 1, 0.5)
    records = _lines(tmp_path / "o" / "records.jsonl")
    assert [r["scores"]["hallucinated"] for r in records] == [[["cat", "cat"]], []]


def test_lmms_eval_coco_cap_chair_samples_carry_their_ground_truth(tmp_path):
    samples = []
    for k, (image_id, caption, truth) in enumerate([(397133, "A man and a dog stand by a car.", ["person", "dog"]),
                                                   (37777, "A kitchen with an oven and a sink.", ["oven", "sink", "refrigerator"])]):
        doc = {"question_id": str(image_id), "gt_object": truth, "answer": truth}
        scored = {"answer": truth, "pred": [], "image_id": image_id}
        samples.append({"doc_id": k, "doc": doc, "target": truth, "arguments": [["Please describe this image in detail.", {}]],
                        "resps": [[caption]], "filtered_resps": [caption], "coco_cap_chair_i": scored, "coco_cap_chair_s": scored})
    log = _write_jsonl(tmp_path / "samples_coco_cap_chair.jsonl", samples)
    res = _cli("audit", "chair", "score", "--captions", log, "--out", tmp_path / "o")
    assert res.returncode == 0, res.stderr
    records = _lines(tmp_path / "o" / "records.jsonl")
    assert [r["meta"]["image_id"] for r in records] == [397133, 37777]
    assert [[c for _, c in r["scores"]["hallucinated"]] for r in records] == [["car"], []]
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["chair_s"] == 0.5


# Hub parquet -----------------------------------------------------------------------------------

def _png(color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def _parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow
    import pyarrow.parquet

    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return path


@needs_ref
def test_hub_pope_parquet_scores_with_ids_repeating_across_settings(tmp_path):
    rows, answers, rng, expected = [], [], random.Random(3), {}
    for setting in ("adversarial", "random"):
        labels, replies = [], []
        for q in _lines(POPE / f"coco_pope_{setting}.json")[:60]:
            rows.append({"id": str(len(rows)), "question_id": str(q["question_id"]), "question": q["text"], "answer": q["label"],
                         "image_source": q["image"].rsplit(".", 1)[0], "image": {"bytes": _png("red"), "path": None}, "category": setting})
            replies.append(_reply(q["label"], _object(q["text"]), rng))
            labels.append(q["label"])
            answers.append({"question_id": str(q["question_id"]), "category": setting, "image": q["image"], "prompt": q["text"], "text": replies[-1]})
        expected[setting] = _reference(labels, replies)
    hub = _parquet(tmp_path / "test-00000-of-00003.parquet", rows)
    afile = _write_jsonl(tmp_path / "answers.jsonl", answers)
    result = score_pope(questions=hub, answers=afile, out=tmp_path / "o")
    assert {s: result["summary"][s]["f1"] for s in expected} == pytest.approx({s: e["f1"] for s, e in expected.items()})
    assert result["alignment"]["fields"] == ["setting", "image", "object"]
    swapped = [{**a, "category": "random" if a["category"] == "adversarial" else "adversarial"} for a in answers]
    adv, rnd = (_lines(POPE / f"coco_pope_{s}.json")[:60] for s in ("adversarial", "random"))
    k = next(i for i, (a, b) in enumerate(zip(adv, rnd)) if _object(a["text"]) != _object(b["text"]))  # both settings open alike
    with pytest.raises(InputError, match=rf"swapped.jsonl:{61 + k} \(object .*\) against .*test-00000-of-00003.parquet:{k + 1} "):
        score_pope(questions=hub, answers=_write_jsonl(tmp_path / "swapped.jsonl", swapped))
    from annotaudit.audit.pope.formats import parquet_images

    names = parquet_images(hub, tmp_path / "images")
    assert len(names) == 120 and Image.open(tmp_path / "images" / names[1]).size == (8, 8)


def test_hub_pope_parquet_runs_a_model_on_its_embedded_images(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("ANNOTAUDIT_CACHE", str(tmp_path / "cache"))
    rows = []
    for setting in ("adversarial", "popular"):
        for i, (colour, obj, label) in enumerate([("red", "dog", "yes"), ("red", "cat", "no"), ("blue", "car", "yes"), ("blue", "cup", "no")]):
            rows.append({"question_id": str(i + 1), "question": f"Is there a {obj} in the image?", "answer": label, "category": setting,
                         "image_source": f"COCO_val2014_{colour}", "image": {"bytes": _png(colour), "path": None}})
    hub = _parquet(tmp_path / "test-00000-of-00001.parquet", rows)
    res = _cli("audit", "pope", "run", "--questions", hub, "--setting", "all", "--model", f"hf:{tiny('llava')}", "--max-new-tokens", "3",
               "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr[-2000:]
    records = _lines(tmp_path / "run" / "records.jsonl")
    assert [r["meta"]["setting"] for r in records] == ["adversarial"] * 4 + ["popular"] * 4
    assert {r["input"]["image"] for r in records} == {"COCO_val2014_red.jpg", "COCO_val2014_blue.jpg"}
    folder = Path(json.loads((tmp_path / "run" / "run.json").read_text())["config"]["images"])
    assert folder.parent.parent == tmp_path / "cache" and Image.open(folder / "COCO_val2014_blue.jpg").getpixel((0, 0)) == (0, 0, 255)
    one = _cli("audit", "pope", "run", "--questions", hub, "--setting", "random", "--model", f"hf:{tiny('llava')}", "--out", tmp_path / "r2")
    assert one.returncode == 2 and "no questions of setting 'random'" in one.stderr and "adversarial, popular" in one.stderr


def test_hub_xnli_parquet_annotates_one_language_config(tmp_path, monkeypatch):
    from annotaudit.annotate.readers import read_xnli

    folder = tmp_path / "fr"
    folder.mkdir()
    rows = [{"premise": "Il pleut.", "hypothesis": "Le sol est mouillé.", "label": 0},
            {"premise": "Il pleut.", "hypothesis": "Il fait sec.", "label": 2},
            {"premise": "Il pleut.", "hypothesis": "Il est midi.", "label": 1}]
    path = _parquet(folder / "test-00000-of-00001.parquet", rows)
    items = read_xnli(path, ["fr"])
    assert [(i.id, i.label) for i in items] == [("fr-test-00000-of-00001-1", "entailment"), ("fr-test-00000-of-00001-2", "contradiction"),
                                               ("fr-test-00000-of-00001-3", "neutral")]
    assert items[1].meta["hypothesis"] == "Il fait sec." and items[0].text.startswith("Premise: Il pleut.")
    with pytest.raises(InputError, match="no rows in language 'en'"):
        read_xnli(path, ["en"])


def test_hub_hateful_memes_parquet_images_become_files(tmp_path, monkeypatch, tiny):
    from annotaudit.annotate.readers import read_hateful_memes
    from annotaudit.annotate.run import RunConfig, run

    monkeypatch.setenv("ANNOTAUDIT_CACHE", str(tmp_path / "cache"))
    rows = [{"id": 42953 + k, "img": {"bytes": _png(c), "path": f"img/{42953 + k}.png"}, "text": t, "label": lab}
            for k, (c, t, lab) in enumerate([("red", "its their character not their color that matters", 0),
                                             ("blue", "don't be afraid to love again", 1), ("green", "putting bows on your pet", 0)])]
    data = tmp_path / "data"
    data.mkdir()
    _parquet(data / "dev_seen-00000-of-00001.parquet", rows)
    items = read_hateful_memes(tmp_path, split="dev_seen")
    assert [(i.id, i.label) for i in items] == [("42953", "not_hateful"), ("42954", "hateful"), ("42955", "not_hateful")]
    assert all(i.image.is_file() and i.image.is_relative_to(tmp_path / "cache") for i in items)
    assert Image.open(items[1].image).getpixel((0, 0)) == (0, 0, 255)
    metrics = run(RunConfig(task="hateful_memes", data=str(tmp_path), split="dev_seen", model=f"hf:{tiny('llava')}", mode="score", batch_size=3),
                  tmp_path / "out")
    records = _lines(tmp_path / "out" / "records.jsonl")
    assert len(records) == 3 and all(Path(r["input"]["image"]).is_file() for r in records)
    assert metrics


def test_vqa_parquet_keeps_lists_and_embedded_images(tmp_path):
    """MTVQA's question-answer pairs and GQA's answer lists come out of a hub parquet as lists, not as one string."""
    from annotaudit.lvlm.evaluate import _open_image, load_task

    image = {"bytes": _png("blue"), "path": "m1.png"}
    pairs = _parquet(tmp_path / "mtvqa.parquet", [{"id": "m1", "image": image, "qa_pairs": [{"question": "Di che colore è?", "answer": "blu"},
                                                                                             {"question": "Quanti lati ha?", "answer": "quattro"}]}])
    assert [(i["id"], i["question"], i["answer"]) for i in load_task(str(pairs))] == [("m1-0", "Di che colore è?", "blu"), ("m1-1", "Quanti lati ha?", "quattro")]
    answers = _parquet(tmp_path / "gqa.parquet", [{"question_id": "q1", "image": image, "question": "Di che colore è?", "answers": ["blu", "azzurro"]}])
    [item] = load_task(str(answers))
    assert item["answer"] == ["blu", "azzurro"] and _open_image(item["image"], None, "q1").getpixel((0, 0)) == (0, 0, 255)
    (tmp_path / "broken.parquet").write_text("not a table")
    with pytest.raises(InputError, match=r"broken.parquet: not a readable parquet file"):
        load_task(str(tmp_path / "broken.parquet"))
