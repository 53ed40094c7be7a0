"""--report-to: the trainers' figures reach TensorBoard (read back from the event files) or wandb (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from test_classifiers import mmimdb, tiny_flags
from typer.testing import CliRunner

from annotaudit.cli.main import app
from annotaudit.core.errors import InputError
from annotaudit.lvlm.build import build_lvlm

COLOURS = {"rosso": (220, 30, 30), "verde": (30, 200, 40), "blu": (30, 40, 220)}


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a TensorBoard folder's event files, as (step, value) pairs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def lvlm_task(tiny, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lvlm-track")
    (root / "images").mkdir()
    convs = []
    for i in range(6):
        name = list(COLOURS)[i % 3]
        Image.new("RGB", (32, 32), COLOURS[name]).save(root / "images" / f"{i}.png")
        convs.append({"id": f"s{i}", "image": f"{i}.png", "conversations": [{"from": "human", "value": "<image>\nDi che colore è?"},
                                                                            {"from": "gpt", "value": name}]})
    (root / "train.json").write_text(json.dumps(convs))
    build_lvlm(tiny("clip-vision"), tiny("mistral"), root / "built")
    return root


def test_lvlm_train_logs_its_losses_to_tensorboard(lvlm_task, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    args = ["lvlm", "train", "--model", str(lvlm_task / "built"), "--data", str(lvlm_task / "train.json"), "--images", str(lvlm_task / "images"),
            "--stage", "pretrain", "--lr", "3e-3", "--epochs", "2", "--batch-size", "2", "--out", str(out)]
    res = invoke([*args, "--report-to", "tensorboard"])
    assert res.exit_code == 0, res.output
    logged = jsonl(out / "train_log.jsonl")
    assert len(logged) == 6
    board = scalars(out / "tensorboard" / "lvlm-train")
    assert [s for s, _ in board["train/loss"]] == [r["step"] for r in logged]
    assert [v for _, v in board["train/loss"]] == pytest.approx([r["loss"] for r in logged], abs=1e-5)
    assert [v for _, v in board["train/lr"]] == pytest.approx([r["lr"] for r in logged], rel=1e-5)
    assert all(v > 0 for _, v in board["train/samples_per_s"])
    run = json.loads((out / "run.json").read_text())
    assert "report_to" not in run["config"]
    bad = CliRunner().invoke(app, [*args, "--report-to", "mlflow"])
    assert isinstance(bad.exception, InputError) and "--report-to 'mlflow': use none, tensorboard, wandb" in str(bad.exception)


def test_classify_train_logs_each_epoch_to_tensorboard_and_resumes_without_it(tiny, tmp_path):
    pytest.importorskip("tensorboard")
    data = mmimdb(tmp_path / "mmimdb", sizes=(40, 16, 16))
    out = tmp_path / "cls"
    args = ["classify", "train", "--task", "mmimdb", "--data", str(data), "--epochs", "3", "--patience", "3", "--out", str(out), *tiny_flags(tiny)]
    res = invoke([*args, "--report-to", "tensorboard"])
    assert res.exit_code == 0, res.output
    history = jsonl(out / "history.jsonl")
    board = scalars(out / "tensorboard" / "classify")
    assert [s for s, _ in board["train/loss"]] == [h["epoch"] for h in history] == [1, 2, 3]
    assert [v for _, v in board["train/loss"]] == pytest.approx([h["train_loss"] for h in history], rel=1e-5)
    assert [v for _, v in board["dev/micro_f1"]] == pytest.approx([h["dev_micro_f1"] for h in history], rel=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert board["test/micro_f1"][0][1] == pytest.approx(metrics["micro_f1"], rel=1e-5)
    assert "report_to" not in json.loads((out / "run.json").read_text())["config"]
    again = invoke([*args, "--report-to", "none"])  # where it reports is not part of the run
    assert again.exit_code == 0, again.output


def test_lvlm_train_reports_to_wandb_offline(lvlm_task, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    res = invoke(["lvlm", "train", "--model", str(lvlm_task / "built"), "--data", str(lvlm_task / "train.json"), "--images", str(lvlm_task / "images"),
                  "--stage", "pretrain", "--batch-size", "3", "--out", str(out), "--report-to", "wandb"])
    assert res.exit_code == 0, res.output
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), list((out / "wandb").rglob("*"))
