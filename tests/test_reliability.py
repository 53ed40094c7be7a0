"""Nothing lost, nothing silent: kill -9 at random points, two writers on one folder, planted pickles, damaged logs."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from annotaudit.annotate.run import RunConfig, run
from annotaudit.core.errors import InputError
from annotaudit.core.runs import RunFolderBusy, RunLock
from annotaudit.lvlm.build import build_lvlm
from annotaudit.lvlm.train import train

BIN = Path(sys.executable).parent
ENV = {**os.environ, "ANNOTAUDIT_NO_PROGRESS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in _lines(path)]


def kill_at_random_points(cmd: list[str], log: Path, kills: int, total: int, seed: int, timeout: float = 300) -> int:
    """Start `cmd`, kill -9 it at a random moment after it has written something new, `kills` times, then let it finish.

    Returns how many kills hit a running process part-way through.
    """
    rng = random.Random(seed)
    hits = 0
    for _ in range(kills):
        before = len(_lines(log))
        if before >= total:
            break
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None and len(_lines(log)) <= before:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            hits += len(_lines(log)) < total
        proc.wait()
        print(f"{Path(cmd[0]).name} {cmd[1]}: killed with {len(_lines(log))}/{total} lines")
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return hits


def _reviews(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"x{i}", "text": f"review number {i} was {'good' if i % 2 else 'bad'}",
                                        "label": "positive" if i % 2 else "negative"}) + "\n" for i in range(n)))
    return path


N_ITEMS = 40
TASK = """\
name = "sentiment"
prompt = "Review: {text}\\nIs this review positive or negative? Answer:"
labels = ["positive", "negative"]
positive = "positive"
"""


@pytest.fixture()
def review_task(tmp_path) -> tuple[Path, Path]:
    task = tmp_path / "sentiment.toml"
    task.write_text(TASK)
    return _reviews(tmp_path / "reviews.jsonl", N_ITEMS), task


def test_sampled_annotation_killed_at_random_points_resumes_to_the_uninterrupted_records(tmp_path, tiny, review_task):
    data, task = review_task
    args = ["run", "--task", str(task), "--data", str(data), "--model", f"hf:{tiny('llama')}", "--samples", "3",
            "--max-new-tokens", "6", "--batch-size", "2"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([str(BIN / "annotate"), *args, "--out", str(whole)], env=ENV, check=True, capture_output=True)
    hits = kill_at_random_points([str(BIN / "annotate"), *args, "--out", str(killed)], killed / "records.jsonl", kills=4, total=N_ITEMS, seed=1)
    assert hits >= 2
    a, b = _records(whole / "records.jsonl"), _records(killed / "records.jsonl")
    assert [r["id"] for r in b] == [f"x{i}" for i in range(N_ITEMS)]  # each item once, in order
    assert [(r["prediction"], r["raw"]) for r in a] == [(r["prediction"], r["raw"]) for r in b]  # sampling included
    assert json.loads((whole / "metrics.json").read_text())["accuracy_all"] == json.loads((killed / "metrics.json").read_text())["accuracy_all"]


def _vqa(root: Path, n: int = 8) -> Path:
    (root / "images").mkdir(parents=True)
    convs = []
    for i in range(n):
        name = ["red", "green", "blue"][i % 3]
        Image.new("RGB", (40, 30), name).save(root / "images" / f"{i}.png")
        convs.append({"id": f"s{i}", "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is it?"}, {"from": "gpt", "value": name}]})
    (root / "train.json").write_text(json.dumps(convs))
    return root


@pytest.fixture(scope="module")
def lvlm(tiny, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rel-lvlm")
    return build_lvlm(tiny("clip-vision"), tiny("mistral"), root / "built"), _vqa(root / "task")


def test_lvlm_train_killed_at_random_points_logs_each_step_once_and_ends_at_the_same_weights(tmp_path, lvlm):
    from safetensors.torch import load_file

    built, task = lvlm
    args = ["lvlm", "train", "--model", str(built), "--data", str(task / "train.json"), "--images", str(task / "images"),
            "--stage", "pretrain", "--lr", "3e-3", "--epochs", "3", "--batch-size", "1", "--save-every", "1"]
    train(built, task / "train.json", task / "images", tmp_path / "whole", "pretrain", lr=3e-3, epochs=3, batch_size=1, save_every=1)
    hits = kill_at_random_points([str(BIN / "annotaudit"), *args, "--out", str(tmp_path / "killed")],
                                 tmp_path / "killed" / "train_log.jsonl", kills=3, total=24, seed=2)
    assert hits >= 2
    steps = [r["step"] for r in _records(tmp_path / "killed" / "train_log.jsonl")]
    assert steps == list(range(1, 25))
    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(float((a[k] - b[k]).abs().max()) <= 1e-5 for k in a)


def test_pope_run_killed_at_random_points_resumes_to_the_uninterrupted_records(tmp_path, tiny):
    from test_pope import _dataset

    qdir, images = _dataset(tmp_path, n_images=6)
    args = ["audit", "pope", "run", "--questions", str(qdir), "--setting", "all", "--images", str(images),
            "--model", f"hf:{tiny('llava')}", "--max-new-tokens", "4", "--batch-images", "1"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([str(BIN / "annotaudit"), *args, "--out", str(whole)], env=ENV, check=True, capture_output=True)
    total = len(_lines(whole / "records.jsonl"))
    hits = kill_at_random_points([str(BIN / "annotaudit"), *args, "--out", str(killed)], killed / "records.jsonl", kills=3, total=total, seed=3)
    assert hits >= 2
    assert _records(whole / "records.jsonl") == _records(killed / "records.jsonl")
    assert json.loads((whole / "metrics.json").read_text())["summary"] == json.loads((killed / "metrics.json").read_text())["summary"]


def test_classify_train_killed_at_random_points_logs_each_epoch_once_and_scores_the_same(tmp_path, tiny):
    from test_classifiers import hateful_memes, tiny_flags

    data = hateful_memes(tmp_path / "hm", signal="image", sizes=(48, 16, 16))
    args = ["classify", "train", "--task", "hateful_memes", "--data", str(data), "--epochs", "4", "--patience", "4", *tiny_flags(tiny)]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([str(BIN / "annotaudit"), *args, "--out", str(whole)], env=ENV, check=True, capture_output=True)
    hits = kill_at_random_points([str(BIN / "annotaudit"), *args, "--out", str(killed)], killed / "history.jsonl", kills=3, total=4, seed=4)
    assert hits >= 2
    assert [h["epoch"] for h in _records(killed / "history.jsonl")] == [1, 2, 3, 4]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, killed))
    assert b["auroc"] == pytest.approx(a["auroc"], abs=1e-5) and b["dev"] == pytest.approx(a["dev"], abs=1e-5)


def test_planted_pickles_in_a_resume_folder_never_run(tmp_path, lvlm):
    built, task = lvlm
    kw = dict(lr=3e-3, epochs=2, batch_size=4, save_every=1)
    out = tmp_path / "run"
    train(built, task / "train.json", task / "images", out, "pretrain", max_steps=2, **kw)
    state = next((out / "checkpoints").glob("step-*/train_state"))
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    # every name a pickle-based resume would read: accelerate's files and torch's default ones
    for name in ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin", "pytorch_model.bin",
                 "process-0/optimizer.bin", "process-0/state.pkl"]:
        (state / name).parent.mkdir(exist_ok=True)
        (state / name).write_bytes(pickle.dumps(Payload()))
    train(built, task / "train.json", task / "images", out, "pretrain", **kw)
    assert not marker.exists()
    assert [r["step"] for r in _records(out / "train_log.jsonl")] == [1, 2, 3, 4]


def test_a_model_with_only_pickle_weights_is_refused_unless_allowed(tmp_path, tiny, review_task):
    import shutil

    import torch

    from annotaudit.models import load_model

    folder = tmp_path / "pickled"
    shutil.copytree(tiny("llama"), folder)
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(InputError, match="pickle weights .* --allow-pickle"):
        load_model(f"hf:{folder}")
    assert load_model(f"hf:{folder}", allow_pickle=True).generate  # the user's explicit opt-in
    with pytest.raises(InputError, match="model folder not found"):
        load_model(f"hf:{tmp_path / 'missing'}")
    data, task = review_task
    cmd = [str(BIN / "annotate"), "run", "--task", str(task), "--data", str(data), "--model", f"hf:{folder}", "--mode", "score",
           "--out", str(tmp_path / "out")]
    refused = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert refused.returncode == 2 and "--allow-pickle" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "out" / "run.json").exists()
    allowed = subprocess.run([*cmd, "--allow-pickle"], env=ENV, capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["config"]["model"] == f"hf:{folder}"


def test_second_writer_is_refused_with_the_holder_and_a_killed_holder_is_taken_over(tmp_path, tiny, review_task):
    data, task = review_task
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from annotaudit.core.runs import RunLock; "
                               f"lock = RunLock({str(out)!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    cmd = [str(BIN / "annotate"), "run", "--task", str(task), "--data", str(data), "--model", f"hf:{tiny('llama')}",
           "--mode", "score", "--out", str(out)]
    busy = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert busy.returncode == 2 and f"pid {holder.pid}" in busy.stderr and "Traceback" not in busy.stderr
    assert not (out / "run.json").exists() and not (out / "records.jsonl").exists()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    ok = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert len(_records(out / "records.jsonl")) == N_ITEMS


def test_two_processes_started_together_on_one_folder_write_each_record_once(tmp_path, tiny, review_task):
    data, task = review_task
    out = tmp_path / "out"
    cmd = [str(BIN / "annotate"), "run", "--task", str(task), "--data", str(data), "--model", f"hf:{tiny('llama')}",
           "--max-new-tokens", "8", "--batch-size", "1", "--out", str(out)]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) in ([0, 0], [0, 2])
    for rc, err in results:
        assert "Traceback" not in err and (rc == 0 or "is being written by" in err)
    assert [r["id"] for r in _records(out / "records.jsonl")] == [f"x{i}" for i in range(N_ITEMS)]
    manifest = json.loads((out / "run.json").read_text())
    assert sum(s["items_this_session"] for s in manifest["sessions"]) == N_ITEMS


def test_same_process_may_run_again_after_a_failed_run(tmp_path):
    first = RunLock(tmp_path / "o")
    second = RunLock(tmp_path / "o")  # a run that raised left `first` behind; this process takes its lock back
    second.release()
    first.release()
    child = subprocess.run([sys.executable, "-c", f"from annotaudit.core.runs import RunLock; RunLock({str(tmp_path / 'o')!r})"])
    assert child.returncode == 0
    assert issubclass(RunFolderBusy, InputError)


def test_a_damaged_line_costs_only_its_own_record(tmp_path, tiny, review_task, capsys):
    data, task = review_task
    cfg = RunConfig(task=str(task), data=str(data), model=f"hf:{tiny('llama')}", max_new_tokens=6, batch_size=4, samples=2)
    out = tmp_path / "out"
    run(cfg, out)
    path = out / "records.jsonl"
    good = _lines(path)
    damaged = list(good)
    damaged[5] = damaged[5][:40] + "#garbage"
    path.write_text("\n".join(damaged) + "\n")
    run(cfg, out)
    assert f"{path}:6:" in capsys.readouterr().err
    assert _lines(path) == good  # the others kept, the damaged one made again, identically
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["sessions"][-1]["items_this_session"] == 1


def test_a_typo_in_the_model_leaves_no_manifest_and_the_corrected_run_goes_ahead(tmp_path, tiny, review_task):
    data, task = review_task
    out = tmp_path / "out"
    bad = RunConfig(task=str(task), data=str(data), model=f"hf:{tmp_path / 'no-such-model'}", mode="score")
    with pytest.raises(InputError, match="model folder not found"):
        run(bad, out)
    assert not (out / "run.json").exists()
    good = RunConfig(task=str(task), data=str(data), model=f"hf:{tiny('llama')}", mode="score")
    assert run(good, out)["n"] == N_ITEMS


def test_an_edited_input_is_refused_like_a_changed_option(tmp_path, tiny, review_task):
    from annotaudit.core.runs import ConfigMismatch

    data, task = review_task
    cfg = RunConfig(task=str(task), data=str(data), model=f"hf:{tiny('llama')}", mode="score")
    run(cfg, tmp_path / "out")
    data.write_text(data.read_text().replace("positive", "negative"))
    with pytest.raises(ConfigMismatch, match="inputs"):
        run(cfg, tmp_path / "out")
    task.write_text(TASK.replace("Answer:", "Label:"))
    with pytest.raises(ConfigMismatch):
        run(cfg, tmp_path / "out", force=False)
    assert run(cfg, tmp_path / "out", force=True)["n"] == N_ITEMS

