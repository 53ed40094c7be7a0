"""annotate with the real SmolLM2-135M-Instruct: a short generate run and a score run on Hateful Memes."""

from __future__ import annotations

import json

import pytest
import test_annotate_fixtures as fx

from annotaudit.annotate.metrics import compute
from annotaudit.annotate.run import RunConfig, annotate_generate, annotate_score, to_samples
from annotaudit.annotate.tasks import NOANSWER, get_task, read_items


@pytest.mark.slow
def test_smollm2_generate_and_score_hateful_memes(tmp_path, smollm2):
    task = get_task("hateful_memes")
    items = read_items(task, fx.hateful_memes(tmp_path / "hm", "dev_seen"), split="dev_seen")[2:6]  # two of each label
    cfg = RunConfig(task="hateful_memes", data="-", model="smollm2-135m-instruct", max_new_tokens=24, samples=2, batch_size=4)
    samples = to_samples(task, items)
    gen = annotate_generate(smollm2, samples, task, cfg)
    assert [r["id"] for r in gen] == [it.id for it in items]
    for r in gen:
        assert len(r["raw"]) == 2 and all(isinstance(t, str) and t for t in r["raw"])
        assert "<|im_start|>assistant" in r["meta"]["chat_prompt"] and items[0].text in gen[0]["meta"]["chat_prompt"]
        assert r["meta"]["answered"] == (r["prediction"] != NOANSWER)
    print(json.dumps([(r["raw"], r["prediction"]) for r in gen], indent=1))
    scored = annotate_score(smollm2, samples, task, RunConfig(**{**cfg.__dict__, "mode": "score"}))
    for r in scored:
        probs = r["scores"]["probs"]
        assert r["meta"]["answered"] and set(probs) == {"hateful", "not_hateful"} and abs(sum(probs.values()) - 1) < 1e-6
        # a real instruct model finds the label words far likelier than the random tiny ones do
        assert max(r["scores"]["logprobs"].values()) > -15
    metrics = compute(scored, task)
    assert metrics["n"] == 4 and metrics["answer_rate"] == 1.0 and metrics["auroc"] is not None
    json.dumps(gen + scored)  # records are plain JSON
