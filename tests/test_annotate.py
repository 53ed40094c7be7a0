"""annotate: readers on the real formats, extraction, runs with tiny models, resume, shards, report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_annotate_fixtures as fx
from typer.testing import CliRunner

from annotaudit.annotate import readers
from annotaudit.annotate.extract import extract, vote
from annotaudit.annotate.run import RunConfig, recompute, run
from annotaudit.annotate.tasks import NOANSWER, get_task, load_task_file
from annotaudit.cli.annotate import app
from annotaudit.core.errors import InputError
from annotaudit.core.io import Problems
from annotaudit.core.runner import RECORD_KEYS
from annotaudit.core.runs import ConfigMismatch

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# readers --------------------------------------------------------------------------------------


def test_hateful_memes_reader_real_format(tmp_path):
    root = fx.hateful_memes(tmp_path / "hm", "dev_seen")
    items = readers.read_hateful_memes(root, "dev_seen")
    assert [it.id for it in items] == [str(m[0]) for m in fx.MEMES]
    assert [it.label for it in items].count("hateful") == 2
    assert items[0].image == (root / "img" / "42953.png").resolve() and items[0].image.is_file()
    unlabeled = readers.read_hateful_memes(fx.hateful_memes(tmp_path / "hm2", "test_unseen", labels=False), "test_unseen")
    assert len(unlabeled) == 6 and all(it.label is None for it in unlabeled)


def test_hateful_memes_bad_lines_skipped_or_fatal(tmp_path):
    root = fx.hateful_memes(tmp_path / "hm", "dev_seen")
    path = root / "dev_seen.jsonl"
    path.write_text(path.read_text() + '{"id": 1, "img": "img/missing.png", "text": "x", "label": 0}\n{oops\n'
                    '{"id": 2, "img": "img/42953.png", "text": "y", "label": 7}\n{"id": 3, "img": "../../etc/passwd", "text": "z"}\n')
    problems = Problems()
    items = readers.read_hateful_memes(root, "dev_seen", problems=problems)
    assert len(items) == 6
    messages = problems.messages()
    assert messages[0].startswith(f"{path}:7: item 1: image not found")
    assert messages[1].startswith(f"{path}:8: malformed JSON")
    assert "unknown label 7" in messages[2] and ":9:" in messages[2]
    assert "escapes the dataset root" in messages[3] and ":10:" in messages[3]
    with pytest.raises(InputError, match=r"dev_seen.jsonl:7: item 1: image not found"):
        readers.read_hateful_memes(root, "dev_seen", strict=True)
    with pytest.raises(FileNotFoundError, match="found: dev_seen"):
        readers.read_hateful_memes(root, "test_unseen")


def test_mmimdb_reader_both_tasks(tmp_path):
    root = fx.mmimdb(tmp_path)
    items = readers.read_mmimdb(root, "dev")
    assert {it.id: it.label for it in items} == {"0000008": "drama", "0000013": "comedy", "0000021": "both", "0000042": "drama"}
    assert items[0].text == fx.MOVIES[0][1]  # the first plot, not the longer variant
    assert items[0].image.name == "0000008.jpeg"
    genres = readers.read_mmimdb(root / "mmimdb", "dev", task="genres")
    assert len(genres) == 5 and genres[3].label == ["thriller", "horror"]


def test_mmimdb_missing_movie_names_item(tmp_path):
    root = fx.mmimdb(tmp_path)
    (root / "mmimdb" / "dataset" / "0000013.jpeg").unlink()
    (root / "mmimdb" / "dataset" / "0000021.json").write_text("{not json")
    problems = Problems()
    items = readers.read_mmimdb(root, "dev", problems=problems)
    assert [it.id for it in items] == ["0000008", "0000042"]
    assert "item 0000013: image not found" in problems.messages()[0] and "0000021.json:1: item 0000021: malformed JSON" in problems.messages()[1]


def test_xnli_reader_languages_quotes_and_dutch(tmp_path):
    path = fx.xnli(tmp_path / "xnli.dev.tsv")
    items = readers.read_xnli(path, ["en", "fr"])
    assert len(items) == 6 and {it.meta["language"] for it in items} == {"en", "fr"}
    neutral = next(it for it in items if it.id == "en-3")
    assert neutral.meta["premise"] == 'She bought a "new" car.' and neutral.label == "neutral"
    assert neutral.text == 'Premise: She bought a "new" car.\nHypothesis: She likes red cars.'
    assert len(readers.read_xnli(path, "fr")) == 3
    with pytest.raises(InputError, match="XNLI has no Dutch"):
        readers.read_xnli(path, ["nl"])


def test_generic_csv_and_jsonl(tmp_path):
    csv, task_file = fx.generic_csv(tmp_path)
    task = load_task_file(task_file)
    items = readers.read_generic(csv, task)
    assert [it.label for it in items] == ["positive", "negative", "negative", "positive"]
    assert items[0].image.is_file() and items[1].image is None
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"id": "a", "text": "good"}\n{"id": "b", "text": "so so", "label": "meh"}\n{"text": "no id"}\n')
    problems = Problems()
    got = readers.read_generic(jl, task, problems=problems)
    assert [it.id for it in got] == ["a", "3"] and got[0].label is None
    assert problems.messages()[0].startswith(f"{jl}:2: item b: unknown label 'meh'")


# tasks and extraction ---------------------------------------------------------------------------

EXTRACTION = [
    ("hateful_memes", "Yes.", "hateful"),
    ("hateful_memes", "No", "not_hateful"),
    ("hateful_memes", "The text above is not hateful.", "not_hateful"),
    ("hateful_memes", "This meme isn't hateful; it is a joke about pets.", "not_hateful"),
    ("hateful_memes", "The text is hateful because it mocks a group of people.", "hateful"),
    ("hateful_memes", "It contains hate speech.", "hateful"),
    ("hateful_memes", "It does not contain hate speech and is harmless.", "not_hateful"),
    ("hateful_memes", 'The text is not necessarily "hateful" but rather a common phrase', "not_hateful"),  # SmolLM2 said this
    ("hateful_memes", "I don't know whether it is hateful.", NOANSWER),
    ("hateful_memes", "Chocolate chip cookies are delicious.", NOANSWER),
    ("mmimdb", "This film could be classified as a romantic comedy because of its light tone.", "comedy"),
    ("mmimdb", "Both", "both"),
    ("mmimdb", "**Both.**", "both"),
    ("mmimdb", "It is both a drama and a comedy.", "both"),
    ("mmimdb", "The movie is a drama, with some comedy in it.", "both"),
    ("mmimdb", "Drama. It is not a comedy.", "drama"),
    ("mmimdb", "comedy-drama", "both"),
    ("mmimdb", "Comedy. Both brothers are funny.", "comedy"),
    ("mmimdb", "It is a thriller.", NOANSWER),
    ("xnli", "Contradiction", "contradiction"),
    ("xnli", "The premise entails the hypothesis, so there is no contradiction.", "entailment"),
    ("xnli", "The relationship is neutral.", "neutral"),
    ("xnli", "entailment or contradiction", NOANSWER),
]


@pytest.mark.parametrize("task,text,label", EXTRACTION)
def test_extraction(task, text, label):
    assert extract(text, get_task(task)) == label


def test_multilabel_extraction_and_vote():
    genres = get_task("mmimdb_genres")
    assert extract("Action, Sci-Fi and a bit of film noir", genres) == ["action", "sci-fi", "film-noir"]
    assert extract("It is a romantic comedy, not a horror film.", genres) == ["comedy", "romance"]
    hm = get_task("hateful_memes")
    assert vote(["hateful", NOANSWER, "not_hateful", "hateful"], hm) == ("hateful", 0.5, {"hateful": 0.5, "not_hateful": 0.25})
    assert vote([NOANSWER, NOANSWER], hm)[0] == NOANSWER
    assert vote([["drama"], ["drama", "comedy"], ["drama"]], genres)[0] == ["drama"]


def test_task_files_yaml_and_errors(tmp_path):
    y = tmp_path / "topic.yaml"
    y.write_text("prompt: \"{text}\\nIs this about sport? yes or no\"\nlabels: [yes, no]\nverbalizers: {yes: Yes, no: No}\n")
    task = load_task_file(y)
    assert task.name == "topic" and task.labels == ["yes", "no"] and extract("Yes, it is.", task) == "yes"
    bad = tmp_path / "bad.toml"
    bad.write_text('prompt = "{text}"\nlabels = ["a", "b"]\nlabls = 3\n')
    with pytest.raises(InputError, match="unknown key.*labls"):
        load_task_file(bad)
    bad.write_text('prompt = "no placeholder"\nlabels = ["a", "b"]\n')
    with pytest.raises(InputError, match=r"\{text\} placeholder"):
        load_task_file(bad)
    bad.write_text('prompt = "{text}"\nlabels = ["a", "b"\n')
    with pytest.raises(InputError, match="malformed TOML"):
        load_task_file(bad)


def test_cli_extract_prints_one_label_per_line():
    res = CliRunner().invoke(app, ["extract", "--task", "mmimdb", "Both", "A gritty drama.", "no idea"])
    assert res.exit_code == 0 and res.output.splitlines() == ["both", "drama", NOANSWER]


# runs with tiny models ---------------------------------------------------------------------------


def test_generate_run_xnli_tiny_llama(tmp_path, tiny):
    data = fx.xnli(tmp_path / "xnli.test.tsv")
    cfg = RunConfig(task="xnli", data=str(data), model=f"hf:{tiny('llama')}", languages=["en", "fr"], max_new_tokens=6, samples=2, batch_size=4)
    metrics = run(cfg, tmp_path / "out")
    recs = _lines(tmp_path / "out" / "records.jsonl")
    assert [r["id"] for r in recs] == ["en-1", "fr-1", "en-2", "fr-2", "en-3", "fr-3"]
    for r in recs:
        assert len(r["raw"]) == 2 and r["target"] in readers.NLI_LABELS
        assert r["meta"]["answered"] == (r["prediction"] != NOANSWER) and r["prediction"] == vote([extract(t, get_task("xnli")) for t in r["raw"]], get_task("xnli"))[0]
    assert metrics["n"] == 6 and metrics["answer_rate"] == sum(r["meta"]["answered"] for r in recs) / 6
    assert set(metrics["per_language"]) == {"en", "fr"} and metrics["per_language"]["fr"]["n"] == 3
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["config"]["temperature"] == 0.8 and manifest["config"]["top_p"] == 0.9 and manifest["versions"]["torch"]
    with pytest.raises(ConfigMismatch, match="changed: seed"):
        run(RunConfig(**{**cfg.__dict__, "seed": 1}), tmp_path / "out")


def test_score_run_instructblip_images_auroc(tmp_path, tiny):
    root = fx.hateful_memes(tmp_path / "hm", "dev_seen")
    cfg = RunConfig(task="hateful_memes", data=str(root), split="dev_seen", model=f"hf:{tiny('instructblip-vicuna')}", mode="score", batch_size=3)
    metrics = run(cfg, tmp_path / "out")
    recs = _lines(tmp_path / "out" / "records.jsonl")
    assert len(recs) == 6 and all(r["meta"]["answered"] and r["input"]["image"].endswith(".png") for r in recs)
    for r in recs:
        probs = r["scores"]["probs"]
        assert abs(sum(probs.values()) - 1) < 1e-6 and r["prediction"] == max(probs, key=probs.get)
    assert metrics["answer_rate"] == 1.0 and 0.0 <= metrics["auroc"] <= 1.0
    assert metrics["accuracy_all"] == sum(r["prediction"] == r["target"] for r in recs) / 6


def test_user_csv_with_task_file_cli(tmp_path, tiny):
    csv, task_file = fx.generic_csv(tmp_path)
    csv.write_text(csv.read_text() + "r5,Unknown label here,,maybe\n")
    args = ["run", "--task", str(task_file), "--data", str(csv), "--model", f"hf:{tiny('llama')}", "--mode", "score", "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "problems=1" in res.output
    skipped = _lines(tmp_path / "o" / "problems.jsonl")
    assert skipped[0]["line"] == 6 and skipped[0]["item"] == "r5" and "unknown label 'maybe'" in skipped[0]["message"]
    assert [r["id"] for r in _lines(tmp_path / "o" / "records.jsonl")] == ["r1", "r2", "r3", "r4"]
    strict = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "o2"), "--strict"])
    assert isinstance(strict.exception, InputError) and str(strict.exception).startswith(f"{csv}:6: item r5: unknown label 'maybe'")
    assert not (tmp_path / "o2" / "records.jsonl").exists()


def test_resume_after_torn_write_keeps_every_item_once(tmp_path, tiny):
    root = fx.hateful_memes(tmp_path / "hm", "dev_seen")
    cfg = RunConfig(task="hateful_memes", data=str(root), split="dev_seen", model=f"hf:{tiny('llama')}", max_new_tokens=4, batch_size=2)
    out = tmp_path / "out"
    run(cfg, out)
    pred = out / "records.jsonl"
    first = _lines(pred)
    raw = pred.read_bytes().splitlines(keepends=True)
    pred.write_bytes(b"".join(raw[:2]) + raw[2][: len(raw[2]) // 2])  # killed in the middle of the third line
    run(cfg, out)
    again = _lines(pred)
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert again[:2] == first[:2]  # kept, not annotated again
    manifest = json.loads((out / "run.json").read_text())
    assert [s["items_this_session"] for s in manifest["sessions"]] == [6, 4]


def test_kill_9_mid_run_then_resume(tmp_path, tiny):
    data = tmp_path / "many.jsonl"
    data.write_text("".join(json.dumps({"id": f"x{i}", "text": f"review number {i}", "label": "positive"}) + "\n" for i in range(12)))
    _, task_file = fx.generic_csv(tmp_path)
    out = tmp_path / "out"
    cmd = [str(BIN / "annotate"), "run", "--task", str(task_file), "--data", str(data), "--model", f"hf:{tiny('llama')}",
           "--max-new-tokens", "12", "--batch-size", "1", "--out", str(out)]
    env = {**os.environ, "ANNOTAUDIT_NO_PROGRESS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pred = out / "records.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not pred.exists() or pred.read_text().count("\n") < 2):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = pred.read_text().count("\n")
    assert 2 <= partial < 12
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    ids = [r["id"] for r in _lines(pred)]
    assert ids == [f"x{i}" for i in range(12)]
    assert json.loads((out / "metrics.json").read_text())["n"] == 12


def test_two_processes_under_accelerate_launch(tmp_path, tiny):
    csv, task_file = fx.generic_csv(tmp_path)
    out = tmp_path / "out"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29731"]
    cmd = [*launch, str(BIN / "annotate"), "run", "--task", str(task_file), "--data", str(csv), "--model", f"hf:{tiny('llama')}",
           "--mode", "score", "--batch-size", "1", "--out", str(out)]
    env = {**os.environ, "ANNOTAUDIT_NO_PROGRESS": "1", "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    recs = _lines(out / "records.jsonl")
    assert [r["id"] for r in recs] == ["r1", "r2", "r3", "r4"] and not (out / "shards").exists()
    assert json.loads((out / "run.json").read_text())["processes"] == 2
    single = run(RunConfig(task=str(task_file), data=str(csv), model=f"hf:{tiny('llama')}", mode="score", batch_size=1), tmp_path / "one")
    assert [r["prediction"] for r in _lines(tmp_path / "one" / "records.jsonl")] == [r["prediction"] for r in recs]
    assert single["accuracy_all"] == json.loads((out / "metrics.json").read_text())["accuracy_all"]


def test_judge_reads_unanswered_and_report(tmp_path, tiny):
    root = fx.mmimdb(tmp_path / "mm")
    base = dict(task="mmimdb", data=str(root), model=f"hf:{tiny('llama')}", max_new_tokens=5, batch_size=4)
    run(RunConfig(**base, judge=f"hf:{tiny('llama')}"), tmp_path / "a")
    recs = _lines(tmp_path / "a" / "records.jsonl")
    judged = [r for r in recs if r["meta"]["judged"]]
    unanswered = [r for r in recs if "judge" in r["meta"]]
    assert unanswered, "random tiny model should leave some replies unanswered"
    assert all(r["prediction"] in ("drama", "comedy", "both") and r["meta"]["answered"] for r in judged)
    assert all(r["prediction"] == NOANSWER for r in unanswered if not r["meta"]["judged"])
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["judged"] == len(judged)
    run(RunConfig(**{**base, "mode": "score"}), tmp_path / "b")
    res = CliRunner().invoke(app, ["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Agreement between annotators" in md and "| mmimdb |" in md and "human" in md
    assert md.count("report_files/figure_") == 2
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "kappa" in page


def test_records_schema_run_report_and_rescoring_without_the_model(tmp_path, tiny):
    csv, task_file = fx.generic_csv(tmp_path)
    out = tmp_path / "out"
    metrics = run(RunConfig(task=str(task_file), data=str(csv), model=f"hf:{tiny('llama')}", mode="score"), out)
    recs = _lines(out / "records.jsonl")
    assert all(list(r) == list(RECORD_KEYS) for r in recs) and recs[0]["input"]["prompt"].startswith("Review: Great film")
    assert "## Per class" in (out / "report.md").read_text() and (out / "report.html").is_file()
    (out / "metrics.json").unlink()
    assert recompute(out) == metrics and json.loads((out / "metrics.json").read_text()) == metrics
    (out / "metrics.json").unlink()
    res = CliRunner().invoke(app, ["score", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text()) == metrics and f"n={metrics['n']}" in res.output


def test_an_edited_input_file_is_refused_unless_forced(tmp_path, tiny):
    csv, task_file = fx.generic_csv(tmp_path)
    cfg = RunConfig(task=str(task_file), data=str(csv), model=f"hf:{tiny('llama')}", mode="score")
    run(cfg, tmp_path / "out")
    csv.write_text(csv.read_text().replace("r4,A wonderful surprise,,positive", "r4,A wonderful surprise,,negative"))
    with pytest.raises(ConfigMismatch, match="changed: input data"):
        run(cfg, tmp_path / "out")
    assert run(cfg, tmp_path / "out", force=True)["per_class"]["negative"]["support"] == 3


def test_a_strict_problems_collector_makes_readers_stop(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "text": "x", "label": "neutral"}\n{"id": "b", "text": "y", "label": "meh"}\n')
    with pytest.raises(InputError, match=r"d.jsonl:2: item b: unknown label 'meh'"):
        readers.read_generic(data, get_task("xnli"), problems=Problems(strict=True))
