"""generate vs score mode, and batched vs unbatched generation, on the same items in one process.

Usage: python benchmarks/bench_annotate_modes.py [--model hf:PATH|NAME] [--items 16] [--max-new-tokens 32]
Without --model a tiny random Llama is built offline. Prints items/s of each side and the ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from annotaudit.annotate.readers import Item
from annotaudit.annotate.run import RunConfig, annotate_generate, annotate_score, to_samples
from annotaudit.annotate.tasks import get_task
from annotaudit.models import load_model


def _rate(fn, model, samples, task, cfg) -> float:
    start = time.perf_counter()
    for i in range(0, len(samples), cfg.batch_size):
        fn(model, samples[i : i + cfg.batch_size], task, cfg)
    return len(samples) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model")
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    name = args.model
    if not name:
        from annotaudit.testing.tiny_models import tiny_causal_lm

        name = "hf:" + str(tiny_causal_lm(Path(tempfile.mkdtemp()) / "llama"))
    model = load_model(name)
    task = get_task("hateful_memes")
    samples = to_samples(task, [Item(f"m{i}", f"meme text number {i} about cats and dogs") for i in range(args.items)])
    base = dict(task="hateful_memes", data="-", model=name, max_new_tokens=args.max_new_tokens)
    annotate_generate(model, samples[:2], task, RunConfig(**base, batch_size=2))  # warm-up
    gen = _rate(annotate_generate, model, samples, task, RunConfig(**base, batch_size=args.batch_size))
    score = _rate(annotate_score, model, samples, task, RunConfig(**base, mode="score", batch_size=args.batch_size))
    single = _rate(annotate_generate, model, samples, task, RunConfig(**base, batch_size=1))
    print(f"model {model.entry.name}, {args.items} items, max_new_tokens {args.max_new_tokens}, batch {args.batch_size}")
    print(f"generate (batched)   {gen:8.2f} items/s")
    print(f"score                {score:8.2f} items/s   score/generate = {score / gen:.2f}x")
    print(f"generate (batch 1)   {single:8.2f} items/s   batched/unbatched = {gen / single:.2f}x")


if __name__ == "__main__":
    main()
