"""CHAIR: fidelity to the reference numbers, English and Italian object extraction, ground truth,
caption formats, bad input, and `audit chair run` with a tiny LLaVA-NeXT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from annotaudit.audit.chair.metric import (
    build_ground_truth,
    extract_objects,
    load_ground_truth,
    read_captions,
    score_captions,
    write_ground_truth,
)
from annotaudit.audit.chair.words import english_vocabulary, singularize
from annotaudit.cli.main import app
from annotaudit.core.errors import InputError
from annotaudit.core.io import Problems
from annotaudit.core.runs import ConfigMismatch

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "chair"
needs_ref = pytest.mark.skipif(not (REF / "opera_llava-1.5_greedy.jsonl").is_file(), reason="shared reference data not present")
runner = CliRunner()


def cats(caption: str, **kw) -> list[str]:
    return [c for _, c in extract_objects(caption, **kw)]


# Fidelity ------------------------------------------------------------------------------------------

@needs_ref
def test_opera_llava_within_one_point_of_both_reference_rows():
    truth = load_ground_truth(REF / "opera_500_objects.json")
    metrics, details = score_captions(read_captions(REF / "opera_llava-1.5_greedy.jsonl"), truth)
    assert metrics["n_captions"] == 500 and len(details) == 500
    for chair_s, chair_i in ((45.0, 12.8), (44.8, 12.7)):  # pattern row, WordNet row
        assert abs(100 * metrics["chair_s"] - chair_s) <= 1.0
        assert abs(100 * metrics["chair_i"] - chair_i) <= 1.0
    assert 3700 <= metrics["n_mentions"] <= 3800 and 460 <= metrics["n_hallucinated"] <= 500


@needs_ref
def test_fix_quirks_is_a_switch_that_counts_buses():
    truth = load_ground_truth(REF / "opera_500_objects.json")
    caps = read_captions(REF / "opera_llava-1.5_greedy.jsonl")
    ref, _ = score_captions(caps, truth)
    fixed, _ = score_captions(caps, truth, fix_quirks=True)
    assert fixed["fix_quirks"] and not ref["fix_quirks"]
    assert fixed["n_mentions"] > ref["n_mentions"]  # every singular "bus" is found


@needs_ref
def test_english_table_names_the_same_objects_as_the_reference_list():
    ref = {}
    for line in (REF / "synonyms.txt").read_text().splitlines():
        words = line.strip().split(", ")
        for w in words:
            if w == w.strip() and w == w.lower():  # entries with a leading space or capitals never match
                ref[w] = words[0]
    assert english_vocabulary() == ref


# English extraction --------------------------------------------------------------------------------

def test_two_word_phrases_are_merged_before_matching():
    assert cats("A hot dog, two teddy bears, a stop sign and a traffic light.") == ["hot dog", "teddy bear", "stop sign", "traffic light"]
    assert cats("A baby elephant beside an adult giraffe.") == ["elephant", "giraffe"]  # not person
    assert cats("A passenger train next to a passenger jet.") == ["train", "airplane"]
    assert cats("A man wears a bow tie.") == ["person", "tie"]
    assert cats("The toilet seat is up.") == ["toilet"]
    assert cats("A toilet with its seat open.") == ["toilet"]  # seat is no chair beside a toilet
    assert cats("A chair with a soft seat.") == ["chair", "chair"]
    assert cats("Train tracks near home plate.") == []  # neither is a train


def test_plurals_are_singularized_like_the_reference():
    assert cats("Women, children and people with knives, mice and geese.") == ["person", "person", "person", "knife", "mouse", "bird"]
    assert singularize("buses") == "bus" and singularize("glasses") == "glass"
    assert singularize("bus") == "bu" and singularize("bus", fix_quirks=True) == "bus"
    assert cats("A red bus and two wine glasses.") == ["wine glass"]  # the reference misses the singular bus
    assert cats("A red bus and two wine glasses.", fix_quirks=True) == ["bus", "wine glass"]
    assert cats("Two buses.") == ["bus"]


def test_mentions_keep_the_caption_words_and_repeats():
    assert extract_objects("A dog chases another dog; the puppies watch.") == [("dog", "dog"), ("dog", "dog"), ("puppies", "dog")]


# Italian -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "caption, expected",
    [
        ("Un orsacchiotto accanto a un idrante e a un semaforo.", ["teddy bear", "fire hydrant", "traffic light"]),
        ("Due ragazze giocano con una mazza da baseball e un guantone da baseball.", ["person", "baseball bat", "baseball glove"]),
        ("Una tavola da surf appoggiata al tavolo della cucina.", ["surfboard", "dining table"]),
        ("Un cucciolo di elefante e due elefanti adulti vicino alle giraffe.", ["elephant", "elephant", "giraffe"]),
        ("Sul divano c'è una macchina fotografica; fuori un'auto arancione.", ["couch", "car"]),  # a camera is no car; arancione is no orange
        ("In bagno: la tazza del water, il lavandino e uno spazzolino da denti.", ["toilet", "sink", "toothbrush"]),
        ("Dei gabbiani volano sopra le barche a vela e un traghetto.", ["bird", "boat", "boat"]),  # gabbiani via simplemma
        ("Una donna con l'ombrello parla al cellulare vicino a una pianta in vaso.", ["person", "umbrella", "cell phone", "potted plant"]),
        ("Un forno a microonde sopra il forno, e un orologio da polso.", ["microwave", "oven"]),
        ("Tre arance e una mela in una ciotola.", ["orange", "apple", "bowl"]),
    ],
)
def test_italian_objects(caption, expected):
    assert cats(caption, language="it") == expected


def test_italian_captions_are_scored_against_coco_ground_truth(tmp_path):
    truth = {1: {"person", "dog", "bench"}, 2: {"pizza", "dining table"}}
    captions = tmp_path / "it.jsonl"
    captions.write_text(
        json.dumps({"image_id": 1, "caption": "Un uomo seduto su una panchina accarezza il suo cane."}) + "\n"
        + json.dumps({"image_id": 2, "caption": "Una pizza sul tavolo accanto a un bicchiere da vino e una forchetta."}) + "\n",
        encoding="utf-8",
    )
    metrics, records = score_captions(read_captions(captions), truth, language="it")
    assert metrics["n_mentions"] == 7 and metrics["n_hallucinated"] == 2
    assert metrics["chair_s"] == 0.5 and metrics["chair_i"] == pytest.approx(2 / 7)
    assert metrics["recall"] == pytest.approx(5 / 5)
    assert records[1]["scores"]["hallucinated"] == [["bicchiere da vino", "wine glass"], ["forchetta", "fork"]]


# Ground truth --------------------------------------------------------------------------------------

def _coco(tmp_path: Path) -> tuple[Path, Path]:
    inst = {
        "images": [{"id": 1}, {"id": 2}, {"id": 3}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 62, "name": "chair"}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 18}, {"id": 11, "image_id": 2, "category_id": 1}, {"id": 12, "image_id": 2, "category_id": 62}],
    }
    caps = {"annotations": [{"image_id": 1, "caption": "A puppy on a sofa."}, {"image_id": 2, "caption": "A man on a chair."}]}
    (tmp_path / "instances.json").write_text(json.dumps(inst))
    (tmp_path / "captions.json").write_text(json.dumps(caps))
    return tmp_path / "instances.json", tmp_path / "captions.json"


def test_ground_truth_joins_instances_and_caption_objects(tmp_path):
    inst, caps = _coco(tmp_path)
    truth = build_ground_truth([inst], [caps])
    assert truth == {1: {"dog", "couch"}, 2: {"person", "chair"}, 3: set()}
    assert build_ground_truth(inst, []) == {1: {"dog"}, 2: {"person", "chair"}, 3: set()}
    gt = write_ground_truth(truth, tmp_path / "gt.json")
    assert load_ground_truth(gt) == truth


def test_ground_truth_bad_category_names_the_file_and_item(tmp_path):
    inst, _ = _coco(tmp_path)
    data = json.loads(inst.read_text())
    data["annotations"].append({"id": 99, "image_id": 1, "category_id": 5})
    inst.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"instances.json: item 99"):
        build_ground_truth([inst])
    (tmp_path / "gt.json").write_text(json.dumps({"1": ["dog", "unicorn"]}))
    with pytest.raises(InputError, match=r"gt.json: item 1: not COCO categories: unicorn"):
        load_ground_truth(tmp_path / "gt.json")


def test_build_gt_command(tmp_path):
    inst, caps = _coco(tmp_path)
    out = tmp_path / "gt.json"
    res = runner.invoke(app, ["audit", "chair", "build-gt", "--instances", str(inst), "--captions", str(caps), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text()) == {"1": ["couch", "dog"], "2": ["chair", "person"], "3": []}


# Caption formats and bad input ---------------------------------------------------------------------

@pytest.fixture
def gt(tmp_path) -> Path:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"1": ["dog", "person"], "2": ["cat"], "310196": ["snowboard", "person"]}))
    return path


def test_score_json_list_and_pope_style_with_image_map(tmp_path, gt):
    listed = tmp_path / "results.json"
    listed.write_text(json.dumps([{"image_id": 1, "caption": "A man and his dog."}, {"image_id": "2", "caption": "A cat on a bed."}]))
    res = runner.invoke(app, ["audit", "chair", "score", "--captions", str(listed), "--ground-truth", str(gt), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert (m["n_captions"], m["n_mentions"], m["n_hallucinated"], m["chair_s"]) == (2, 4, 1, 0.5)
    assert m["mean_length"] == pytest.approx(5.0)
    records = [json.loads(x) for x in (tmp_path / "a" / "records.jsonl").read_text().splitlines()]
    assert records[1]["scores"]["hallucinated"] == [["bed", "bed"]] and records[1]["target"] == ["cat"]
    assert (tmp_path / "a" / "report.html").is_file()

    pope = tmp_path / "answers.jsonl"
    pope.write_text('{"question_id": 7, "text": "A snowboarder with a snowboard and a dog."}\n')
    qmap = tmp_path / "questions.jsonl"
    qmap.write_text('{"question_id": 7, "image": "COCO_val2014_000000310196.jpg", "text": "Describe."}\n')
    res = runner.invoke(app, ["audit", "chair", "score", "--captions", str(pope), "--image-map", str(qmap), "--ground-truth", str(gt), "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert (m["n_captions"], m["n_mentions"], m["n_hallucinated"]) == (1, 3, 1)


def _bad_file(tmp_path: Path) -> Path:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"image_id": 1, "caption": "A dog."}\n'
        '{"image_id": 1, "caption": "A cat\n'  # malformed: line 2
        '{"image_id": 999, "caption": "A dog."}\n'  # unknown image: line 3
        '{"image_id": 2, "caption": "   "}\n'  # empty caption: line 4
    )
    return bad


def test_bad_lines_are_reported_with_their_line_and_skipped(tmp_path, gt):
    problems = Problems()
    caps = read_captions(_bad_file(tmp_path), problems=problems)
    metrics, _ = score_captions(caps, load_ground_truth(gt), problems=problems, source="bad.jsonl")
    msgs = problems.messages()
    assert any("bad.jsonl:2: malformed JSON" in m for m in msgs)
    assert any("bad.jsonl:3: image id 999 is not in the ground truth" in m for m in msgs)
    assert any("bad.jsonl:4: empty caption" in m for m in msgs)
    assert metrics["n_captions"] == 2  # the good line and the empty caption, which names nothing


def test_strict_mode_is_fatal_and_leaves_earlier_results_alone(tmp_path, gt):
    out = tmp_path / "out"
    good = tmp_path / "good.jsonl"
    good.write_text('{"image_id": 1, "caption": "A dog."}\n')
    assert runner.invoke(app, ["audit", "chair", "score", "--captions", str(good), "--ground-truth", str(gt), "--out", str(out)]).exit_code == 0
    before = (out / "metrics.json").read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "annotaudit.cli.main", "audit", "chair", "score", "--captions", str(_bad_file(tmp_path)), "--ground-truth", str(gt), "--out", str(out), "--strict"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 2
    assert "bad.jsonl:2: malformed JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "metrics.json").read_text() == before


# audit chair run -----------------------------------------------------------------------------------

def test_run_with_tiny_llava_next_scores_per_prompt_and_resumes(tmp_path, tiny):
    images = tmp_path / "val2014"
    images.mkdir()
    colours = {139: (200, 30, 30), 285: (30, 200, 30), 632: (30, 30, 200)}
    for image_id, colour in colours.items():
        Image.new("RGB", (48, 40), colour).save(images / f"COCO_val2014_{image_id:012d}.jpg")
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"139": ["person", "tv"], "285": ["bear"], "632": ["bed", "book"], "7": ["cat"]}))
    out = tmp_path / "run"
    args = [
        "audit", "chair", "run", "--model", f"hf:{tiny('llava_next')}", "--images", str(images), "--sample", "3", "--seed", "1",
        "--prompt-set", "I1,I2", "--max-new-tokens", "6", "--batch-size", "2", "--ground-truth", str(gt), "--out", str(out),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert sorted((r["meta"]["prompt_id"], r["meta"]["image_id"]) for r in records) == sorted((p, i) for p in ("I1", "I2") for i in colours)
    assert {r["input"]["prompt"] for r in records} == {"Generate a short caption of the image.", "Provide a brief description of the given image."}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_captions"] == 6 and set(metrics["by_prompt"]) == {"I1", "I2"}
    assert all(m["n_captions"] == 3 for m in metrics["by_prompt"].values())
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["config"]["prompts"]["I1"] == "Generate a short caption of the image." and manifest["sessions"]

    # Stop mid-way: two whole records and a torn third remain; the rerun regenerates the rest, identically.
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    (out / "records.jsonl").write_text("".join(lines[:2]) + lines[2][:15])
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    again = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert again[:2] == records[:2]
    assert sorted(again, key=lambda r: r["id"]) == sorted(records, key=lambda r: r["id"])
    assert json.loads((out / "run.json").read_text())["sessions"][-1]["items_this_session"] == 4

    # Scoring the run's output file gives the same numbers.
    res = runner.invoke(app, ["audit", "chair", "score", "--captions", str(out / "records.jsonl"), "--ground-truth", str(gt), "--out", str(tmp_path / "rescore")])
    assert res.exit_code == 0, res.output
    rescored = json.loads((tmp_path / "rescore" / "metrics.json").read_text())
    assert rescored["by_prompt"] == metrics["by_prompt"]


def test_run_rejects_unknown_image_ids_with_their_line(tmp_path):
    from annotaudit.audit.chair.run import choose_images

    ids = tmp_path / "ids.txt"
    ids.write_text("139\nCOCO_val2014_000000000285.jpg\n4242\n")
    index = {139: tmp_path / "a.jpg", 285: tmp_path / "b.jpg"}
    with pytest.raises(InputError, match=r"ids.txt:3: image 4242 is not in the image folder"):
        choose_images(index, {139: set(), 285: set()}, ids)
    ids.write_text("139\n285\n")
    assert choose_images(index, {139: set(), 285: set()}, ids) == [139, 285]


def test_problems_go_to_problems_jsonl_and_the_terminal_shows_the_first_twenty(tmp_path, gt):
    many = tmp_path / "many.jsonl"
    many.write_text('{"image_id": 1, "caption": "A dog."}\n' + '{"image_id": 999, "caption": "A dog."}\n' * 25)
    out = tmp_path / "out"
    res = runner.invoke(app, ["audit", "chair", "score", "--captions", str(many), "--ground-truth", str(gt), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (out / "problems.jsonl").read_text().splitlines()]
    assert len(rows) == 25 and rows[0]["line"] == 2 and "image id 999 is not in the ground truth" in rows[0]["message"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["problems"] == 25 and metrics["n_captions"] == 1
    assert "... and 5 more" in res.output


def test_nothing_scored_is_an_error_and_writes_nothing(tmp_path, gt):
    from annotaudit.audit.chair.metric import score_caption_file

    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"image_id": 999, "caption": "A dog."}\n')
    with pytest.raises(InputError, match=r"no caption could be scored.*image id 999"):
        score_caption_file(unknown, tmp_path / "out", ground_truth=gt)
    assert not (tmp_path / "out").exists()


def test_concatenated_pretty_printed_objects_are_read_with_their_lines(tmp_path):
    caps = tmp_path / "pope_authors.json"
    caps.write_text(json.dumps({"image_id": 1, "caption": "A dog."}, indent=2) + "\n" + json.dumps({"image_id": 2, "caption": "A cat."}, indent=2) + "\n")
    assert [(c.image_id, c.line) for c in read_captions(caps)] == [(1, 1), (2, 5)]


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 0}, r"--batch-size must be at least 1 \(got 0\)"),
    ({"max_new_tokens": 0}, r"--max-new-tokens must be at least 1 \(got 0\)"),
    ({"language": "fr"}, r"language must be one of en, it, not 'fr'"),
    ({"sample": None}, r"give --image-ids FILE or --sample N"),
    ({"prompts": {}}, r"give --prompt TEXT or --prompt-set"),
])
def test_chair_config_refuses_a_bad_value_itself(tmp_path, changes, message):
    from annotaudit.audit.chair.run import ChairConfig

    given = {"model": "hf:no-model-is-loaded", "images": tmp_path, "truth": {139: {"dog"}}, "prompts": {"I1": "Caption it."}, "sample": 1}
    with pytest.raises(InputError, match=message):
        ChairConfig(**{**given, **changes})
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_run_records_follow_the_schema_rescore_without_the_model_and_edited_inputs_are_refused(tmp_path, tiny):
    from annotaudit.audit.chair.run import ChairConfig, run_chair

    images = tmp_path / "val2014"
    images.mkdir()
    for image_id in (139, 285):
        Image.new("RGB", (8, 8)).save(images / f"COCO_val2014_{image_id:012d}.jpg")
    ids = tmp_path / "ids.txt"
    ids.write_text("139\n285\n")
    truth, run, model = {139: {"dog", "person"}, 285: {"cat"}}, tmp_path / "run", f"hf:{tiny('llava_next')}"

    def chair(truth=truth):
        return run_chair(ChairConfig(model, images, truth, {"I1": "Caption it."}, image_ids=ids, max_new_tokens=6), run)

    metrics = chair()
    assert metrics["n_captions"] == 2 and metrics["model"] == model
    first = json.loads((run / "records.jsonl").read_text().splitlines()[0])
    assert list(first) == ["id", "input", "target", "prediction", "raw", "scores", "meta"]
    assert (first["id"], first["input"], first["target"]) == ("I1:139", {"prompt": "Caption it.", "image": "COCO_val2014_000000000139.jpg"}, ["dog", "person"])
    assert isinstance(first["raw"], str) and first["meta"]["prompt_id"] == "I1" and first["meta"]["image_id"] == 139
    assert first["prediction"] == [c for _, c in extract_objects(first["raw"], "en")]
    assert first["scores"]["n_mentions"] == len(first["prediction"]) and first["scores"]["chair_s"] in (0, 1)
    assert {p.name for p in run.iterdir() if not p.name.startswith(".")} == {"run.json", "records.jsonl", "metrics.json", "problems.jsonl", "report.md", "report.html", "report_files"}

    # The finished folder is scored again without the model, against the records' own targets.
    res = runner.invoke(app, ["audit", "chair", "score", "--captions", str(run), "--out", str(tmp_path / "rescored")])
    assert res.exit_code == 0, res.output
    rescored = json.loads((tmp_path / "rescored" / "metrics.json").read_text())
    assert {k: rescored[k] for k in ("chair_s", "chair_i", "recall", "by_prompt")} == {k: metrics[k] for k in ("chair_s", "chair_i", "recall", "by_prompt")}
    assert isinstance(runner.invoke(app, ["audit", "chair", "score", "--captions", str(run), "--out", str(run)]).exception, InputError)

    # Same inputs: nothing to do. An edited id file or other ground truth for the images: refused without --force.
    chair()
    assert json.loads((run / "run.json").read_text())["sessions"][-1]["items_this_session"] == 0
    ids.write_text("139\n285\n\n")
    with pytest.raises(ConfigMismatch, match="input image_ids"):
        chair()
    ids.write_text("139\n285\n")
    with pytest.raises(ConfigMismatch, match="ground_truth_digest"):
        chair({**truth, 285: {"cat", "bed"}})


def test_scores_of_other_captions_are_not_overwritten_unless_forced(tmp_path, gt):
    from annotaudit.audit.chair.metric import score_caption_file

    first, second, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "out"
    first.write_text('{"image_id": 1, "caption": "A dog."}\n')
    second.write_text('{"image_id": 1, "caption": "A cat."}\n')
    score_caption_file(first, out, ground_truth=gt)
    with pytest.raises(ConfigMismatch, match="captions"):
        score_caption_file(second, out, ground_truth=gt)
    assert json.loads((out / "records.jsonl").read_text())["raw"] == "A dog."
    score_caption_file(second, out, ground_truth=gt, force=True)
    assert json.loads((out / "records.jsonl").read_text())["raw"] == "A cat."
