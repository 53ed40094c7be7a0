"""The demo's second process: the same labels as in turn, its errors raised here, its output in its log, the threads given back."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from annotaudit.core.errors import InputError
from annotaudit.demo import shapes
from annotaudit.demo.pipeline import Apart, DemoConfig, annotate_task
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
    apart = Apart(annotate_task, world, model, tmp_path / "apart", "generate", cfg, log=tmp_path / "apart.log")
    assert torch.get_num_threads() == max(1, threads - 1)  # the other thread is the second process's until wait()
    assert apart.wait() == in_turn
    assert _records(tmp_path / "apart") == _records(tmp_path / "in_turn")
    assert in_turn["n"] == len(_records(tmp_path / "apart")) > 0
    assert torch.get_num_threads() == threads
    assert apart.wait() == in_turn  # asked again, the same result


def test_apart_raises_the_runs_error_and_gives_the_threads_back(world, tmp_path):
    threads = torch.get_num_threads()
    apart = Apart(annotate_task, world, "hf:" + str(tmp_path / "no_such_model"), tmp_path / "run", "generate", DemoConfig.quick(),
                  log=tmp_path / "apart.log")
    with pytest.raises(InputError, match="no_such_model"):
        apart.wait()
    assert torch.get_num_threads() == threads
    with pytest.raises(InputError, match="no_such_model"):  # asked again, the same error
        apart.wait()


def test_apart_on_one_thread_runs_the_job_at_once(world, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        apart = Apart(sorted, [3, 1, 2], log=tmp_path / "apart.log")
        assert apart.process is None and torch.get_num_threads() == 1
        assert apart.wait() == [1, 2, 3]
    finally:
        torch.set_num_threads(threads)


def test_apart_writes_the_jobs_output_to_its_log_not_the_terminal(tmp_path, capfd):
    if torch.get_num_threads() < 2:
        pytest.skip("one torch thread: the job runs in this process")
    assert Apart(print, "from the second process", log=tmp_path / "apart.log").wait() is None
    assert (tmp_path / "apart.log").read_text() == "from the second process\n"
    assert "from the second process" not in capfd.readouterr().out
