"""What substituting LLM labels for human labels costs a classifier: train on human labels and on each LLM run
with the same seeds, and evaluate all on the same human test split (`classify compare`)."""

from __future__ import annotations

import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from annotaudit.core.io import write_json
from annotaudit.core.report import Report
from annotaudit.core.runner import METRICS, REPORT_FILES
from annotaudit.core.runs import RunDir, console
from annotaudit.core.tasks import Task

from .data import Example, as_task, load_splits, read_llm_labels, relabel
from .metrics import label_quality
from .train import ClassifierTrainConfig, train_classifier

# Mohta et al. 2023, MMBT trained on human vs LLM labels (Table: Hateful Memes and MM-IMDB).
STUDY = {"hateful_memes": (0.64, 0.60, "InstructBLIP-Vicuna-7B"), "mmimdb": (0.84, 0.75, "InstructBLIP-Flan-T5-XXL")}


def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}_{n}", n + 1
    taken.add(slug)
    return slug


def mean_std(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds (std 0 for a single seed)."""
    arr = np.array(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "values": [float(v) for v in arr]}


def train_label_sources(task: Task, splits: tuple[list[Example], list[Example], list[Example]], runs: list[str | Path], seeds: int,
            cfg: ClassifierTrainConfig, out: str | Path, noanswer: str = "drop", data: str = "", force: bool = False) -> dict[str, Any]:
    """Every arm (human, then each run) trained once per seed; metrics.json and the report in `out`."""
    train, dev, test = splits
    out = Path(out)
    llms = [read_llm_labels(task, r) for r in runs]
    taken = {"human"}
    arms: list[tuple[str, str, list[Example], dict[str, int] | None]] = [("human", "human", train, None)]
    for llm in llms:
        examples, counts = relabel(train, llm, noanswer, task)
        arms.append((llm.name, _slug(llm.name, taken), examples, counts))
    config = {"task": task.name, "data": str(data), "runs": [str(r) for r in runs], "seeds": seeds, "noanswer": noanswer, **asdict(cfg)}
    config.pop("cpu")
    config.pop("allow_pickle")
    inputs = {"data": data or None, **{f"labels_{k}": llm.path for k, llm in enumerate(llms, 1)}}
    run = RunDir(out, config, kind="classify-compare", inputs=inputs, items=len(arms) * seeds, force=force,
                 outputs=[METRICS, *REPORT_FILES] + [slug for _, slug, _, _ in arms])
    seed_list = [cfg.seed + k for k in range(seeds)]
    results: dict[str, Any] = {}
    for name, slug, examples, counts in arms:
        per_seed = []
        for seed in seed_list:
            console.print(f"[bold]{name}[/bold] labels, seed {seed}")
            per_seed.append(train_classifier(task, examples, dev, test, replace(cfg, seed=seed), out / slug / f"seed_{seed}",
                                             force=force, extra_config={"labels": name, "noanswer": noanswer}))
        metric_names = [m for m in ("auroc", "accuracy", "micro_f1", "macro_f1") if m in per_seed[0]]
        results[name] = {"dir": slug, "n_train": len(examples), **({"label_counts": counts} if counts else {}),
                         **{m: mean_std([r[m] for r in per_seed]) for m in metric_names}}
    human = {ex.id: ex.target for ex in train + dev + test}
    quality = {llm.name: label_quality(task, human, llm) for llm in llms}
    metrics = {"task": task.name, "primary": task.primary, "metrics": list(task.metrics), "seeds": seed_list, "results": results, "label_quality": quality}
    write_json(Path(out) / METRICS, metrics)
    build_report(task, metrics).write(out)
    run.finish(trainings=len(arms) * seeds)
    return metrics


def classify_compare(task: str | Path | Task, data: str | Path, runs: list[str | Path], out: str | Path, seeds: int = 3,
                     cfg: ClassifierTrainConfig | None = None, noanswer: str = "drop", splits: list[str] | None = None,
                     languages: str = "en", force: bool = False) -> dict[str, Any]:
    """`classify compare`: read the task's splits from `data`, then `train_label_sources`."""
    spec = as_task(task)
    return train_label_sources(spec, load_splits(spec, data, splits, languages), runs, seeds, cfg or ClassifierTrainConfig(), out,
                               noanswer=noanswer, data=str(data), force=force)


def _pm(summary: dict[str, Any]) -> str:
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def build_report(task: Task, metrics: dict[str, Any]) -> Report:
    """The study's table (mean ± std over seeds), a chart, and each LLM's label quality."""
    seeds = metrics["seeds"]
    report = Report(f"MMBT on human vs LLM labels: {task.name}")
    report.text(f"Each model is trained with seeds {', '.join(map(str, seeds))} and evaluated on the same human-labelled test split. "
                f"Early stopping uses the human dev split for every arm, so the training labels are the only difference.")
    rows = []
    for name, res in metrics["results"].items():
        row: dict[str, Any] = {"training labels": name, "train items": res["n_train"]}
        row.update({m: _pm(res[m]) for m in task.metrics if m in res})
        rows.append(row)
    report.heading("Test metrics (mean ± std over seeds)").table(rows)
    if task.name in STUDY:
        human, llm, model = STUDY[task.name]
        report.text(f"For reference, Mohta et al. 2023 report {human:.2f} with human labels and {llm:.2f} with labels from {model}.")
    report.bar_chart({name: {m: res[m]["mean"] for m in task.metrics if m in res} for name, res in metrics["results"].items()},
                     title=f"{task.name}: test metrics by training labels")
    if metrics["label_quality"]:
        report.heading("How far each LLM's labels are from the human ones")
        qrows = []
        for name, q in metrics["label_quality"].items():
            row = {"run": name, "items": q["n"], "answer rate": q["answer_rate"], "agreement": q["agreement"]}
            if "kappa" in q:
                row["kappa"] = q["kappa"]
            row.update({f"noise {c}": v for c, v in q["noise_rate"].items()})
            qrows.append(row)
        report.table(qrows, caption="agreement over answered items; noise rate of class c = share of human-c items the LLM labelled otherwise")
    return report
