"""The demo's annotation in a second process: the same labels as in turn, its errors raised here, the threads given back."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from annotaudit.core.errors import InputError
from annotaudit.demo import shapes
from annotaudit.demo.pipeline import AnnotationApart, DemoConfig, annotate_task
from annotaudit.testing.tiny_models import tiny_causal_lm


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> shapes.World:
    return shapes.generate_world(tmp_path_factory.mktemp("apart") / "world", n_train=4, n_val=2, n_memes=20, seed=0, image_size=32)


def _records(run: Path) -> list[tuple[str, str, list[str]]]:
    return [(r["id"], r["prediction"], r["raw"]) for r in map(json.loads, (run / "records.jsonl").read_text().splitlines())]


def test_apart_gives_the_labels_of_a_run_in_turn(world, tmp_path):
    model = "hf:" + str(tiny_causal_lm(tmp_path / "llama", chat_template="{% for m in messages %}{{ m['content'] }}\n{% endfor %}"))
    cfg = replace(DemoConfig.quick(), seed=3)
    threads = torch.get_num_threads()
    in_turn = annotate_task(world, model, tmp_path / "in_turn", "generate", cfg)
    apart = AnnotationApart(world, model, tmp_path / "apart", "generate", cfg)
    assert apart.wait() == in_turn
    assert _records(tmp_path / "apart") == _records(tmp_path / "in_turn")
    assert in_turn["n"] == len(_records(tmp_path / "apart")) > 0
    assert torch.get_num_threads() == threads


def test_apart_raises_the_runs_error_and_gives_the_threads_back(world, tmp_path):
    threads = torch.get_num_threads()
    apart = AnnotationApart(world, "hf:" + str(tmp_path / "no_such_model"), tmp_path / "run", "generate", DemoConfig.quick())
    with pytest.raises(InputError, match="no_such_model"):
        apart.wait()
    assert torch.get_num_threads() == threads
