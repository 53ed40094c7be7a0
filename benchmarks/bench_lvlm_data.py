"""Data preparation in `lvlm train` over several epochs, all sides in this one process on the same data:

- encoding every sample afresh each epoch (chat template, masking, image), as training did before;
- the pre-training check's kept text encodings (the default now), so an epoch only opens images;
- kept text plus `cache_images`, so an epoch after the first opens nothing;
- and the padding an epoch computes in shuffled against length-grouped batches.

    .venv/bin/python benchmarks/bench_lvlm_data.py [--images 100] [--epochs 4] [--batch-size 8]

Each picture gets four multi-turn conversations, as in the demo (two per language).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ANNOTAUDIT_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402
from transformers import AutoProcessor  # noqa: E402

from annotaudit.lvlm.build import build_lvlm  # noqa: E402
from annotaudit.lvlm.data import ConversationDataset, encode_sample, load_conversations  # noqa: E402
from annotaudit.lvlm.train import TrainConfig, _epoch_loader  # noqa: E402
from annotaudit.testing.tiny_models import tiny_causal_lm, tiny_clip_vision  # noqa: E402

OBJECTS = ["kite", "cup", "clock", "banana", "book", "pizza"]


def make_data(root: Path, n_images: int) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n_images):
        Image.new("RGB", (48 + i % 3 * 16, 48), (i * 20 % 255, 80, 160)).save(root / "images" / f"{i}.png")
        for k in range(4):
            turns = []
            for j in range(2 + (i + k) % 5):  # 2 to 6 question-answer pairs: lengths differ
                q = f"Is there a {OBJECTS[(i + j) % 6]} in the image?"
                turns += [{"from": "human", "value": "<image>\n" + q if j == 0 else q}, {"from": "gpt", "value": "Yes." if (i + j + k) % 2 else "No."}]
            recs.append({"id": f"{i}-{k}", "image": f"{i}.png", "conversations": turns})
    (root / "train.json").write_text(json.dumps(recs))
    return root


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_lvlm(tiny_clip_vision(tmp / "clip"), tiny_causal_lm(tmp / "llm", "mistral"), tmp / "lvlm")
        data = make_data(tmp / "data", args.images)
        proc, records = AutoProcessor.from_pretrained(model), load_conversations(data / "train.json")
        images, n = data / "images", len(records)

        def afresh() -> None:
            for _ in range(args.epochs):
                for rec in records:
                    encode_sample(proc, rec, images, 2048)

        def kept(cache_images: bool) -> ConversationDataset:
            ds = ConversationDataset(records, proc, images, cache_images=cache_images)
            ds.check()
            for _ in range(args.epochs):
                for i in range(n):
                    ds[i]
            return ds

        timed(lambda: kept(False))  # warm-up: lazy imports and first-call costs out of the table
        seconds = {"afresh": timed(afresh), "kept text": timed(lambda: kept(False)), "kept text + cached images": timed(lambda: kept(True))}
        print(f"{n} samples, {args.images} pictures, {args.epochs} epochs (the check included where it runs)")
        for name, s in seconds.items():
            print(f"{name:27s} {s:7.2f} s   speed-up x{seconds['afresh'] / s:.2f}")

        ds = ConversationDataset(records, proc, images)
        ds.check()
        for grouped in (False, True):
            cfg = TrainConfig(str(model), "", None, "finetune", 1e-3, batch_size=args.batch_size, group_by_length=grouped)
            batches = list(_epoch_loader(ds, cfg, 0, proc.tokenizer.pad_token_id))
            pad = sum(int((b["attention_mask"] == 0).sum()) for b in batches)
            total = sum(b["attention_mask"].numel() for b in batches)
            print(f"group_by_length={grouped!s:5s}  padding {pad / total:.1%} of {total} token positions")


if __name__ == "__main__":
    main()
