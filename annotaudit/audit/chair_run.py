"""`audit chair run`: caption COCO images with a VLM under one or more prompts, then score CHAIR.

Captions go to captions.jsonl as they are made (one record per prompt and image), so a run that is
stopped resumes where it was; the manifest run.json records the configuration.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.runs import RunDir, console, progress

from .chair import Caption, Problems, parse_image_id, score_captions, write_results

# Prompts from the literature on CHAIR's prompt sensitivity, plus OPERA's and Italian versions.
PROMPT_SETS = {
    "I1": "Generate a short caption of the image.",
    "I2": "Provide a brief description of the given image.",
    "OPERA": "Please describe this image in detail.",
    "I1-it": "Genera una breve didascalia dell'immagine.",
    "I2-it": "Fornisci una breve descrizione dell'immagine.",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
OUTPUTS = ("captions.jsonl", "details.jsonl", "metrics.json", "report.md", "report.html", "report_files")


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
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        items = list(enumerate(json.loads(text), 1))
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
        return chosen
    if not sample or sample < 1:
        raise InputError("give --image-ids FILE or --sample N (N >= 1)")
    candidates = sorted(i for i in index if i in truth)
    if sample > len(candidates):
        raise InputError(f"--sample {sample} but only {len(candidates)} images in the folder have ground truth")
    return sorted(random.Random(seed).sample(candidates, sample))


def run_chair(
    model: str, images_dir: str | Path, truth: dict[int, set[str]], out: str | Path, prompts: dict[str, str], image_ids: str | Path | None = None,
    sample: int | None = None, seed: int = 0, max_new_tokens: int = 512, batch_size: int = 4, language: str = "en", fix_quirks: bool = False,
    force: bool = False, truth_source: str = "", loader: Any = None,
) -> dict[str, Any]:
    """Caption the chosen images under every prompt (resuming), then score; returns the metrics."""
    index = index_images(images_dir)
    chosen = choose_images(index, truth, image_ids, sample, seed)
    config = {
        "model": model, "images": str(Path(images_dir).resolve()), "image_ids": chosen, "prompts": prompts, "seed": seed,
        "max_new_tokens": max_new_tokens, "language": language, "fix_quirks": fix_quirks, "ground_truth": truth_source,
    }
    run = RunDir(out, config, force=force, outputs=OUTPUTS)
    log = run.log("captions.jsonl", key="id")
    done = log.done_keys()
    todo = [(pid, iid) for iid in chosen for pid in prompts if f"{pid}:{iid}" not in done]  # an image's prompts together
    started, made = time.time(), 0
    if todo:
        made = _generate(model, index, prompts, todo, log, max_new_tokens, batch_size, seed, loader)
    seconds = time.time() - started
    records = log.read()
    captions = [Caption(r["image_id"], r["caption"], k + 1, r["prompt_id"], {"id": r["id"]}) for k, r in enumerate(records)]
    metrics, details = score_captions(captions, truth, language, fix_quirks, Problems(strict=True), source=log.path)
    metrics["model"] = model
    write_results(out, metrics, details, title=f"CHAIR of {model}")
    run.finish(captions=len(records), generated=made, captions_per_s=round(made / seconds, 3) if made and seconds else None)
    return metrics


def _generate(model_name: str, index: dict[int, Path], prompts: dict[str, str], todo: list[tuple[str, int]], log: Any, max_new_tokens: int, batch_size: int, seed: int, loader: Any) -> int:
    from annotaudit.models import GenerationConfig, Request, load_model

    model = (loader or load_model)(model_name)
    if not model.accepts_images:
        raise InputError(f"model {model_name!r} does not take images; CHAIR needs a vision-language model")
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, seed=seed)
    console.print(f"captioning {len(todo)} (prompt, image) pairs with {model_name}")
    with progress("captions", total=len(todo)) as advance:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            gens = model.generate([Request(prompts[p], image=index[i]) for p, i in batch], config)
            log.append(
                {"id": f"{p}:{i}", "image_id": i, "prompt_id": p, "prompt": prompts[p], "image": index[i].name, "caption": g.text, "num_tokens": g.num_tokens[0]}
                for (p, i), g in zip(batch, gens)
            )
            advance(len(batch))
    return len(todo)
