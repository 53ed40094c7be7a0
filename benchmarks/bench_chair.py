"""How fast CHAIR scores captions and builds ground truth, against a straightforward per-caption
baseline run in the same process (no singularization cache, linear synonym lookup).

    .venv/bin/python benchmarks/bench_chair.py [--captions 5000] [--images 40000]

Scoring uses the OPERA LLaVA-1.5 captions (repeated to the requested count) when
../shared/reference is present, otherwise synthetic captions.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from pathlib import Path

from annotaudit.audit import chair_words
from annotaudit.audit.chair.metric import Caption, build_ground_truth, extractor, score_captions

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "chair"
WORDS = "a the of on in with and near two some large small red white sitting standing next to table street man woman dog cat bus buses people plates cups hot dog teddy bear baby elephant wine glasses".split()


BASE_VOCAB = list(chair_words.english_vocabulary().items())
BASE_PHRASES = list(chair_words.english_phrases().items())


def baseline_extract(caption: str) -> list[str]:
    """The obvious way: split, singularize every word afresh, scan the synonym list for each word."""
    vocab, phrases = BASE_VOCAB, BASE_PHRASES
    words = [chair_words.singularize.__wrapped__(t) for t in re.findall(r"[^\W_]+(?:-[^\W_]+)*|[^\w\s]", caption.lower())]
    merged, i = [], 0
    while i < len(words):
        pair = " ".join(words[i : i + 2])
        hit = [target for phrase, target in phrases if phrase == pair]
        merged.append(hit[0] if hit else words[i])
        i += 2 if hit else 1
    if "toilet" in merged:
        merged = [w for w in merged if w != "seat"]
    return [cat for w in merged for syn, cat in vocab if syn == w]


def captions_and_truth(n: int) -> tuple[list[Caption], dict[int, set[str]]]:
    if (REF / "opera_llava-1.5_greedy.jsonl").is_file():
        rows = [json.loads(x) for x in (REF / "opera_llava-1.5_greedy.jsonl").read_text().splitlines()]
        truth = {int(k): set(v) for k, v in json.loads((REF / "opera_500_objects.json").read_text()).items()}
    else:
        rng = random.Random(0)
        rows = [{"image_id": i, "caption": " ".join(rng.choice(WORDS) for _ in range(80))} for i in range(500)]
        truth = {i: set(rng.sample(chair_words.COCO_CATEGORIES, 4)) for i in range(500)}
    caps = [Caption(rows[k % len(rows)]["image_id"], rows[k % len(rows)]["caption"], k + 1) for k in range(n)]
    return caps, truth


def bench_scoring(n: int) -> None:
    caps, truth = captions_and_truth(n)
    chair_words.singularize.cache_clear()
    t0 = time.perf_counter()
    metrics, _ = score_captions(caps, truth)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base_mentions = base_halluc = 0
    for c in caps:
        found = baseline_extract(c.caption)
        base_mentions += len(found)
        base_halluc += sum(1 for x in found if x not in truth[c.image_id])
    base = time.perf_counter() - t0
    assert (base_mentions, base_halluc) == (metrics["n_mentions"], metrics["n_hallucinated"]), "baseline disagrees"
    print(f"score {n} captions: {ours:.2f} s ({n / ours:,.0f} captions/s); baseline {base:.2f} s ({n / base:,.0f} captions/s); speed-up x{base / ours:.1f}")


def synthetic_coco(folder: Path, n_images: int) -> tuple[Path, Path]:
    """COCO-sized files: ~7 instances and 5 reference captions per image."""
    rng = random.Random(0)
    cats = [{"id": k + 1, "name": c} for k, c in enumerate(chair_words.COCO_CATEGORIES)]
    pairs = [(i, rng.randint(1, 80)) for i in range(n_images) for _ in range(rng.randint(1, 13))]
    anns = [{"id": k, "image_id": i, "category_id": c} for k, (i, c) in enumerate(pairs)]
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in range(n_images)]
    nouns = ("man", "dogs", "a bus", "two cats", "pizza", "teddy bears", "table", "people", "skis", "laptop", "giraffes")
    caps = [
        {"id": k, "image_id": k // 5, "caption": f"A {rng.choice(WORDS)} {rng.choice(nouns)} {rng.choice(WORDS)} the {rng.choice(nouns)} on a {rng.choice(WORDS)}."}
        for k in range(5 * n_images)
    ]
    inst, cap = folder / "instances.json", folder / "captions.json"
    inst.write_text(json.dumps({"images": images, "categories": cats, "annotations": anns}))
    cap.write_text(json.dumps({"images": images, "annotations": caps}))
    return inst, cap


def bench_ground_truth(n_images: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inst, cap = synthetic_coco(Path(tmp), n_images)
        n_caps = 5 * n_images
        chair_words.singularize.cache_clear()
        extractor.cache_clear()
        t0 = time.perf_counter()
        truth = build_ground_truth([inst], [cap])
        ours = time.perf_counter() - t0
        sample = json.loads(cap.read_text())["annotations"][:20000]
        t0 = time.perf_counter()
        for a in sample:
            baseline_extract(a["caption"])
        base_rate = len(sample) / (time.perf_counter() - t0)
    print(f"ground truth for {len(truth):,} images ({n_caps:,} reference captions): {ours:.2f} s ({n_caps / ours:,.0f} captions/s); "
          f"baseline caption reading {base_rate:,.0f} captions/s (on 20,000); speed-up x{(n_caps / ours) / base_rate:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--captions", type=int, default=5000)
    ap.add_argument("--images", type=int, default=40000)
    args = ap.parse_args()
    bench_scoring(args.captions)
    bench_ground_truth(args.images)


if __name__ == "__main__":
    main()
