"""Nothing lost, nothing silent: kill -9 at random points, two writers on one folder, planted pickles, damaged logs."""

from __future__ import annotations

import io
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
    with pytest.raises(ConfigMismatch, match="input data"):
        run(cfg, tmp_path / "out")
    task.write_text(TASK.replace("Answer:", "Label:"))
    with pytest.raises(ConfigMismatch):
        run(cfg, tmp_path / "out", force=False)
    assert run(cfg, tmp_path / "out", force=True)["n"] == N_ITEMS



# Content fingerprints, full disks, pickle-only folders, nothing stale ------------------------------------------


def cli(args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """Run the annotaudit CLI in-process as the script does: (exit code, stderr); a traceback fails the test."""
    from annotaudit.cli.main import _run, app

    monkeypatch.setattr(sys, "argv", ["annotaudit", *args])
    monkeypatch.setenv("COLUMNS", "400")
    capsys.readouterr()
    try:
        _run(app)
        code = 0
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders, old checkpoint copies and empty model files under a run folder."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".old")) or (p.is_file() and p.suffix in (".json", ".safetensors") and p.stat().st_size == 0))


def disk_full(real, fail_on: int = 1, where: str = ""):
    """A stand-in for a safetensors writer that fails, as a full disk does, from its `fail_on`-th call writing a path holding `where`."""
    from safetensors import SafetensorError

    calls = []

    def save(*args, **kwargs):
        if where in str(args[1] if len(args) > 1 else kwargs.get("filename", "")):
            calls.append(args)
            if len(calls) >= fail_on:
                raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(*args, **kwargs)

    return save


def test_fingerprints_read_each_file_once_and_see_an_edit_that_keeps_size_and_mtime(tmp_path, monkeypatch):
    from annotaudit.core import io as core_io
    from annotaudit.core.runs import fingerprint

    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    for i in range(20):
        (data / "img" / f"{i}.png").write_bytes(bytes([i]) * 300)
    (data / "train.jsonl").write_text('{"id": "a", "label": 0}\n')
    time.sleep(2.1)  # older than the timestamp tick a same-tick edit could hide in, so the hashes are kept
    reads = []
    real = core_io.sha256_file
    monkeypatch.setattr(core_io, "sha256_file", lambda p: reads.append(p) or real(p))
    out = tmp_path / "run"
    first = fingerprint(data, cache_dir=out)
    assert len(reads) == 21 and (out / core_io.DIGEST_CACHE).is_file()
    reads.clear()
    assert fingerprint(data, cache_dir=out) == first and reads == []  # a rerun: one stat a file, no reads
    image = data / "img" / "3.png"
    st = image.stat()
    with open(image, "r+b") as fh:  # another image of the same name and size, its mtime put back
        fh.write(b"\xff" * 300)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    edited = fingerprint(data, cache_dir=out)
    assert edited != first and reads == [str(image)]
    assert fingerprint(data) == edited  # the cache never changes the answer
    assert fingerprint(data, cache_dir=data / "inside") == edited  # a run folder inside the data is left out of it
    assert fingerprint(tmp_path / "hub-id") is None and fingerprint(data / "train.jsonl").startswith("sha256:")


def test_an_edited_train_jsonl_or_image_of_the_same_size_is_refused_unless_forced(tmp_path, tiny, capsys, monkeypatch):
    from test_classifiers import hateful_memes, tiny_flags

    data = hateful_memes(tmp_path / "hm", signal="image", sizes=(8, 4, 4))
    args = ["classify", "train", "--task", "hateful_memes", "--data", str(data), "--epochs", "1", *tiny_flags(tiny), "--out", str(tmp_path / "out")]
    assert cli(args, capsys, monkeypatch)[0] == 0
    train = data / "train.jsonl"
    text = train.read_text()
    flipped = text.replace('"label": 0', '"label": 1', 1)
    assert flipped != text and len(flipped) == len(text)
    train.write_text(flipped)
    code, err = cli(args, capsys, monkeypatch)
    assert code == 2 and "input data" in error_line(err)
    assert cli([*args, "--force"], capsys, monkeypatch)[0] == 0
    image = data / "img" / "train_0.png"
    other = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(other, format="PNG")
    replacement = other.getvalue()
    assert len(replacement) < image.stat().st_size
    image.write_bytes(replacement + b"\0" * (image.stat().st_size - len(replacement)))  # PNG readers stop at its end
    code, err = cli(args, capsys, monkeypatch)
    assert code == 2 and "input data" in error_line(err)
    assert cli([*args, "--force"], capsys, monkeypatch)[0] == 0


def test_a_full_disk_in_classify_train_is_one_line_and_keeps_the_last_checkpoint(tmp_path, tiny, capsys, monkeypatch):
    import safetensors.torch
    from test_classifiers import hateful_memes, tiny_flags

    from annotaudit.classifiers import mmbt

    data = hateful_memes(tmp_path / "hm", signal="image", sizes=(8, 4, 4))
    out = tmp_path / "out"
    args = ["classify", "train", "--task", "hateful_memes", "--data", str(data), "--epochs", "3", "--patience", "3", *tiny_flags(tiny), "--out", str(out)]
    with monkeypatch.context() as patch:  # before anything is saved: the model's weights
        patch.setattr(mmbt, "save_model", disk_full(mmbt.save_model))
        code, err = cli(args, capsys, monkeypatch)
    line = error_line(err)
    assert code == 2 and "no space left on device" in line.lower() and f"{out / 'model.tmp' / 'model.safetensors'}" in line
    assert leftovers(out) == [] and not (out / "model").exists()
    with monkeypatch.context() as patch:  # mid-run: the second checkpoint
        patch.setattr(safetensors.torch, "save_file", disk_full(safetensors.torch.save_file, fail_on=2, where="checkpoint.tmp"))
        code, err = cli(args, capsys, monkeypatch)
    line = error_line(err)
    assert code == 2 and "no space left on device" in line.lower() and "checkpoint" in line
    assert leftovers(out) == [] and json.loads((out / "checkpoint" / "state.json").read_text())["trainer"]["epoch"] == 1
    assert cli(args, capsys, monkeypatch)[0] == 0  # space again: resumed after epoch 1
    assert [h["epoch"] for h in _records(out / "history.jsonl")] == [1, 2, 3] and leftovers(out) == []


def test_a_full_disk_in_lvlm_train_is_one_line_and_keeps_the_last_checkpoint(tmp_path, lvlm, capsys, monkeypatch):
    import transformers.modeling_utils

    built, task = lvlm
    out = tmp_path / "out"
    args = ["lvlm", "train", "--model", str(built), "--data", str(task / "train.json"), "--images", str(task / "images"), "--stage", "pretrain",
            "--epochs", "1", "--batch-size", "2", "--save-every", "1", "--out", str(out)]
    with monkeypatch.context() as patch:  # the first checkpoint
        patch.setattr(transformers.modeling_utils, "safe_save_file", disk_full(transformers.modeling_utils.safe_save_file))
        code, err = cli(args, capsys, monkeypatch)
    line = error_line(err)
    assert code == 2 and "no space left on device" in line.lower() and "step-1" in line
    assert leftovers(out) == [] and not (out / "checkpoints" / "step-1").exists()
    with monkeypatch.context() as patch:  # mid-run: the resume state of the third
        import safetensors.torch

        patch.setattr(safetensors.torch, "save_file", disk_full(safetensors.torch.save_file, fail_on=3, where="state.safetensors"))
        code, err = cli(args, capsys, monkeypatch)
    line = error_line(err)
    assert code == 2 and "no space left on device" in line.lower() and "step-3" in line and "state.safetensors" in line
    assert leftovers(out) == [] and (out / "checkpoints" / "step-2" / "train_state" / "progress.json").is_file()
    assert cli(args, capsys, monkeypatch)[0] == 0
    assert [r["step"] for r in _records(out / "train_log.jsonl")] == [1, 2, 3, 4] and leftovers(out) == []


def _die_in_a_swap(module: str, at: int) -> str:
    """Python that runs the CLI and kills itself (SIGKILL) in its `at`-th checkpoint swap, the old copy moved aside and the new not yet in place."""
    return (
        "import os, signal, sys\n"
        "import annotaudit.core.checkpoint as ck\n"
        f"import {module} as target\n"
        "real, calls = ck.swap_in, []\n"
        "def swap(tmp, folder):\n"
        "    calls.append(folder)\n"
        f"    if len(calls) == {at}:\n"
        "        if folder.exists():\n"
        "            folder.rename(ck.beside(folder, 'old'))\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(tmp, folder)\n"
        "ck.swap_in = target.swap_in = swap\n"
        "from annotaudit.cli.main import main\n"
        "sys.argv = ['annotaudit', *sys.argv[1:]]\n"
        "main()\n"
    )


def _plant_stale_temps(out: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name in ("run.json", "report.html", "metrics.json"):
        (out / f".{name}.{dead.pid}.tmp").write_text("half")


def test_killed_in_a_checkpoint_swap_a_rerun_leaves_no_tmp_or_old_file(tmp_path, tiny, lvlm):
    from test_classifiers import hateful_memes, tiny_flags

    data = hateful_memes(tmp_path / "hm", signal="image", sizes=(8, 4, 4))
    out = tmp_path / "classify"
    args = ["classify", "train", "--task", "hateful_memes", "--data", str(data), "--epochs", "2", "--patience", "2", *tiny_flags(tiny), "--out", str(out)]
    killed = subprocess.run([sys.executable, "-c", _die_in_a_swap("annotaudit.core.checkpoint", 3), *args], env=ENV, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL and any(p.name.endswith(".tmp") for p in out.iterdir())
    _plant_stale_temps(out)
    done = subprocess.run([str(BIN / "annotaudit"), *args], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert leftovers(out) == [] and [h["epoch"] for h in _records(out / "history.jsonl")] == [1, 2]

    built, task = lvlm
    out = tmp_path / "lvlm"
    args = ["lvlm", "train", "--model", str(built), "--data", str(task / "train.json"), "--images", str(task / "images"), "--stage", "pretrain",
            "--batch-size", "2", "--save-every", "1", "--out", str(out)]
    killed = subprocess.run([sys.executable, "-c", _die_in_a_swap("annotaudit.lvlm.train", 4), *args], env=ENV, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL and (out / "checkpoints" / "step-2.tmp").is_dir()
    _plant_stale_temps(out)
    done = subprocess.run([str(BIN / "annotaudit"), *args], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert leftovers(out) == [] and [r["step"] for r in _records(out / "train_log.jsonl")] == [1, 2, 3, 4]


def test_a_deleted_resume_state_is_said_to_be_missing(tmp_path, lvlm):
    built, task = lvlm
    out = tmp_path / "out"
    kw = dict(lr=3e-3, epochs=1, batch_size=2, save_every=1)
    train(built, task / "train.json", task / "images", out, "pretrain", max_steps=2, **kw)
    import shutil

    shutil.rmtree(out / "checkpoints" / "step-2" / "train_state" / "process-0")
    with pytest.raises(InputError, match="resume state is missing") as err:
        train(built, task / "train.json", task / "images", out, "pretrain", **kw)
    assert "process-0" in str(err.value) and "another number of processes" not in str(err.value)


def _pickled(source: Path, dest: Path) -> Path:
    import shutil

    import torch
    from safetensors.torch import load_file

    shutil.copytree(source, dest)
    torch.save(load_file(str(dest / "model.safetensors")), dest / "pytorch_model.bin")
    (dest / "model.safetensors").unlink()
    return dest


def test_allow_pickle_loads_pickle_only_folders_in_classify_train_lvlm_build_and_lvlm_train(tmp_path, tiny, lvlm, capsys, monkeypatch):
    from test_classifiers import hateful_memes, tiny_flags

    data = hateful_memes(tmp_path / "hm", signal="image", sizes=(8, 4, 4))
    flags = tiny_flags(tiny)
    flags[flags.index("--text-encoder") + 1] = str(_pickled(tiny("bert"), tmp_path / "bert"))
    args = ["classify", "train", "--task", "hateful_memes", "--data", str(data), "--epochs", "1", *flags, "--out", str(tmp_path / "cls")]
    code, err = cli(args, capsys, monkeypatch)
    assert code == 2 and "--allow-pickle" in error_line(err)
    assert cli([*args, "--allow-pickle"], capsys, monkeypatch)[0] == 0
    assert (tmp_path / "cls" / "model" / "model.safetensors").is_file()

    vision, llm = _pickled(tiny("clip-vision"), tmp_path / "clip"), _pickled(tiny("mistral"), tmp_path / "mistral")
    with pytest.raises(InputError, match="pickle"):
        build_lvlm(vision, llm, tmp_path / "built")
    built = build_lvlm(vision, llm, tmp_path / "built", allow_pickle=True)
    assert (built / "model.safetensors").is_file() and not (built / "model.tmp").exists()
    _, task = lvlm
    pickled_built = _pickled(built, tmp_path / "built-pickled")
    with pytest.raises(InputError, match="pickle"):
        train(pickled_built, task / "train.json", task / "images", tmp_path / "trained", "pretrain", max_steps=1)
    trained = train(pickled_built, task / "train.json", task / "images", tmp_path / "trained", "pretrain", max_steps=1, save_every=1, allow_pickle=True)
    assert (trained / "checkpoints" / "step-1" / "model.safetensors").is_file()
