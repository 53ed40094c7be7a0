"""`audit chair run`: caption COCO images with a VLM under one or more prompts, then score CHAIR.

The run goes through core.runner: each caption is scored as it is made and appended to
records.jsonl (one record per prompt and image), so a stopped run resumes where it was.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError, require_minimum
from annotaudit.core.io import read_json, read_text, safe_path
from annotaudit.core.runner import Sample, make_record, run_samples
from annotaudit.core.vocab import LANGUAGES

from .metric import caption_scores, chair_metrics, chair_report_writer, extractor, parse_image_id

# Prompts from the literature on CHAIR's prompt sensitivity, plus OPERA's and Italian versions.
PROMPT_SETS = {
    "I1": "Generate a short caption of the image.",
    "I2": "Provide a brief description of the given image.",
    "OPERA": "Please describe this image in detail.",
    "I1-it": "Genera una breve didascalia dell'immagine.",
    "I2-it": "Fornisci una breve descrizione dell'immagine.",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def resolve_prompts(prompt_set: str | None = None, prompts: Sequence[str] = ()) -> dict[str, str]:
    """Prompt id -> text, from named prompts ("I1,I2") and/or free texts (ids P1, P2, ...)."""
    out: dict[str, str] = {}
    for name in [p.strip() for p in (prompt_set or "").split(",") if p.strip()]:
        if name not in PROMPT_SETS:
            raise InputError(f"unknown prompt {name!r}; known: {', '.join(PROMPT_SETS)}")
        out[name] = PROMPT_SETS[name]
    for k, text in enumerate(prompts, 1):
        out[f"P{k}"] = text
    if not out:
        raise InputError("give --prompt TEXT or --prompt-set I1,I2")
    return out


def index_images(images_dir: str | Path) -> dict[int, Path]:
    """Image id -> file for images whose names end in their COCO id (COCO_val2014_000000310196.jpg)."""
    root = Path(images_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    index: dict[int, Path] = {}
    for f in sorted(root.iterdir()):
        if f.suffix.lower() in IMAGE_SUFFIXES:
            image_id = parse_image_id(f.name)
            if image_id is not None:
                index.setdefault(image_id, f)
    return index


def read_image_ids(path: str | Path) -> list[tuple[int, int]]:
    """(line, image id) from a file of ids or COCO file names, one a line, or a JSON list."""
    path = Path(path)
    text = read_text(path)
    if text.lstrip().startswith("["):
        data = read_json(path)
        if not isinstance(data, list):
            raise InputError("expected a JSON list of image ids", path=path)
        items = list(enumerate(data, 1))
    else:
        items = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    out = []
    for n, raw in items:
        image_id = parse_image_id(raw)
        if image_id is None:
            raise InputError(f"not an image id: {raw!r}", path=path, line=n)
        out.append((n, image_id))
    return out


def choose_images(index: dict[int, Path], truth: dict[int, set[str]], image_ids: str | Path | None = None, sample: int | None = None, seed: int = 0) -> list[int]:
    """The images to caption: those listed (each must exist and have ground truth) or a seeded sample."""
    if image_ids is not None:
        chosen = []
        for n, image_id in read_image_ids(image_ids):
            if image_id not in index:
                raise InputError(f"image {image_id} is not in the image folder", path=image_ids, line=n)
            if image_id not in truth:
                raise InputError(f"image {image_id} has no ground truth", path=image_ids, line=n)
            if image_id not in chosen:
                chosen.append(image_id)
        if not chosen:
            raise InputError("no image ids: expected one image id or COCO file name a line, or a JSON list of them", path=image_ids)
        return chosen
    if not sample or sample < 1:
        raise InputError("give --image-ids FILE or --sample N (N >= 1)")
    candidates = sorted(i for i in index if i in truth)
    if sample > len(candidates):
        raise InputError(f"--sample {sample} but only {len(candidates)} images in the folder have ground truth")
    return sorted(random.Random(seed).sample(candidates, sample))


@dataclass
class ChairConfig:
    """What `audit chair run` asks, checked on construction. `model` is a name, or a model already loaded;
    `truth` is image id -> objects, and `truth_source` says where it came from."""

    model: str | Any
    images: str | Path
    truth: dict[int, set[str]]
    prompts: dict[str, str]
    image_ids: str | Path | None = None
    sample: int | None = None
    seed: int = 0
    max_new_tokens: int = 512
    batch_size: int = 4
    language: str = "en"
    fix_quirks: bool = False
    truth_source: str = ""

    def __post_init__(self) -> None:
        if not self.prompts:
            raise InputError("give --prompt TEXT or --prompt-set I1,I2")
        if self.language not in LANGUAGES:
            raise InputError(f"language must be one of {', '.join(LANGUAGES)}, not {self.language!r}")
        require_minimum(self, ("max_new_tokens", "batch_size"), 1)
        if self.image_ids is None and (self.sample is None or self.sample < 1):
            raise InputError("give --image-ids FILE or --sample N (N >= 1)")


def run_chair(cfg: ChairConfig, out: str | Path, force: bool = False, engine: Any = None) -> dict[str, Any]:
    """Caption the chosen images under every prompt (resuming), then score; returns the metrics.

    One sample per (prompt, image), id "<prompt_id>:<image_id>"; an image's prompts share a batch,
    so `batch_size` captions make about batch_size / len(prompts) images a batch. `engine` (EngineOptions)
    says how to reach a model server; its request cache defaults to <out>/cache.
    """
    from annotaudit.models.answering import Answering, prompt_and_image

    answering = Answering.for_run(cfg.model, out, engine, needs_images="CHAIR")
    images_dir, truth, prompts, model = cfg.images, cfg.truth, cfg.prompts, answering.name
    index = index_images(images_dir)
    chosen = choose_images(index, truth, cfg.image_ids, cfg.sample, cfg.seed)
    for iid in chosen:  # before any model loads: a symlink out of the folder is refused
        try:
            safe_path(images_dir, index[iid].name)
        except InputError as exc:
            raise InputError(exc.message, path=index[iid], item=str(iid)) from None
    config = {
        "model": model, "images": str(Path(images_dir).resolve()),
        "image_ids_file": str(Path(cfg.image_ids).resolve()) if cfg.image_ids is not None else None, "image_ids": chosen, "prompts": prompts,
        "seed": cfg.seed, "max_new_tokens": cfg.max_new_tokens, "language": cfg.language, "fix_quirks": cfg.fix_quirks,
        "ground_truth": cfg.truth_source, "ground_truth_digest": _truth_digest(truth, chosen), **answering.config(),
    }
    samples = [
        Sample(f"{pid}:{iid}", {"prompt": text, "image": index[iid].name}, sorted(truth[iid]), {"prompt_id": pid, "image_id": iid}, group=str(iid))
        for iid in chosen for pid, text in prompts.items()
    ]
    solver = answering.solver(captioning(cfg.max_new_tokens, cfg.seed, cfg.language, cfg.fix_quirks), prompt_and_image(images_dir))
    return run_samples(out, config, samples, solver, lambda records: {**chair_metrics(records, cfg.language, cfg.fix_quirks), "model": model},
                       kind="chair", inputs={"images": images_dir, "image_ids": cfg.image_ids}, report=chair_report_writer(f"CHAIR of {model}"),
                       batch_size=max(1, cfg.batch_size // len(prompts)), description="captions", force=force)


def captioning(max_new_tokens: int, seed: int, language: str, fix_quirks: bool) -> Any:
    """Greedy captions, each scored as it is made."""
    from annotaudit.models import GenerationConfig
    from annotaudit.models.answering import Generate

    ext = functools.cache(lambda: extractor(language, fix_quirks))  # the vocabulary is read only when a caption comes

    def parse(reply: Any) -> dict[str, Any]:
        gen = reply.generation
        prediction, scores = caption_scores(gen.text, set(reply.sample.target), ext())
        return make_record(reply.sample, prediction, gen.text, scores, num_tokens=gen.num_tokens[0])

    return Generate(GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, seed=seed), parse)


def _truth_digest(truth: dict[int, set[str]], chosen: list[int]) -> str:
    """The chosen images' ground truth, hashed: another ground truth for them is another run."""
    text = json.dumps([[iid, sorted(truth[iid])] for iid in chosen])
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
