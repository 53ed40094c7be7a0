"""`annotaudit compare` over real run folders of every kind, and the bootstrap's statistics on synthetic runs."""

from __future__ import annotations

import csv
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from annotaudit.audit.pope import question_text
from annotaudit.cli.main import app
from annotaudit.compare.bootstrap import Items, bootstrap, draw_weights, paired_difference
from annotaudit.core.metrics import ratio

runner = CliRunner()
OBJECTS = ["dog", "cat", "car", "chair", "bottle", "cup", "bench", "clock", "umbrella", "book", "bird", "horse"]
SETTINGS = ("random", "popular", "adversarial")
CAPTIONS = {
    "en": {"good": "A dog sits on a chair next to a cup.", "poor": "A dog and a horse sit on a chair near a clock and a bird."},
    "it": {"good": "Un cane seduto su una sedia accanto a una tazza.", "poor": "Un cane e un cavallo su una sedia vicino a un orologio e un uccello."},
}
RESAMPLES = 300


def invoke(args: list) -> object:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _draw(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (48, 48), "white")
    ImageDraw.Draw(img).ellipse((6, 6, 42, 42), fill=colour)
    img.save(path)


# Fixture runs, each written by the real command -------------------------------------------------

def pope_runs(root: Path) -> list[Path]:
    """`audit pope score` of two models' answers to three settings in English and Italian (no model needed)."""
    rng = random.Random(0)
    runs = []
    for lang in ("en", "it"):
        for setting in SETTINGS:
            questions, qid = [], 0
            for image in range(10):
                present = rng.sample(OBJECTS, 2)
                absent = rng.sample([o for o in OBJECTS if o not in present], 2)
                for obj, label in [(o, "yes") for o in present] + [(o, "no") for o in absent]:
                    qid += 1
                    questions.append({"question_id": qid, "image": f"COCO_val2014_{image:012d}.jpg", "text": question_text(obj, lang), "label": label})
            qfile = root / f"pope_{lang}" / f"coco_pope_{setting}.json"
            qfile.parent.mkdir(parents=True, exist_ok=True)
            qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
            yes, no = ("Sì, c'è." if lang == "it" else "Yes, there is."), ("No, non c'è." if lang == "it" else "No, there is not.")
            for model, right in (("good", 0.95), ("poor", 0.6)):
                answers = root / "answers" / lang / setting / f"{model}.jsonl"
                answers.parent.mkdir(parents=True, exist_ok=True)
                lines = [{"question_id": q["question_id"], "text": yes if (q["label"] == "yes") == (rng.random() < right) else no} for q in questions]
                answers.write_text("".join(json.dumps(a) + "\n" for a in lines))
                out = root / "runs" / f"pope_{model}_{lang}_{setting}"
                invoke(["audit", "pope", "score", "--questions", qfile, "--answers", answers, "--language", lang, "--out", out])
                runs.append(out)
    return runs


def chair_runs(root: Path) -> list[Path]:
    """`audit chair score` of two models' captions in English and Italian against one ground truth."""
    truth = {str(i): ["dog", "chair", "cup"] for i in range(1, 9)}
    (root / "chair").mkdir(parents=True, exist_ok=True)
    (root / "chair" / "truth.json").write_text(json.dumps(truth))
    runs = []
    for lang, by_model in CAPTIONS.items():
        for model, text in by_model.items():
            captions = root / "chair" / lang / f"{model}.jsonl"
            captions.parent.mkdir(parents=True, exist_ok=True)
            captions.write_text("".join(json.dumps({"image_id": int(i), "caption": text if int(i) % 4 else "A dog."}) + "\n" for i in truth))
            out = root / "runs" / f"chair_{model}_{lang}"
            invoke(["audit", "chair", "score", "--captions", captions, "--ground-truth", root / "chair" / "truth.json", "--language", lang, "--out", out])
            runs.append(out)
    return runs


def vqa_runs(root: Path, tiny) -> list[Path]:
    """`lvlm eval` of two tiny LVLMs under two formattings."""
    from annotaudit.lvlm.evaluate import evaluate

    task = root / "vqa"
    (task / "images").mkdir(parents=True, exist_ok=True)
    colours = {"rosso": (220, 30, 30), "verde": (30, 200, 40), "blu": (30, 40, 220)}
    rows = []
    for i in range(6):
        name = list(colours)[i % 3]
        Image.new("RGB", (32, 32), colours[name]).save(task / "images" / f"{i}.png")
        rows.append({"id": f"q{i}", "image": f"{i}.png", "question": "Di che colore è l'immagine?", "answer": name})
    (task / "vqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = []
    for kind in ("llava", "llava_next"):
        out = root / "runs" / f"vqa_{kind}"
        evaluate(tiny(kind), str(task / "vqa.jsonl"), task / "images", out, max_new_tokens=3, formatting="post,pre")
        runs.append(out)
    return runs


def xnli_file(path: Path) -> Path:
    header = ["language", "gold_label", "sentence1", "sentence2", "pairID", "promptID"]
    pairs = [("entailment", "A man plays a guitar.", "A man makes music.", "Un uomo suona la chitarra.", "Un uomo fa musica."),
             ("contradiction", "The cat sleeps.", "The cat runs.", "Il gatto dorme.", "Il gatto corre."),
             ("neutral", "She bought a car.", "She likes red cars.", "Ha comprato un'auto.", "Le piacciono le auto rosse.")]
    lines = ["\t".join(header)]
    for k, (label, s1, s2, i1, i2) in enumerate(pairs * 2):
        lines.append("\t".join(["en", label, s1, s2, str(k), str(k)]))
        lines.append("\t".join(["it", label, i1, i2, str(k), str(k)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def memes(root: Path) -> Path:
    """A Hateful Memes layout (train, dev_seen, test_unseen) whose label is the colour of the picture."""
    rng = random.Random(1)
    for split, n in (("train", 16), ("dev_seen", 8), ("test_unseen", 10)):
        lines = []
        for i in range(n):
            label = i % 2
            _draw(root / "img" / f"{split}_{i}.png", "red" if label else "blue")
            lines.append({"id": f"{split}{i}", "img": f"img/{split}_{i}.png", "label": label, "text": rng.choice(["a dog", "a cat", "a pizza"])})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def annotate_and_classify_runs(root: Path, tiny) -> dict[str, list[Path]]:
    """`annotate run` on XNLI (English and Italian) with two tiny LLMs, on Hateful Memes with a tiny InstructBLIP;
    `classify train` on human labels and on that run's labels."""
    data = xnli_file(root / "xnli.test.tsv")
    annotate = []
    for kind in ("llama", "mistral"):
        out = root / "runs" / f"xnli_{kind}"
        invoke(["annotate", "run", "--task", "xnli", "--data", data, "--languages", "en,it", "--model", f"hf:{tiny(kind)}", "--mode", "score", "--out", out])
        annotate.append(out)
    hm = memes(root / "hm")
    labels = root / "runs" / "hm_instructblip"
    invoke(["annotate", "run", "--task", "hateful_memes", "--data", hm, "--split", "train", "--model", f"hf:{tiny('instructblip-vicuna')}",
            "--mode", "score", "--out", labels])
    flags = ["--text-encoder", tiny("bert"), "--image-encoder", tiny("resnet"), "--batch-size", "8", "--max-length", "16", "--epochs", "1", "--cpu"]
    classify = []
    for name, source in (("human", "human"), ("llm", labels)):
        out = root / "runs" / f"mmbt_{name}"
        invoke(["classify", "train", "--task", "hateful_memes", "--data", hm, "--labels", source, "--out", out, *flags])
        classify.append(out)
    return {"annotate": [*annotate, labels], "classify": classify}


@pytest.fixture(scope="module")
def fixture_runs(tiny, tmp_path_factory) -> dict[str, list[Path]]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("compare-runs")
    try:
        runs = {"pope": pope_runs(root), "chair": chair_runs(root), "vqa": vqa_runs(root, tiny), **annotate_and_classify_runs(root, tiny)}
    finally:
        torch.set_num_threads(threads)
    return runs


@pytest.fixture(scope="module")
def compared(fixture_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "out"
    all_runs = [r for runs in fixture_runs.values() for r in runs]
    result = invoke(["compare", *all_runs, "--out", out, "--resamples", RESAMPLES, "--seed", 7])
    assert str(out / "report.html") in result.output
    return out


def _table(result: dict, name: str) -> dict:
    return next(t for t in result["tables"] if t["name"] == name)


def _row(table: dict, **labels) -> dict:
    return next(r for r in table["rows"] if all(r.get(k) == v for k, v in labels.items()))


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


# The report ------------------------------------------------------------------------------------

INTERVAL = re.compile(r"\d+\.\d+ \[\d+\.\d+, \d+\.\d+\]")


def test_every_kind_in_all_four_formats_with_intervals(compared):
    md = (compared / "report.md").read_text()
    for heading in ("## POPE on coco_pope (%)", "## CHAIR (%)", "## VQA (%)", "## annotation (%)", "## MMBT trained on human against LLM labels",
                    "## Paired differences between models"):
        assert heading in md, heading
    assert f"from {RESAMPLES} resamples (seed 7)" in md
    header = next(line for line in md.splitlines() if line.startswith("| model | prompt | setting"))
    assert "F1 en" in header and "F1 it" in header  # English and Italian side by side
    assert "| mean F1 |" in md and len(INTERVAL.findall(md)) > 50
    assert re.search(r"!\[POPE on coco_pope \(%\)\]\(report_files/pope_coco_pope\.png\)", md)
    assert (compared / "report_files" / "pope_coco_pope.png").stat().st_size > 5000

    html = (compared / "report.html").read_text()
    assert "<table class='sortable'>" in html and "data:image/png;base64," in html and "<script>" in html
    assert "http" not in html.split("<body>")[1].split("data:")[0]  # nothing fetched from a network

    rows = list(csv.DictReader((compared / "tables" / "pope_coco_pope.csv").open()))
    good = next(r for r in rows if r["model"] == "good" and r["setting"] == "random")
    assert float(good["F1 en low"]) <= float(good["F1 en"]) <= float(good["F1 en high"])
    assert {p.name for p in (compared / "tables").iterdir()} >= {"pope_coco_pope.csv", "chair.csv", "vqa.csv", "annotate.csv", "mmbt.csv", "differences.csv"}

    tex = (compared / "report.tex").read_text()
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") >= 6 and r"\usepackage{booktabs}" in tex
    assert r"\includegraphics[width=0.8\linewidth]{report_files/pope_coco_pope.png}" in tex and r"{\scriptsize [" in tex
    assert "coco\\_pope" in tex  # underscores escaped

    manifest = json.loads((compared / "run.json").read_text())
    assert manifest["config"]["seed"] == 7 and manifest["config"]["resamples"] == RESAMPLES
    assert manifest["kind"] == "compare" and manifest["items"] > 0
    assert all(v["fingerprint"] and v["fingerprint"].startswith(("sha256:", "files:")) for v in manifest["inputs"].values())


def test_figures_equal_each_commands_own_metrics(compared, fixture_runs):
    """Every figure is the number the run itself reported, with an interval around it."""
    result = json.loads((compared / "comparison.json").read_text())
    pope = _table(result, "pope_coco_pope")
    for run in fixture_runs["pope"]:
        _, model, lang, setting = run.name.split("_")
        expected = next(iter(_metrics(run)["summary"].values()))
        cell = _row(pope, model=model, setting=setting)[f"F1 {lang}"]
        assert cell["value"] == pytest.approx(expected["f1"], abs=1e-12) and cell["low"] <= cell["value"] <= cell["high"]
        assert cell["unit"] == "image" and cell["clusters"] == 10 and cell["n"] == 40
    mean = _row(pope, model="good", setting="mean F1")["F1 it"]
    per_setting = [next(iter(_metrics(r)["summary"].values()))["f1"] for r in fixture_runs["pope"] if r.name.startswith("pope_good_it")]
    assert mean["value"] == pytest.approx(sum(per_setting) / 3) and mean["n"] == 120

    chair = _table(result, "chair")
    for run in fixture_runs["chair"]:
        _, model, lang = run.name.split("_")
        cell = _row(chair, model=model)[f"CHAIR_i {lang}"]
        assert cell["value"] == pytest.approx(_metrics(run)["chair_i"]) and cell["unit"] == "caption" and cell["n"] == 8

    vqa = _table(result, "vqa")
    for run in fixture_runs["vqa"]:
        name = run.name.removeprefix("vqa_")
        for formatting in ("post", "pre"):
            cell = _row(vqa, model=name, formatting=formatting)["Exact"]
            assert cell["value"] == pytest.approx(_metrics(run)["formattings"][formatting]["exact"]) and cell["unit"] == "image"

    annotate = _table(result, "annotate")
    for run in fixture_runs["annotate"][:2]:
        model = json.loads((run / "run.json").read_text())["config"]["model"]
        row = _row(annotate, model=Path(model.removeprefix("hf:")).name)
        for lang in ("en", "it"):
            expected = _metrics(run)["per_language"][lang]
            assert row[f"Acc {lang}"]["value"] == pytest.approx(expected["accuracy_all"])
            assert row[f"Answer rate {lang}"]["value"] == pytest.approx(expected["answer_rate"])

    mmbt = _table(result, "mmbt")
    human, llm = _row(mmbt, labels="human"), _row(mmbt, labels="instructblip-vicuna")
    assert human["AUROC"]["value"] == pytest.approx(_metrics(fixture_runs["classify"][0])["auroc"])
    assert llm["AUROC"]["value"] == pytest.approx(_metrics(fixture_runs["classify"][1])["auroc"])
    # the LLM arm sits next to the annotate run whose labels it learned from
    labels_run = fixture_runs["annotate"][2]
    assert llm["labels from"] == str(labels_run.resolve()) and human["labels from"] == "human annotators"
    assert llm["label accuracy"]["value"] == pytest.approx(_metrics(labels_run)["accuracy_all"])


def test_paired_differences_name_common_items_and_flag_a_real_gap(compared):
    result = json.loads((compared / "comparison.json").read_text())
    diffs = _table(result, "differences")["rows"]
    pope = [d for d in diffs if d["kind"] == "POPE" and d["A"] == "good" and d["B"] == "poor"]
    assert len(pope) == 8  # three settings and the mean F1, in each language
    for d in pope:
        assert d["difference"]["flagged"] and d["excludes zero"] == "*" and d["difference"]["low"] > 0
        assert d["common items"] == (120 if d["column"].endswith("mean F1") else 40) and d["clusters"] == "10 images"
    chair = next(d for d in diffs if d["kind"] == "CHAIR" and d["figure"] == "CHAIR_i" and d["column"] == "en")
    assert chair["common items"] == 8 and chair["difference"]["value"] < 0 and chair["clusters"] == "8 captions"
    assert any(d["kind"] == "MMBT" and d["A"] == "human" for d in diffs)


def test_html_renders_in_headless_chromium(compared, chromium, tmp_path):
    from PIL import ImageStat

    from annotaudit.testing.browser import console_errors, screenshot

    log = screenshot(compared / "report.html", tmp_path / "shot.png", tmp_path / "profile")
    assert console_errors(log) == [], console_errors(log)
    shot = Image.open(tmp_path / "shot.png").convert("RGB")
    assert shot.size[0] >= 800 and max(ImageStat.Stat(shot).stddev) > 10


def test_same_cell_from_two_runs_needs_a_label(fixture_runs, tmp_path):
    import shutil

    twin = tmp_path / "pope_good_en_random_again"
    shutil.copytree(fixture_runs["pope"][0], twin)
    result = subprocess.run([sys.executable, "-m", "annotaudit.cli.main", "compare", str(fixture_runs["pope"][0]), str(twin), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "--label" in result.stderr and str(twin) in result.stderr
    assert not (tmp_path / "o").exists()
    invoke(["compare", fixture_runs["pope"][0], twin, "--label", f"good-rerun={twin}", "--out", tmp_path / "o", "--resamples", 100, "--format", "md"])
    md = (tmp_path / "o" / "report.md").read_text()
    assert "| good | template 1 | random |" in md and "| good-rerun | template 1 | random |" in md
    assert not (tmp_path / "o" / "report.html").exists()


def test_bad_inputs_are_one_line(fixture_runs, tmp_path):
    run = str(fixture_runs["pope"][0])
    for args, words in (([str(tmp_path)], "no run.json"), ([run, "--format", "pdf"], "unknown format pdf"),
                        ([run, "--resamples", "10"], "at least 100"), ([run, "--label", "oops"], "NAME=RUN_DIR"), ([run, run], "given twice")):
        result = subprocess.run([sys.executable, "-m", "annotaudit.cli.main", "compare", *args, "--out", str(tmp_path / "o")], capture_output=True, text=True)
        assert result.returncode == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_seed_fixes_the_intervals(fixture_runs, tmp_path):
    runs = fixture_runs["chair"]
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        invoke(["compare", *runs, "--out", tmp_path / name, "--seed", seed, "--resamples", 200, "--format", "csv"])
    a, b, c = ((tmp_path / n / "tables" / "chair.csv").read_text() for n in "abc")
    assert a == b and a != c


@pytest.mark.parametrize("kind", ["pope", "chair", "vqa", "annotate"])
def test_comparisons_import_no_torch(fixture_runs, tmp_path, kind):
    runs = [str(r) for r in fixture_runs[kind][:2]]
    code = ("import sys\nfrom annotaudit.cli.main import main\n"
            f"sys.argv = ['annotaudit', 'compare', *{runs!r}, '--out', {str(tmp_path / 'o')!r}, '--resamples', '100', '--format', 'md']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('HEAVY', ','.join(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "HEAVY \n" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "o" / "report.md").is_file()


def test_a_folder_is_read_by_its_recorded_kind(fixture_runs, tmp_path):
    """The kind comes from run.json, not from the config's keys; a folder of another kind, or from before kinds, is one line."""
    import shutil

    def compare_line(run: Path) -> str:
        result = subprocess.run([sys.executable, "-m", "annotaudit.cli.main", "compare", str(run), "--out", str(tmp_path / "o")],
                                capture_output=True, text=True)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        assert not (tmp_path / "o").exists()
        return result.stderr

    old = tmp_path / "old"
    shutil.copytree(fixture_runs["pope"][0], old)
    manifest = json.loads((old / "run.json").read_text())
    assert manifest["kind"] == "pope" and manifest["items"] == sum(1 for _ in open(old / "records.jsonl"))
    del manifest["kind"]
    (old / "run.json").write_text(json.dumps(manifest))
    assert "before run folders recorded their kind" in compare_line(old) and "--force" in compare_line(old)
    manifest["kind"] = "lvlm-build"
    (old / "run.json").write_text(json.dumps(manifest))
    line = compare_line(old)
    assert "'lvlm-build' run folder" in line and "lvlm train --model" in line


# The bootstrap's statistics on synthetic runs with known effects ---------------------------------

IMAGES, QUESTIONS, DRAWS = 80, 6, 1000


def synthetic(rng: np.random.Generator, shift: float = 0.0) -> tuple[Items, Items, float]:
    """Two models answering QUESTIONS questions about each of IMAGES images; an image's questions share its difficulty.

    Returns both models' items and the true accuracy of the first (the mean of Beta(3.5, 1.5) plus `shift`).
    """
    difficulty = np.repeat(rng.beta(3.5, 1.5, IMAGES), QUESTIONS)
    a = (rng.random(IMAGES * QUESTIONS) < np.clip(difficulty + shift, 0, 1)).astype(float)
    b = (rng.random(IMAGES * QUESTIONS) < difficulty).astype(float)
    ids = [str(k) for k in range(IMAGES * QUESTIONS)]
    clusters = [str(k // QUESTIONS) for k in range(IMAGES * QUESTIONS)]
    return Items(ids, clusters, "image", {"correct": a}), Items(ids, clusters, "image", {"correct": b}), 0.7 + shift


def test_a_true_difference_is_detected():
    a, b, _ = synthetic(np.random.default_rng(1), shift=0.15)
    diff = paired_difference(ratio("correct"), a, ratio("correct"), b, resamples=1000, seed=0)
    assert diff.flagged and diff.low > 0 and diff.low < 0.15 < diff.high and diff.n == IMAGES * QUESTIONS and diff.clusters == IMAGES


def test_no_difference_is_flagged_about_five_percent_of_the_time():
    rng = np.random.default_rng(2)
    flags = 0
    for draw in range(DRAWS):
        a, b, _ = synthetic(rng)
        flags += paired_difference(ratio("correct"), a, ratio("correct"), b, resamples=400, seed=draw).flagged
    assert 0.03 <= flags / DRAWS <= 0.07, flags / DRAWS


def test_cluster_intervals_cover_the_true_value_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    covered = naive = 0
    for draw in range(DRAWS):
        a, _, truth = synthetic(rng)
        interval = bootstrap(ratio("correct"), a, resamples=400, seed=draw)
        covered += interval.low <= truth <= interval.high
        items = Items(a.ids, a.ids, "question", a.arrays)  # ignoring the images: questions as if independent
        loose = bootstrap(ratio("correct"), items, resamples=400, seed=draw)
        naive += loose.low <= truth <= loose.high
    assert 0.93 <= covered / DRAWS <= 0.97, covered / DRAWS
    assert naive / DRAWS < 0.90  # why POPE resamples images: questions of one image are not independent


def test_weights_draw_whole_clusters():
    weights = draw_weights(["a", "a", "b", "c", "c", "c"], resamples=50, seed=0)
    assert weights.shape == (50, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()
    assert (weights[:, [0, 2, 3]].sum(axis=1) == 3).all()  # three clusters drawn each time
