"""annotate with the real SmolLM2-135M-Instruct: a short generate run and a score run on Hateful Memes."""

from __future__ import annotations

import json

import pytest
import test_annotate_fixtures as fx

from annotaudit.annotate.metrics import compute
from annotaudit.annotate.run import RunConfig, annotate_generate, annotate_score
from annotaudit.annotate.tasks import NOANSWER, get_task, read_items


@pytest.mark.slow
def test_smollm2_generate_and_score_hateful_memes(tmp_path, smollm2):
    task = get_task("hateful_memes")
    items = read_items(task, fx.hateful_memes(tmp_path / "hm", "dev_seen"), split="dev_seen")[2:6]  # two of each label
    cfg = RunConfig(task="hateful_memes", data="-", model="smollm2-135m-instruct", max_new_tokens=24, samples=2, batch_size=4)
    gen = annotate_generate(smollm2, items, task, cfg)
    assert [r["id"] for r in gen] == [it.id for it in items]
    for r in gen:
        assert len(r["outputs"]) == 2 and all(isinstance(t, str) and t for t in r["outputs"])
        assert "<|im_start|>assistant" in r["prompt"] and items[0].text in gen[0]["prompt"]
        assert r["answered"] == (r["label"] != NOANSWER)
    print(json.dumps([(r["outputs"], r["label"]) for r in gen], indent=1))
    scored = annotate_score(smollm2, items, task, RunConfig(**{**cfg.__dict__, "mode": "score"}))
    for r in scored:
        assert r["answered"] and set(r["scores"]) == {"hateful", "not_hateful"} and abs(sum(r["scores"].values()) - 1) < 1e-6
        # a real instruct model finds the label words far likelier than the random tiny ones do
        assert max(r["logprobs"].values()) > -15
    metrics = compute(scored, task)
    assert metrics["n"] == 4 and metrics["answer_rate"] == 1.0 and metrics["auroc"] is not None
    json.dumps(gen + scored)  # records are plain JSON
