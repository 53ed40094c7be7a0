"""Training throughput of `lvlm train`: samples/s and tokens/s against batch size and gradient
checkpointing, with peak memory; both checkpointing settings run in this one process.

    .venv/bin/python benchmarks/bench_lvlm_train.py [--steps 6] [--batch-sizes 1,2,4,8]

Peak memory is the CUDA allocator's peak on a GPU, and the growth of the process's sampled resident set
over the run on a CPU (a coarser measure, since the allocator keeps freed pages).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("ANNOTAUDIT_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from annotaudit.lvlm.build import build_lvlm  # noqa: E402
from annotaudit.lvlm.train import train  # noqa: E402
from annotaudit.testing.tiny_models import tiny_causal_lm, tiny_clip_vision  # noqa: E402


def make_data(root: Path, n: int) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        Image.new("RGB", (40 + i % 3 * 8, 32), (i * 20 % 255, 80, 160)).save(root / "images" / f"{i}.png")
        recs.append({"id": str(i), "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescrivi l'immagine."},
            {"from": "gpt", "value": "Un cerchio rosso e un quadrato blu su uno sfondo bianco. " * 3}]})
    (root / "train.json").write_text(json.dumps(recs))
    return root


class PeakRSS(threading.Thread):
    """Samples the resident set every few milliseconds; `peak` minus `base` is the run's growth."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.proc, self.stop = psutil.Process(), threading.Event()
        self.base = self.peak = self.proc.memory_info().rss

    def run(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)


def run_one(model: Path, data: Path, out: Path, batch_size: int, checkpointing: bool, steps: int) -> dict:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    sampler = PeakRSS()
    sampler.start()
    train(model, data / "train.json", data / "images", out, "finetune", lr=1e-4, batch_size=batch_size,
          gradient_checkpointing=checkpointing, max_steps=steps, force=True)
    sampler.stop.set()
    sampler.join()
    manifest = json.loads((out / "run.json").read_text())
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else sampler.peak - sampler.base
    return {"batch_size": batch_size, "grad_ckpt": checkpointing, "samples_per_s": manifest["samples_per_s"],
            "tokens_per_s": manifest["tokens_per_s"], "peak_mem_mb": round(peak / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-sizes", default="1,2,4,8")
    args = ap.parse_args()
    sizes = [int(v) for v in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_lvlm(tiny_clip_vision(tmp / "clip"), tiny_causal_lm(tmp / "llm", "mistral"), tmp / "lvlm")
        data = make_data(tmp / "data", max(sizes) * args.steps + 1)  # no epoch end, so no checkpoint inside the timing
        run_one(model, data, tmp / "warmup", 1, False, 2)  # first-call costs (allocator, lazy imports) out of the table
        rows = []
        for bs in sizes:
            for checkpointing in (False, True):
                rows.append(run_one(model, data, tmp / f"run-{bs}-{checkpointing}", bs, checkpointing, args.steps))
                print(json.dumps(rows[-1]), flush=True)
    print("\nbatch  grad_ckpt  samples/s  tokens/s  peak MB")
    for r in rows:
        print(f"{r['batch_size']:5d}  {str(r['grad_ckpt']):9s}  {r['samples_per_s']:9.2f}  {r['tokens_per_s']:8.1f}  {r['peak_mem_mb']:7.1f}")
    for bs in sizes:
        off, on = (next(r for r in rows if r["batch_size"] == bs and r["grad_ckpt"] is g) for g in (False, True))
        print(f"batch {bs}: gradient checkpointing speed ratio (on/off) {on['tokens_per_s'] / off['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
