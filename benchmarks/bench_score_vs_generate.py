"""Score mode against generate mode of `annotate run` on the same XNLI items, at the annotator paper's sampling.

    python benchmarks/bench_score_vs_generate.py [--model smollm2-135m-instruct] [--data xnli.test.tsv] [--items 24]
        [--samples 3] [--temperature 0.8] [--top-p 0.9] [--max-new-tokens 1024] [--batch-size 8]

Generate mode samples --samples replies per item (do_sample, temperature, top-p, up to --max-new-tokens) and
votes; score mode ranks the three label words by log-likelihood in one forward pass. Both run through
annotaudit.annotate.run.run (what `annotate run` calls), each into a fresh run folder, after one load of the
model so its GGUF cache is warm. Without --data it writes 24 English XNLI-style pairs (8 per label).
Prints items/s of each mode, the ratio, the generated lengths and how often the two modes pick the same label.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from scipy.stats import binomtest

from annotaudit.annotate.run import RunConfig, run
from annotaudit.models import load_model

PAIRS = {
    "entailment": [("A man is playing a guitar on stage.", "A man is making music."), ("Two dogs run across the snowy field.", "Animals are outside."),
                   ("The shop closes at six every evening.", "The shop is not open all night."), ("She handed the keys to her brother.", "Her brother got the keys."),
                   ("The children built a sandcastle at the beach.", "Kids were at the beach."), ("He finished the marathon in four hours.", "He ran a long race."),
                   ("The train to Rome left on time.", "A train departed."), ("Maria cooked pasta for her guests.", "Maria prepared food.")],
    "contradiction": [("The cat is sleeping on the sofa.", "The cat is chasing a mouse in the garden."), ("The museum is closed on Mondays.", "The museum opens every day."),
                      ("He has never been to France.", "He lived in Paris for ten years."), ("The glass is completely empty.", "The glass is full of water."),
                      ("It rained all day in the city.", "The city had a dry, sunny day."), ("The bridge was built last year.", "The bridge is three centuries old."),
                      ("Nobody came to the meeting.", "The meeting room was crowded."), ("The car is painted bright red.", "The car is entirely blue.")],
    "neutral": [("A woman is reading a book in the park.", "The book is a mystery novel."), ("The students waited for the bus.", "The bus was late."),
                ("He bought a new phone yesterday.", "The phone was expensive."), ("Two men are talking near the door.", "They are brothers."),
                ("The restaurant serves fish on Fridays.", "The chef comes from Naples."), ("A girl is painting a picture.", "She wants to sell it."),
                ("The team won the match.", "It was their first win of the season."), ("An old man feeds the pigeons.", "He does this every morning.")],
}


def write_xnli(path: Path) -> Path:
    """XNLI-1.0's columns (language, gold_label, sentence1, sentence2, pairID), labels interleaved."""
    rows = ["language\tgold_label\tsentence1\tsentence2\tpairID"]
    for k in range(8):
        for label, pairs in PAIRS.items():
            premise, hypothesis = pairs[k]
            rows.append(f"en\t{label}\t{premise}\t{hypothesis}\t{len(rows)}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def timed_run(cfg: RunConfig, out: Path) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    run(cfg, out)
    seconds = time.perf_counter() - start
    return seconds, [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", help="an XNLI TSV (e.g. XNLI-1.0/xnli.test.tsv); default: 24 pairs written here")
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--max-new-tokens", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("ANNOTAUDIT_NO_PROGRESS", "1")
    tmp = Path(tempfile.mkdtemp(prefix="bench-score-gen-"))
    data = args.data or str(write_xnli(tmp / "xnli.test.tsv"))
    load_model(args.model)  # the first load de-quantises a GGUF into the cache; both timed runs then load from it
    base = dict(task="xnli", data=data, model=args.model, languages=["en"], limit=args.items, batch_size=args.batch_size)
    gen_s, gen = timed_run(RunConfig(**base, mode="generate", samples=args.samples, temperature=args.temperature, top_p=args.top_p,
                                     max_new_tokens=args.max_new_tokens, do_sample=True), tmp / "generate")
    score_s, score = timed_run(RunConfig(**base, mode="score"), tmp / "score")
    n = len(gen)
    lengths = [t for r in gen for t in r["meta"]["num_tokens"]]
    same = sum(g["prediction"] == s["prediction"] for g, s in zip(gen, score))
    ci = binomtest(same, n).proportion_ci(method="wilson")
    at_cap = sum(t >= args.max_new_tokens for t in lengths)
    print(f"model {args.model}, {n} XNLI items, batch {args.batch_size}; generate: {args.samples} samples, temperature {args.temperature}, "
          f"top-p {args.top_p}, max_new_tokens {args.max_new_tokens}")
    print(f"generate  {n / gen_s:8.3f} items/s  ({gen_s:.1f} s, model load included)")
    print(f"score     {n / score_s:8.3f} items/s  ({score_s:.1f} s, model load included)")
    print(f"ratio score/generate: {gen_s / score_s:.1f}x")
    print(f"generated tokens per sample: mean {statistics.mean(lengths):.1f}, max {max(lengths)} (n={len(lengths)} samples; {at_cap} at the cap)")
    print(f"same label in both modes: {same}/{n} = {same / n:.2f} (95% Wilson CI {ci.low:.2f}-{ci.high:.2f})")
    answered = sum(r["meta"]["answered"] for r in gen)
    print(f"generate mode answered {answered}/{n} items; accuracy against gold: generate {sum(r['prediction'] == r['target'] for r in gen)}/{n}, "
          f"score {sum(r['prediction'] == r['target'] for r in score)}/{n}")


if __name__ == "__main__":
    main()
