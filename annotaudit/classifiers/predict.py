"""Label new items with a saved classifier (its safetensors weights and encoder configs, no hub needed)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from annotaudit.annotate import readers
from annotaudit.annotate.tasks import builtin_tasks
from annotaudit.core.io import read_json
from annotaudit.core.runner import Sample, make_record, run_samples
from annotaudit.core.tasks import Task

from .data import Example, as_task, from_sample, load_split, normalize_label, to_sample
from .metrics import decide, task_metrics
from .mmbt import CONFIG_FILE, WEIGHTS_FILE, MMBTConfig, SequenceBuilder, load_classifier, uses_segments
from .train import Batcher, plain_label, predict_probs


def model_folder(path: str | Path) -> Path:
    """A training output dir (its best model lives in model/) or the model folder itself."""
    path = Path(path)
    return path / "model" if (path / "model" / CONFIG_FILE).is_file() else path


def generic_examples(path: str | Path) -> list[Example]:
    """A JSONL/CSV of {id, text, [image]} (the annotate generic format); labels, if any, are ignored."""
    items = readers.read_generic(path, strict=True)
    return [Example(it.id, it.text, it.image, "") for it in items]


def classifier_task(model_dir: str | Path, task: str | Path | Task | None = None) -> Task:
    """The task a saved classifier predicts: the one given, the built-in of its name, else its own label list."""
    cfg = MMBTConfig(**read_json(model_folder(model_dir) / CONFIG_FILE))
    if task is not None:
        return as_task(task)
    known = builtin_tasks().get(cfg.task)
    if known is not None and sorted(known.classes) == sorted(cfg.labels) and known.classes_multi_label == cfg.multi_label:
        return known
    return Task(name=cfg.task or "classifier", labels=cfg.labels, prompt="{text}", multi_label=cfg.multi_label)


def predictor(model_dir: str | Path, task: Task, batch_size: int = 16, device: str | None = None):
    """Load the classifier (head in the task's class order) and return answer(samples) -> records."""
    model, tokenizer, processor = load_classifier(model_folder(model_dir), labels=task.classes)
    cfg = model.config
    builder = SequenceBuilder(tokenizer, cfg.num_image_embeds, cfg.max_length, uses_segments(model.text_encoder))
    where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(where)
    batcher = Batcher(task, builder, processor, where)

    def answer(samples: list[Sample]) -> list[dict[str, Any]]:
        examples = [from_sample(s) for s in samples]
        if processor is None:  # a text-only model reads text only
            examples = [Example(ex.id, ex.text, None, ex.target, ex.text_pair) for ex in examples]
        probs = predict_probs(model, batcher, examples, batch_size)
        return [make_record(s, plain_label(label), None, dict(zip(task.classes, map(float, row))))
                for s, label, row in zip(samples, decide(task, probs), probs)]

    return answer


def predict(model_dir: str | Path, examples: list[Example], batch_size: int = 16, task: str | Path | Task | None = None) -> list[dict[str, Any]]:
    """One record per example (id, input, target, prediction, raw, scores: each class's probability, meta)."""
    answer = predictor(model_dir, classifier_task(model_dir, task), batch_size)
    return answer([to_sample(ex) for ex in examples])


def prediction_metrics(task: Task, records: list[dict[str, Any]]) -> dict[str, Any]:
    """How often each class was predicted; with human labels on every item, the task's metrics too."""
    counts: Counter[str] = Counter()
    for r in records:
        counts.update(r["prediction"] if isinstance(r["prediction"], list) else [r["prediction"]])
    out: dict[str, Any] = {"task": task.name, "n": len(records), "predicted": {c: counts.get(c, 0) for c in task.classes}}
    if all(r["target"] not in (None, "") for r in records):
        probs = np.array([[r["scores"][c] for c in task.classes] for r in records])
        targets = [normalize_label(task, r["target"], r["id"]) for r in records]
        out.update(task_metrics(task, probs, targets))
    return out


def classify_predict(model_dir: str | Path, data: str | Path, out: str | Path, task: str | Path | Task | None = None,
                     split: str | None = None, languages: str = "en", batch_size: int = 16, force: bool = False) -> dict[str, Any]:
    """`classify predict`: label a generic JSONL/CSV (or, with a task, one split of its dataset) into a run folder.

    Writes run.json, records.jsonl and metrics.json (predicted class counts; the task's metrics when
    the items carry human labels). Rerunning resumes.
    """
    spec = classifier_task(model_dir, task)
    if task is not None:
        split = split or spec.splits[2]
        examples = load_split(spec, data, split, languages, labelled=False)
    else:
        examples = generic_examples(data)
    folder = model_folder(model_dir)
    config = {"model": str(model_dir), "task": spec.name, "data": str(data), "split": split, "languages": languages}
    return run_samples(out, config, [to_sample(ex) for ex in examples],
                       lambda device: predictor(model_dir, spec, batch_size, device),
                       lambda records: prediction_metrics(spec, records),
                       kind="classify-predict", inputs={"model": folder / WEIGHTS_FILE, "data": data}, batch_size=batch_size, description="classifying", force=force)
