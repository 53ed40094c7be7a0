"""Resamples per second of compare's bootstrap, each figure from its MetricSpec, against a per-item Python loop.

Both sides run in one process on the same synthetic records and the same cluster draws. The
vectorised side is what `compare` does: one weight matrix, each spec's aggregate called once. The
loop side is the straightforward alternative: for each resample, list the drawn records (an item
drawn twice appears twice) and call the command's own metric function on them. The two must give
the same figures, which the script checks before timing. The loop is slow, so it runs fewer
resamples; the rates are per resample.

Given the folder of a demo (`annotaudit demo --quick --out DIR`), it also times `compare` on the
demo's run folders, tables only, as `annotaudit compare` builds them.

    .venv/bin/python benchmarks/bench_compare.py
    .venv/bin/python benchmarks/bench_compare.py --demo ci-out --resamples 1000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("ANNOTAUDIT_NO_PROGRESS", "1")

import numpy as np  # noqa: E402

from annotaudit.annotate import metrics as annotation  # noqa: E402
from annotaudit.annotate.tasks import get_task  # noqa: E402
from annotaudit.audit import chair, pope  # noqa: E402
from annotaudit.classifiers import metrics as classifier  # noqa: E402
from annotaudit.compare import measures  # noqa: E402
from annotaudit.compare.bootstrap import draw_weights  # noqa: E402
from annotaudit.lvlm import evaluate as vqa  # noqa: E402

Records = list[dict[str, Any]]


def pope_records(rng: random.Random, images: int) -> Records:
    """Six questions an image, half of them about objects in it; answers right 80% of the time."""
    out = []
    for i in range(images):
        for q in range(6):
            label = "yes" if q % 2 == 0 else "no"
            answer = label if rng.random() < 0.8 else rng.choice(["yes", "no", "unknown"])
            out.append({"id": f"{i}-{q}", "input": {"image": f"{i}.jpg"}, "target": label, "prediction": answer, "meta": {"question_id": f"{i}-{q}"}})
    return out


def chair_records(rng: random.Random, captions: int) -> Records:
    out = []
    for i in range(captions):
        mentions = rng.randint(0, 6)
        hallucinated = sum(rng.random() < 0.2 for _ in range(mentions))
        scores = {"chair_s": int(hallucinated > 0), "n_hallucinated": hallucinated, "n_mentions": mentions, "n_words": rng.randint(5, 30),
                  "recalled": ["x"] * (mentions - hallucinated)}
        out.append({"id": str(i), "target": ["x"] * rng.randint(mentions - hallucinated, 8), "scores": scores, "meta": {"image_id": i}})
    return out


def annotate_records(rng: random.Random, items: int) -> Records:
    labels = ["hateful", "not hateful"]
    out = []
    for i in range(items):
        target = rng.choice(labels)
        answered = rng.random() < 0.9
        prediction = (target if rng.random() < 0.7 else rng.choice(labels)) if answered else "NOANSWER"
        out.append({"id": str(i), "target": target, "prediction": prediction, "meta": {"answered": answered}})
    return out


def vqa_records(rng: random.Random, questions: int) -> Records:
    words = ["rosso", "blu", "due", "tre", "gatto", "cane"]
    return [{"id": str(i), "input": {"image": f"{i // 2}.jpg"}, "target": rng.choice(words), "prediction": rng.choice(words) + rng.choice(["", " e altro"]),
             "meta": {"question_id": str(i), "formatting": "post"}} for i in range(questions)]


def classify_records(rng: random.Random, task: Any, items: int) -> Records:
    out = []
    for i in range(items):
        target = rng.choice(task.classes)
        p = min(max(rng.gauss(0.65 if target == task.positive else 0.35, 0.2), 0.0), 1.0)
        p = round(p, 2)  # ties, as a classifier's rounded scores have them
        out.append({"id": str(i), "target": target, "scores": {c: (p if c == task.positive else 1 - p) for c in task.classes}})
    return out


def drawn(records: Records, row: np.ndarray) -> Records:
    """The records of one resample: each as many times as it was drawn."""
    return [r for r, w in zip(records, row) for _ in range(int(w))]


def loops(task: Any) -> dict[str, Callable[[Records], dict[str, float]]]:
    """Each kind's figures on a list of records, from the command's own metric function."""
    def pope_loop(records: Records) -> dict[str, float]:
        return pope.metrics([r["target"] for r in records], [r["prediction"] for r in records])

    def annotate_loop(records: Records) -> dict[str, float]:
        found = annotation.compute(records, task["annotate"])
        return {"accuracy": found.get("accuracy_all"), "answer_rate": found["answer_rate"]}

    def vqa_loop(records: Records) -> dict[str, float]:
        return vqa.summarize_formattings(records, ["post"])["formattings"]["post"]

    def classify_loop(records: Records) -> dict[str, float]:
        probs = np.array([[r["scores"][c] for c in task["classify"].classes] for r in records])
        return classifier.task_metrics(task["classify"], probs, [r["target"] for r in records])

    return {"pope": pope_loop, "chair": chair.chair_metrics, "annotate": annotate_loop, "vqa": vqa_loop, "classify": classify_loop}


def bench_kind(name: str, items: Any, stats: dict[str, Any], records: Records, loop: Callable[[Records], dict[str, float]],
               resamples: int, loop_resamples: int) -> tuple[float, float]:
    weights = draw_weights(items.clusters, resamples, 0)
    for k in range(3):  # same figures both ways, on the first draws
        expected = loop(drawn(records, weights[k]))
        for metric, stat in stats.items():
            got, want = float(stat(items.arrays, weights[k:k + 1])[0]), expected[metric]
            assert (want is None and np.isnan(got)) or abs(got - want) <= 1e-9, (name, metric, got, want)
    start = time.perf_counter()
    for stat in stats.values():
        stat(items.arrays, weights)
    vectorised = (time.perf_counter() - start) / resamples
    start = time.perf_counter()
    for row in weights[:loop_resamples]:
        loop(drawn(records, row))
    looped = (time.perf_counter() - start) / loop_resamples
    return vectorised, looped


def bench_demo(folder: Path, resamples: int) -> None:
    """compare's tables on the demo's run folders, as the demo compares them (its text-only arm labelled apart)."""
    from annotaudit.compare import comparison_tables

    parts = [*sorted(folder.glob("audit_*/*")), *sorted(folder.glob("annotate_*")), folder / "classify", folder / "classify_text_only"]
    runs = [p for p in parts if (p / "run.json").is_file()]
    labels = [f"human, text only={folder / 'classify_text_only'}"] if folder / "classify_text_only" in runs else []
    start = time.perf_counter()
    tables = comparison_tables(runs, labels, resamples=resamples)
    print(f"\ncompare on the {len(runs)} run folders of {folder}: {len(tables)} tables in {time.perf_counter() - start:.2f} s ({resamples} resamples)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500, help="clusters per kind (POPE images, captions, items)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--loop-resamples", type=int, default=20)
    parser.add_argument("--demo", type=Path, help="a demo folder: also time compare on its run folders")
    args = parser.parse_args()
    rng = random.Random(0)
    task = {"annotate": get_task("hateful_memes"), "classify": get_task("hateful_memes")}
    loop = loops(task)
    pope_recs, chair_recs, annotate_recs = pope_records(rng, args.size), chair_records(rng, args.size), annotate_records(rng, args.size)
    vqa_recs, classify_recs = vqa_records(rng, 2 * args.size), classify_records(rng, task["classify"], args.size)
    kinds = {
        "pope": (*measures.pope_figures(pope_recs, "random"), pope_recs),
        "chair": (*measures.chair_figures(chair_recs), chair_recs),
        "annotate": (*measures.annotate_figures(annotate_recs), annotate_recs),
        "vqa": (*measures.vqa_figures(vqa_recs), vqa_recs),
        "classify": (*measures.mmbt_figures([classify_recs], task["classify"]), classify_recs),
    }
    print(f"{'kind':<9} {'items':>6} {'figures':>7} {'specs ms/resample':>18} {'loop ms/resample':>17} {'loop / specs':>13}")
    for name, (items, stats, records) in kinds.items():
        vectorised, looped = bench_kind(name, items, stats, records, loop[name], args.resamples, args.loop_resamples)
        print(f"{name:<9} {len(items):>6} {len(stats):>7} {1000 * vectorised:>18.3f} {1000 * looped:>17.3f} {looped / vectorised:>12.0f}x")
    if args.demo:
        bench_demo(args.demo, args.resamples)


if __name__ == "__main__":
    main()
