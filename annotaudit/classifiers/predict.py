"""Label new items with a saved classifier (its safetensors weights and encoder configs, no hub needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from annotaudit.annotate import readers

from .data import TASKS, Example, TaskSpec
from .metrics import decide
from .mmbt import CONFIG_FILE, SequenceBuilder, load_classifier, uses_segments
from .train import Batcher, predict_probs


def model_folder(path: str | Path) -> Path:
    """A training output dir (its best model lives in model/) or the model folder itself."""
    path = Path(path)
    return path / "model" if (path / "model" / CONFIG_FILE).is_file() else path


def generic_examples(path: str | Path) -> list[Example]:
    """A JSONL/CSV of {id, text, [image]} (the annotate generic format); labels, if any, are ignored."""
    items = readers.read_generic(path, strict=True)
    return [Example(it.id, it.text, it.image, "") for it in items]


def predict(model_dir: str | Path, examples: list[Example], batch_size: int = 16) -> list[dict[str, Any]]:
    """One record per example: id, label (a list for multi-label tasks) and the probability of each label."""
    model, tokenizer, processor = load_classifier(model_folder(model_dir))
    cfg = model.config
    if processor is None and any(ex.image is not None for ex in examples):
        examples = [Example(ex.id, ex.text, None, ex.target, ex.text_pair) for ex in examples]  # a text-only model reads text only
    task = TASKS.get(cfg.task) or TaskSpec(cfg.task, tuple(cfg.labels), cfg.multi_label, (), "", ("", "", ""))
    builder = SequenceBuilder(tokenizer, cfg.num_image_embeds, cfg.max_length, uses_segments(model.text_encoder))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    batcher = Batcher(task, builder, processor, device)
    probs = predict_probs(model, batcher, examples, batch_size)
    labels = decide(task, probs)
    return [{"id": ex.id, "label": list(lab) if isinstance(lab, tuple) else lab, "probs": dict(zip(cfg.labels, map(float, row)))}
            for ex, lab, row in zip(examples, labels, probs)]
