"""The training configurations refuse a bad value when they are built, and the CLI shows that refusal as one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from annotaudit.classifiers.train import ClassifierTrainConfig
from annotaudit.core.errors import InputError
from annotaudit.lvlm.train import TrainConfig


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "annotaudit.cli.main", *map(str, args)], capture_output=True, text=True, timeout=300)


def _lvlm(**changes) -> TrainConfig:
    return TrainConfig(**{"model": "m", "data": "d.json", "images": None, "stage": "finetune", "lr": 1e-5, **changes})


BAD_VALUES = [
    ("lvlm", {"batch_size": 0}, "--batch-size must be at least 1 (got 0)"),
    ("lvlm", {"stage": "pretrain", "lr": 1e-3, "lora": 8}, "--lora and --tune-vision belong to finetune"),
    ("lvlm", {"lora": 0}, "--lora is a rank of at least 1 (got 0)"),
    ("lvlm", {"lr": -1e-5}, "--lr must be 0 or more (got -1e-05)"),
    ("lvlm", {"warmup_ratio": 1.5}, "warmup_ratio is a share of the steps"),
    ("lvlm", {"precision": "fp64"}, "--precision 'fp64': use auto, bf16, fp16, no"),
    ("classify", {"num_image_embeds": 10}, "--num-image-embeds must be from 1 to 9 (got 10)"),
    ("classify", {"epochs": 0}, "--epochs must be at least 1 (got 0)"),
    ("classify", {"patience": 0}, "--patience must be at least 1 (got 0)"),
    ("classify", {"lr": -0.1}, "--lr must be 0 or more (got -0.1)"),
    ("classify", {"freeze_image_epochs": -1}, "--freeze-image-epochs must be 0 or more (got -1)"),
    ("classify", {"report_to": "mlflow"}, "--report-to 'mlflow'"),
]


@pytest.mark.parametrize(("command", "changes", "message"), BAD_VALUES)
def test_a_training_config_refuses_a_bad_value(command, changes, message):
    with pytest.raises(InputError) as err:
        _lvlm(**changes) if command == "lvlm" else ClassifierTrainConfig(**changes)
    assert message in str(err.value)


def test_the_configs_take_the_values_the_study_uses():
    lvlm = _lvlm(stage="pretrain", lr=1e-3, batch_size=32, grad_accum=8, precision="bf16")
    assert (lvlm.stage, lvlm.batch_size, lvlm.precision) == ("pretrain", 32, "bf16")
    classify = ClassifierTrainConfig()
    assert (classify.num_image_embeds, classify.epochs, classify.batch_size, classify.patience) == (3, 10, 16, 3)


def _one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


def test_lvlm_train_cli_refuses_a_bad_batch_size_before_reading_anything(tmp_path: Path):
    """The model folder does not exist: the refusal names the option, so it came before any reading."""
    result = _cli("lvlm", "train", "--model", tmp_path / "no-model", "--data", tmp_path / "no-data.json", "--stage", "finetune",
                  "--out", tmp_path / "out", "--batch-size", "0")
    assert "--batch-size must be at least 1 (got 0)" in _one_line(result)
    assert not (tmp_path / "out").exists()


def test_classify_train_cli_refuses_a_bad_image_token_count_before_reading_anything(tmp_path: Path):
    result = _cli("classify", "train", "--task", "hateful_memes", "--data", tmp_path / "no-data", "--out", tmp_path / "out",
                  "--num-image-embeds", "10")
    assert "--num-image-embeds must be from 1 to 9 (got 10)" in _one_line(result)
    assert not (tmp_path / "out").exists()
