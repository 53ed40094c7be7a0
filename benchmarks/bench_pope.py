"""Questions per second of `audit pope run` against a naive loop that calls generate once per question.

Both sides use the same model and the same questions in one process; greedy predictions must be
identical. The run path batches all questions of an image together, so each image is encoded once.

    .venv/bin/python benchmarks/bench_pope.py                       # a tiny LLaVA-NeXT, built offline
    .venv/bin/python benchmarks/bench_pope.py --model llava-1.5-7b --questions coco_pope_random.json --images val2014 --limit 300
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("ANNOTAUDIT_NO_PROGRESS", "1")

from PIL import Image  # noqa: E402

from annotaudit.audit.pope.build import build_question_sets, write_questions  # noqa: E402
from annotaudit.audit.pope.protocol import read_questions  # noqa: E402
from annotaudit.audit.pope.run import PopeConfig, prompt_for, run_pope  # noqa: E402
from annotaudit.models import GenerationConfig, Request, load_model  # noqa: E402


def tiny_dataset(root: Path, n_images: int) -> tuple[Path, Path]:
    """Random images with random object sets, and a POPE random set over them."""
    rng = random.Random(0)
    names = ["dog", "cat", "person", "car", "chair", "cup", "bottle", "bench", "orange", "umbrella"]
    img_dir = root / "images"
    img_dir.mkdir()
    objects = {}
    for i in range(n_images):
        Image.new("RGB", (64, 48), tuple(rng.randrange(256) for _ in range(3))).save(img_dir / f"COCO_val2014_{i:012d}.jpg")
        objects[i] = sorted(rng.sample(names, 5))
    questions = root / "pope_random.json"
    write_questions(questions, build_question_sets(objects, ["random"], n_images=n_images)["random"])
    return questions, img_dir


def naive(model, questions, images: Path, max_new_tokens: int) -> list[str]:
    config = GenerationConfig(max_new_tokens=max_new_tokens)
    return [model.generate([Request(prompt_for(q, "en", 0), str(images / q["image"]))], config)[0].text for q in questions]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model name; default: a tiny LLaVA-NeXT built offline")
    ap.add_argument("--questions", type=Path)
    ap.add_argument("--images", type=Path)
    ap.add_argument("--limit", type=int, default=120, help="questions to time (whole images)")
    ap.add_argument("--batch-images", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pope-"))
    if args.model is None:
        from annotaudit.testing.tiny_models import tiny_llava_next

        args.model = "hf:" + str(tiny_llava_next(tmp / "tiny-llava-next"))
    if args.questions is None:
        args.questions, args.images = tiny_dataset(tmp, max(1, args.limit // 6))
    questions = read_questions(args.questions)[: args.limit]
    subset = tmp / "subset.json"
    write_questions(subset, [{k: v for k, v in q.items() if k != "_line"} for q in questions])
    model = load_model(args.model)
    naive(model, questions[:2], args.images, args.max_new_tokens)  # warm-up

    t0 = time.perf_counter()
    slow = naive(model, questions, args.images, args.max_new_tokens)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_pope(PopeConfig(subset, args.images, model, batch_images=args.batch_images, max_new_tokens=args.max_new_tokens), tmp / "run")
    t_run = time.perf_counter() - t0
    fast = [json.loads(line)["raw"] for line in (tmp / "run" / "records.jsonl").read_text().splitlines()]

    n = len(questions)
    same = sum(a == b for a, b in zip(slow, fast))
    print(f"model: {args.model}  questions: {n}  images: {len({q['image'] for q in questions})}  device: {getattr(model, 'device', '?')}")
    print(f"naive loop (generate per question): {n / t_naive:8.2f} questions/s")
    print(f"audit pope run (image-grouped):     {n / t_run:8.2f} questions/s")
    print(f"speed-up: {t_naive / t_run:.2f}x   identical greedy predictions: {same}/{n}")
    shutil.rmtree(tmp, ignore_errors=True)
    if same != n:
        sys.exit("greedy predictions differ between the two paths")


if __name__ == "__main__":
    main()
