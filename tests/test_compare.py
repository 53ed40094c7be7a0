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

from annotaudit.audit.pope.protocol import question_text
from annotaudit.cli.main import app
from annotaudit.compare.bootstrap import Items, bootstrap, draw_weights, flag, paired_difference
from annotaudit.compare.exact import clopper_pearson
from annotaudit.compare.multiplicity import resamples_needed
from annotaudit.core.metrics import ratio

runner = CliRunner()
OBJECTS = ["dog", "cat", "car", "chair", "bottle", "cup", "bench", "clock", "umbrella", "book", "bird", "horse"]
SETTINGS = ("random", "popular", "adversarial")
CAPTIONS = {
    "en": {"good": "A dog sits on a chair next to a cup.", "poor": "A dog and a horse sit on a chair near a clock and a bird."},
    "it": {"good": "Un cane seduto su una sedia accanto a una tazza.", "poor": "Un cane e un cavallo su una sedia vicino a un orologio e un uccello."},
}
RESAMPLES = 1000
REFERENCE = Path("/work/shared/reference/pope")


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
    from annotaudit.lvlm.evaluate import EvalConfig, evaluate

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
        evaluate(EvalConfig(tiny(kind), str(task / "vqa.jsonl"), task / "images", max_new_tokens=3, formatting="post,pre"), out)
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
        assert cell["value"] == pytest.approx(_metrics(run)["chair_i"]) and cell["unit"] == "image" and cell["n"] == 8

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
        assert d["difference"]["low"] > 0 and d["difference"]["p_value"] <= 0.05 and d["difference"]["adjusted"] >= d["difference"]["p_value"]
        assert d["flagged"] == ("*" if d["difference"]["adjusted"] <= 0.05 else "")
        assert d["common items"] == (120 if d["column"].endswith("mean F1") else 40) and d["clusters"] == "10 images"
    assert all(d["flagged"] == "*" for d in pope if d["column"].endswith("mean F1"))  # 120 questions survive the family's adjustment
    chair = next(d for d in diffs if d["kind"] == "CHAIR" and d["figure"] == "CHAIR_i" and d["column"] == "en")
    assert chair["common items"] == 8 and chair["difference"]["value"] < 0 and chair["clusters"] == "8 images"
    assert any(d["kind"] == "MMBT" and d["A"] == "human" for d in diffs)
    assert result["comparisons"] == len(diffs) and result["adjustment"] == "holm"
    md = (compared / "report.md").read_text()
    assert f"{len(diffs)} comparisons, one family: p-values adjusted by Holm" in md and "| n en |" in md


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
            f"sys.argv = ['annotaudit', 'compare', *{runs!r}, '--out', {str(tmp_path / 'o')!r}, '--resamples', '200', '--format', 'md']\n"
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
    flag([diff])
    assert diff.flagged and diff.low > 0 and diff.low < 0.15 < diff.high and diff.n == IMAGES * QUESTIONS and diff.clusters == IMAGES


def test_no_difference_is_flagged_about_five_percent_of_the_time():
    """One difference alone (a family of one): its p-value is at most 0.05 about one time in twenty."""
    rng = np.random.default_rng(2)
    flags = 0
    for draw in range(DRAWS):
        a, b, _ = synthetic(rng)
        diff = paired_difference(ratio("correct"), a, ratio("correct"), b, resamples=400, seed=draw)
        flag([diff])
        flags += diff.flagged
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


# Pairing by content, finished runs, small samples and multiplicity --------------------------------

def _compare_fails(args: list, tmp_path: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "annotaudit.cli.main", "compare", *map(str, args), "--out", str(tmp_path / "refused")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "refused").exists()
    return result.stderr


def _pope_score(root: Path, name: str, questions: list[dict], right: float, seed: int) -> Path:
    rng = random.Random(seed)
    qfile, answers = root / f"{name}_q" / "coco_pope_random.json", root / f"{name}_answers.jsonl"
    qfile.parent.mkdir(parents=True, exist_ok=True)
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    flip = {"yes": "no", "no": "yes"}
    answers.write_text("".join(json.dumps({"question_id": q["question_id"], "text": q["label"] if rng.random() < right else flip[q["label"]]}) + "\n"
                               for q in questions))
    invoke(["audit", "pope", "score", "--questions", qfile, "--answers", answers, "--model", name, "--out", root / name])
    return root / name


def _questions(images: int = 10) -> list[dict]:
    rng = random.Random(5)
    out = []
    for image in range(images):
        for obj in rng.sample(OBJECTS, 4):
            out.append({"question_id": len(out) + 1, "image": f"COCO_val2014_{image:012d}.jpg", "text": question_text(obj, "en"),
                        "label": "yes" if len(out) % 2 else "no"})
    return out


def test_duplicate_captions_of_one_image_give_a_difference_of_exactly_zero(tmp_path):
    """Two runs with identical captions, one image captioned twice: the image carries both captions, so the difference is 0."""
    truth = {str(i): ["dog", "chair", "cup"] for i in (1, 2, 3)}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    lines = [(1, "A dog on a chair."), (1, "A dog with a horse and a clock."), (2, "A dog and a bird."), (3, "A cup.")]
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps({"image_id": i, "caption": c}) + "\n" for i, c in lines))
    for name in ("a", "b"):
        invoke(["audit", "chair", "score", "--captions", captions, "--ground-truth", tmp_path / "truth.json", "--model", name, "--out", tmp_path / name])
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["chair_s"] > 0
    invoke(["compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "o", "--resamples", 200, "--format", "md"])
    result = json.loads((tmp_path / "o" / "comparison.json").read_text())
    for row in _table(result, "differences")["rows"]:
        diff = row["difference"]
        assert (diff["value"], diff["low"], diff["high"]) == (0.0, 0.0, 0.0) and diff["p_value"] == 1.0 and not diff["flagged"]
        assert row["common items"] == 3 and row["clusters"] == "3 images"
    cell = _row(_table(result, "chair"), model="a")["CHAIR_s en"]
    assert cell["n"] == 4 and cell["clusters"] == 3 and cell["method"] == "korn-graubard" and cell["low"] < cell["value"] < cell["high"]


def test_same_question_with_another_label_is_never_paired(tmp_path):
    questions = _questions()
    other = [dict(q) for q in questions]
    other[5]["label"] = "no" if other[5]["label"] == "yes" else "yes"
    a, b = _pope_score(tmp_path, "a", questions, 0.9, 1), _pope_score(tmp_path, "b", other, 0.9, 2)
    line = _compare_fails([a, b], tmp_path)
    assert "different content" in line and "never paired" in line and "random/" in line and str(b) in line


def test_unfinished_and_edited_runs_are_refused_unless_allowed(tmp_path):
    import shutil

    run = _pope_score(tmp_path, "good", _questions(), 0.9, 1)
    cases = {}
    for name in ("no_metrics", "deleted", "edited"):
        cases[name] = tmp_path / name
        shutil.copytree(run, cases[name])
    (cases["no_metrics"] / "metrics.json").unlink()
    records = (run / "records.jsonl").read_text().splitlines()
    (cases["deleted"] / "records.jsonl").write_text("\n".join(records[1:]) + "\n")
    edited = [json.loads(line) for line in records]
    edited[0]["prediction"] = "no" if edited[0]["prediction"] == "yes" else "yes"
    (cases["edited"] / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in edited))
    assert "no metrics.json" in _compare_fails([cases["no_metrics"]], tmp_path)
    assert "39 records of the 40" in _compare_fails([cases["deleted"]], tmp_path)
    line = _compare_fails([cases["edited"]], tmp_path)
    assert "disagree with its own metrics.json" in line and "--allow-unfinished" in line
    invoke(["compare", run, cases["edited"], "--label", f"edited={cases['edited']}", "--allow-unfinished", "--out", tmp_path / "o",
            "--resamples", 200, "--format", "md"])
    md = (tmp_path / "o" / "report.md").read_text()
    assert "| edited (unfinished) | template 1 | random |" in md and "(unfinished) marks runs compared with --allow-unfinished" in md


def test_the_older_and_newer_pope_random_files_pair_on_their_shared_questions(tmp_path):
    """The file LLaVA used (2,910 questions) and today's (3,000) hold the same 2,910 (image, object) questions with the same
    labels, in another order and with other ids (144 differ only by the older file's 'imange' typo)."""
    older = [json.loads(line) for line in (REFERENCE / "e3e3926" / "coco_pope_random.json").read_text().splitlines() if line.strip()]
    newer = [json.loads(line) for line in (REFERENCE / "coco_pope_random.json").read_text().splitlines() if line.strip()]
    a, b = _pope_score(tmp_path, "older", older, 0.85, 1), _pope_score(tmp_path, "newer", newer, 0.85, 2)
    shown = invoke(["compare", a, b, "--out", tmp_path / "o", "--resamples", 200, "--format", "md"]).output
    assert "POPE coco_pope en random F1: older against newer on 2910 common items (of 2910 and 3000)" in shown
    result = json.loads((tmp_path / "o" / "comparison.json").read_text())
    (row,) = _table(result, "differences")["rows"]
    assert row["common items"] == 2910 and row["clusters"] == "500 images" and row["column"] == "en random"
    pope = _table(result, "pope_coco_pope")
    assert "Two protocols in one column" in pope["note"] and "pope-e3e3926" in pope["note"]
    assert _row(pope, model="older")["n en"] == "2910 (500 images)" and _row(pope, model="newer")["n en"] == "3000 (500 images)"


def test_too_few_resamples_for_the_family_is_one_line(tmp_path):
    runs = [_pope_score(tmp_path, name, _questions(), right, k) for k, (name, right) in enumerate((("a", 0.9), ("b", 0.8), ("c", 0.7)))]
    line = _compare_fails([*runs, "--resamples", 100], tmp_path)
    assert f"give --resamples {resamples_needed(3)} or more" in line and "3 paired differences" in line


def test_verdict_rows_rank_llms_by_advantage_probability(tmp_path):
    rng = random.Random(0)
    items = [f"i{k}" for k in range(40)]
    truth = {i: rng.choice("ABC") for i in items}
    humans = {a: {i: truth[i] if rng.random() < 0.8 else rng.choice("ABC") for i in items} for a in ("h1", "h2", "h3")}
    (tmp_path / "humans.json").write_text(json.dumps(humans))
    (tmp_path / "llms.json").write_text(json.dumps({"guesser": {i: rng.choice("ABC") for i in items}, "oracle": truth}))
    invoke(["annotate", "verdict", "--humans", tmp_path / "humans.json", "--llm", tmp_path / "llms.json", "--out", tmp_path / "v"])
    invoke(["compare", tmp_path / "v", "--out", tmp_path / "o", "--resamples", 100, "--format", "md"])
    metrics = json.loads((tmp_path / "v" / "metrics.json").read_text())
    rows = _table(json.loads((tmp_path / "o" / "comparison.json").read_text()), "verdict")["rows"]
    assert [r["LLM"] for r in rows] == ["oracle", "guesser"] and [r["rank"] for r in rows] == [1, 2]
    for r in rows:
        test = metrics["llms"][r["LLM"]]
        assert r["ρ"]["value"] == test["advantage_probability"] and r["passed"] == ("yes" if test["passed"] else "no")
        assert r["ω"] == f"{test['winning_rate']:.2f}" and r["α humans"]["value"] == metrics["agreement"]["humans"]["alpha"]["nominal"]["value"]
    assert "| 1 | oracle |" in (tmp_path / "o" / "report.md").read_text()


def _pope_items(rng: np.random.Generator, right: np.ndarray, images: int = 84, per_image: int = 6):
    """POPE-like records (half yes) answered right with the given per-image probability, as compare's POPE items."""
    from annotaudit.compare.measures import pope_figures

    labels = np.tile(["yes", "no"], images * per_image // 2)
    correct = rng.random(images * per_image) < np.repeat(right, per_image)
    records = [{"id": str(k), "target": lab, "prediction": lab if ok else ("no" if lab == "yes" else "yes"),
                "input": {"image": f"COCO_val2014_{k // per_image:012d}.jpg", "prompt": question_text(OBJECTS[k % per_image], "en")}}
               for k, (lab, ok) in enumerate(zip(labels, correct))]
    items, stats = pope_figures(records, "random")
    return items, stats["f1"]


def test_a_true_fifteen_point_f1_gap_survives_holm_over_twenty():
    rng = np.random.default_rng(11)
    difficulty = rng.beta(7, 3, 84)  # about 0.7 right, shared by the models on each image
    strong, f1_strong = _pope_items(rng, np.clip(difficulty + 0.15, 0, 1))
    weak, f1_weak = _pope_items(rng, difficulty)
    assert len(strong) == 504
    family = [paired_difference(f1_strong, strong, f1_weak, weak, resamples=1000, seed=0)]
    for k in range(19):
        a, f1_a = _pope_items(rng, difficulty)
        b, f1_b = _pope_items(rng, difficulty)
        family.append(paired_difference(f1_a, a, f1_b, b, resamples=1000, seed=k + 1))
    assert 0.10 < family[0].value < 0.20
    flag(family, "holm")
    assert family[0].flagged and family[0].adjusted <= 0.05 and family[0].adjusted == pytest.approx(20 * family[0].p_value)


def test_family_wise_flag_rate_with_no_difference_stays_at_five_percent():
    """1,000 reports of five differences where nothing differs, each through paired_difference and Holm at the fewest resamples the family allows."""
    rng = np.random.default_rng(12)
    family, resamples = 5, resamples_needed(5)
    ids = [str(k) for k in range(IMAGES * 3)]
    clusters = [str(k // 3) for k in range(IMAGES * 3)]
    any_flag = 0
    for report in range(1000):
        diffs = []
        for k in range(family):
            difficulty = np.repeat(rng.beta(3.5, 1.5, IMAGES), 3)
            a, b = ((rng.random(IMAGES * 3) < difficulty).astype(float) for _ in range(2))
            diffs.append(paired_difference(ratio("correct"), Items(ids, clusters, "image", {"correct": a}), ratio("correct"),
                                           Items(ids, clusters, "image", {"correct": b}), resamples=resamples, seed=report * family + k))
        flag(diffs, "holm")
        any_flag += any(d.flagged for d in diffs)
    assert any_flag / 1000 <= 0.064, any_flag / 1000


def test_clopper_pearson_covers_at_least_95_percent_at_n_10():
    from scipy.stats import binom

    n = 10
    bounds = [clopper_pearson(k, n) for k in range(n + 1)]
    for p in np.linspace(0.005, 0.995, 199):
        coverage = sum(binom.pmf(k, n, p) for k, (low, high) in enumerate(bounds) if low <= p <= high)
        assert coverage >= 0.95, (p, coverage)


def test_small_samples_get_exact_intervals_not_zero_width_ones():
    ones = Items([str(k) for k in range(3)], [str(k) for k in range(3)], "item", {"correct": np.ones(3)})
    from annotaudit.compare.measures import PROPORTIONS

    interval = bootstrap(ratio("correct"), ones, resamples=200, seed=0, proportion=PROPORTIONS["vqa"]["exact"] and (lambda a: (a["correct"], np.ones(3))))
    assert interval.method == "clopper-pearson" and interval.value == 1.0 and interval.high == 1.0 and interval.low == pytest.approx(0.025 ** (1 / 3))
    clustered = Items([str(k) for k in range(40)], [str(k // 4) for k in range(40)], "image", {"correct": np.repeat([1.0, 0.0], 20)})
    plain = Items(clustered.ids, clustered.ids, "item", clustered.arrays)
    kg = bootstrap(ratio("correct"), clustered, proportion=lambda a: (a["correct"], np.ones(40)))
    cp = bootstrap(ratio("correct"), plain, resamples=200, proportion=lambda a: (a["correct"], np.ones(40)))
    assert kg.method == "korn-graubard" and cp.method == "bootstrap" and kg.high - kg.low > cp.high - cp.low
    ratio_figure = bootstrap(ratio("correct"), clustered, resamples=200, seed=0)
    assert ratio_figure.unreliable and ratio_figure.clusters == 10


def test_undefined_resamples_are_counted_beside_the_figure():
    """CHAIR_i with mentions in few captions: resamples that draw none of them leave it undefined, and the count shows."""
    from annotaudit.compare.render import cell_text

    mentions = np.zeros(25)
    mentions[0] = 2
    items = Items([str(k) for k in range(25)], [str(k) for k in range(25)], "image", {"hallucinated": mentions / 2, "mentions": mentions})
    interval = bootstrap(ratio("hallucinated", "mentions"), items, resamples=500, seed=0)
    assert interval.value == 0.5 and 0 < interval.undefined < 500 and interval.method == "bootstrap"
    assert f"({interval.undefined} undefined)" in cell_text(interval, True)


def test_the_same_model_in_score_and_generate_mode_is_compared():
    from annotaudit.compare.runs import Entry
    from annotaudit.compare.tables import plan_differences

    task = type("Task", (), {"primary": "accuracy"})()
    score, generate = (Entry("annotate", "xnli", "llama", mode, "en", "", Path(mode), [], {"task": task, "pairing": ""}) for mode in ("score", "generate"))
    plan = plan_differences([score, generate])
    assert [(p.metric, p.label(p.a, p.b), p.label(p.b, p.a)) for p in plan] == [("accuracy", "llama, score", "llama, generate"),
                                                                                 ("answer_rate", "llama, score", "llama, generate")]


def test_rankings_per_label_set(tmp_path):
    """Two models scored under their questions' labels and a relabelled copy: a ranking per label set, each F1 as the run gave it."""
    questions = _questions()
    relabelled = [dict(q, label=("no" if q["label"] == "yes" else "yes") if k % 3 == 0 else q["label"]) for k, q in enumerate(questions)]
    (tmp_path / "relabelled").mkdir()
    (tmp_path / "relabelled" / "random.json").write_text("".join(json.dumps(q) + "\n" for q in relabelled))
    runs = []
    for name, right in (("sharp", 0.95), ("blunt", 0.6)):
        _pope_score(tmp_path, name, questions, right, 3)  # writes the answers file
        answers = tmp_path / f"{name}_answers.jsonl"
        invoke(["audit", "pope", "score", "--questions", tmp_path / "sharp_q" / "coco_pope_random.json", "--answers", answers, "--model", name,
                "--labels", f"relabelled={tmp_path / 'relabelled'}", "--out", tmp_path / f"{name}_sets"])
        runs.append(tmp_path / f"{name}_sets")
    invoke(["compare", *runs, "--out", tmp_path / "o", "--resamples", 100, "--format", "md"])
    table = _table(json.loads((tmp_path / "o" / "comparison.json").read_text()), "pope_coco_pope_label_sets")
    assert {r["label set"] for r in table["rows"]} == {"relabelled", "sharp_q"}
    for row in table["rows"]:
        metrics = _metrics(tmp_path / f"{row['model'].split()[0]}_sets")["label_sets"][row["label set"]]["settings"]["random"]
        assert row["F1"] == f"{100 * metrics['f1']:.1f}" and row["n"] == metrics["n"] == 40
    assert [r["model"] for r in table["rows"] if r["label set"] == "relabelled"] == ["sharp en", "blunt en"]
