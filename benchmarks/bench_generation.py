"""Batched generation against one input at a time, same inputs, identical greedy outputs.

    python benchmarks/bench_generation.py [--model smollm2-135m-instruct] [--n 64] [--batch-size 8,16,32]

Without --model it builds a tiny Llama offline. The prompts go in chunks of the largest batch size; each
chunk runs one at a time and then at every batch size before the next chunk starts, so a change in the
machine's load falls on all sides alike. Prints samples/s of each side and the ratio per batch size, and
fails if any batched text differs from its one-at-a-time text.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from annotaudit.models import GenerationConfig, Request, load_model
from annotaudit.testing.tiny_models import tiny_causal_lm

PROMPTS = [
    "Is the text above hateful?", "Identify the genre of this movie? Options: drama, comedy or both.",
    "What is the capital of France?", "Generate a short caption of the image.", "C'è un cane nell'immagine?",
    "Provide a brief description of the given image.", "Rispondi in modo breve e diretto.", "Is there a dog in the image?",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="registry name or hf:path; default: a tiny Llama built here")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", default="8,16,32", help="one batch size or several, comma-separated")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args()
    name = args.model or "hf:" + str(tiny_causal_lm(tempfile.mkdtemp() + "/tiny-llama"))
    model = load_model(name)
    requests = [Request(f"{PROMPTS[i % len(PROMPTS)]} ({i})") for i in range(args.n)]
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens)
    model.generate(requests[:2], cfg)  # warm-up

    sizes = [int(b) for b in str(args.batch_size).split(",")]
    single, t_single = [], 0.0
    batched: dict[int, list] = {b: [] for b in sizes}
    t_batched = dict.fromkeys(sizes, 0.0)
    for c in range(0, len(requests), max(sizes)):
        chunk = requests[c : c + max(sizes)]
        start = time.perf_counter()
        single += [model.generate([r], cfg)[0].texts for r in chunk]
        t_single += time.perf_counter() - start
        for size in sizes:
            start = time.perf_counter()
            for i in range(0, len(chunk), size):
                batched[size] += [g.texts for g in model.generate(chunk[i : i + size], cfg)]
            t_batched[size] += time.perf_counter() - start
    print(f"model: {name}, {args.n} prompts, max_new_tokens {args.max_new_tokens}, torch threads {torch.get_num_threads()}")
    print(f"one at a time: {args.n / t_single:8.2f} samples/s")
    differ = []
    for size in sizes:
        same = sum(a == b for a, b in zip(single, batched[size]))
        print(f"batched (bs={size:>2}): {args.n / t_batched[size]:8.2f} samples/s  ratio {t_single / t_batched[size]:5.2f}x  identical texts {same}/{args.n}")
        differ += [size] if same != args.n else []
    if differ:
        raise SystemExit(f"batched and one-at-a-time greedy outputs differ at batch size {differ}")


if __name__ == "__main__":
    main()
