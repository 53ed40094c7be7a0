"""Commands whose output goes to a file: no library warnings, no progress frames, one line per stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

TASK = 'name = "sentiment"\nprompt = "Review: {text}\\nIs this review positive or negative? Answer:"\nlabels = ["positive", "negative"]\npositive = "positive"\n'
NOISE = ("warn", "Warn", "WARN", "torchvision", "Loading weights", "Writing model shards", "it/s]", "Traceback")


def run_logged(args: list[str], log: Path, **extra_env: str) -> str:
    """`annotaudit ARGS > log 2>&1`, as a user piping to a file would; progress left on."""
    env = {k: v for k, v in os.environ.items() if k not in ("ANNOTAUDIT_NO_PROGRESS", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    env.update(extra_env)
    with log.open("wb") as fh:
        proc = subprocess.run([sys.executable, "-m", "annotaudit.cli.main", *args], stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=600)
    text = log.read_bytes().decode()
    assert proc.returncode == 0, text
    return text


def assert_quiet(text: str) -> None:
    assert "\r" not in text, text
    noisy = [line for line in text.splitlines() if any(word in line for word in NOISE)]
    assert not noisy, text


def test_lvlm_build_and_train_logs_are_quiet(tiny, tmp_path):
    (tmp_path / "images").mkdir()
    convs = []
    for i, colour in enumerate(["rosso", "verde", "blu", "rosso"]):
        Image.new("RGB", (32, 32), {"rosso": (220, 30, 30), "verde": (30, 200, 40), "blu": (30, 40, 220)}[colour]).save(tmp_path / "images" / f"{i}.png")
        convs.append({"id": f"s{i}", "image": f"{i}.png", "conversations": [{"from": "human", "value": "<image>\nDi che colore è?"},
                                                                            {"from": "gpt", "value": colour}]})
    (tmp_path / "train.json").write_text(json.dumps(convs))
    built = tmp_path / "built"
    text = run_logged(["lvlm", "build", "--vision", str(tiny("clip-vision")), "--llm", str(tiny("mistral")), "--out", str(built)], tmp_path / "build.log")
    text += run_logged(["lvlm", "train", "--model", str(built), "--data", str(tmp_path / "train.json"), "--images", str(tmp_path / "images"),
                        "--stage", "pretrain", "--batch-size", "2", "--out", str(tmp_path / "run")], tmp_path / "train.log")
    assert_quiet(text)
    lines = text.splitlines()
    assert any(line.startswith("checking samples: 4/4 in ") for line in lines), text
    assert any(line.startswith("training (pretrain): 2/2 in ") for line in lines), text


def test_annotate_run_log_is_quiet_and_keeps_problem_lines(tiny, tmp_path):
    (tmp_path / "task.toml").write_text(TASK)
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "a", "text": "a good film"}\n{"id": "b", "text": "a bad film"}\nnot json\n{"id": "c", "text": "fine"}\n')
    text = run_logged(["annotate", "run", "--task", str(tmp_path / "task.toml"), "--data", str(data), "--model", f"hf:{tiny('llama')}",
                       "--out", str(tmp_path / "out"), "--max-new-tokens", "2", "--greedy"], tmp_path / "annotate.log")
    assert_quiet(text)
    assert f"skipped: {data}:3: malformed JSON" in text or "data.jsonl:3: malformed JSON" in text, text
    assert any(": 3/3 in " in line and "generate" in line for line in text.splitlines()), text


def test_first_gguf_load_draws_no_frames_into_a_log(tmp_path):
    """SmolLM2's GGUF file is de-quantised on its first load (an empty cache here), where transformers draws a bar of its own."""
    (tmp_path / "task.toml").write_text(TASK)
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "a", "text": "a good film"}\n{"id": "b", "text": "a bad film"}\n')
    text = run_logged(["annotate", "run", "--task", str(tmp_path / "task.toml"), "--data", str(data), "--model", "smollm2-135m-instruct",
                       "--out", str(tmp_path / "out"), "--max-new-tokens", "2", "--greedy"], tmp_path / "annotate.log", ANNOTAUDIT_CACHE=str(tmp_path / "cache"))
    assert_quiet(text)
    assert list((tmp_path / "cache" / "gguf").glob("SmolLM2-135M-Instruct*/model.safetensors")), "the load did not de-quantise into the empty cache"
    assert any(": 2/2 in " in line and "generate" in line for line in text.splitlines()), text


def test_library_build_prints_no_torchvision_fallback(tiny, tmp_path):
    """A library user keeps transformers' warnings on; building and loading an LVLM names the PIL processors itself."""
    script = (f"from annotaudit.lvlm import build_lvlm\nfrom transformers import AutoProcessor\n"
              f"build_lvlm({str(tiny('clip-vision'))!r}, {str(tiny('mistral'))!r}, {str(tmp_path / 'built')!r})\n"
              f"print(type(AutoProcessor.from_pretrained({str(tmp_path / 'built')!r}).image_processor).__name__)\n")
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "warning", "ANNOTAUDIT_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "torchvision" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("LlavaNextImageProcessor"), proc.stdout
