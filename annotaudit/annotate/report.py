"""`annotate report`: the study's Figure 2 (accuracy and answer rate per model per task) and how
far the annotators, humans included, agree with one another (pairwise Cohen's kappa)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import JsonlLog, read_json
from annotaudit.core.report import Report

from .metrics import _kappa
from .run import METRICS, PREDICTIONS, recompute

HUMAN = "human"


def load_run(path: str | Path) -> dict[str, Any]:
    """A run directory's config, metrics and predictions keyed by id."""
    path = Path(path)
    if not (path / "run.json").is_file() or not (path / PREDICTIONS).is_file():
        raise InputError("not an annotate run directory (needs run.json and predictions.jsonl)", path=path)
    manifest = read_json(path / "run.json")
    config = manifest.get("config", {})
    if "task_spec" not in config:
        raise InputError("run.json is not from `annotate run`", path=path / "run.json")
    metrics = read_json(path / METRICS) if (path / METRICS).is_file() else recompute(path)
    records = {str(r["id"]): r for r in JsonlLog(path / PREDICTIONS)}
    model = next(iter(records.values()))["model"] if records else config.get("model")
    name = f"{model} ({config.get('mode')}" + (f", k={config['samples']}" if config.get("samples", 1) > 1 else "") + ")"
    return {"path": str(path), "task": config["task_spec"]["name"], "annotator": name, "config": config, "metrics": metrics, "records": records}


def _key(label: Any) -> str:
    return "|".join(label) if isinstance(label, list) else str(label)


def agreement(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairwise Cohen's kappa on the items both annotators labelled (NOANSWER is a category)."""
    rows = []
    by_task: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_task.setdefault(run["task"], []).append(run)
    for task, group in by_task.items():
        annotators = [(r["annotator"], {k: _key(v["label"]) for k, v in r["records"].items()}) for r in group]
        humans = {}
        for r in group:
            humans.update({k: _key(v["human_label"]) for k, v in r["records"].items() if v.get("human_label") not in (None, [])})
        if humans:
            annotators.append((HUMAN, humans))
        for (a, la), (b, lb) in combinations(annotators, 2):
            common = sorted(set(la) & set(lb))
            if not common:
                continue
            rows.append({"task": task, "annotator A": a, "annotator B": b, "items": len(common),
                         "raw agreement": sum(la[k] == lb[k] for k in common) / len(common),
                         "kappa": _kappa([la[k] for k in common], [lb[k] for k in common])})
    return rows


def build(run_dirs: list[str | Path], out: str | Path, title: str = "Zero-shot annotation") -> tuple[Path, Path]:
    """Write report.md and report.html comparing the given runs."""
    if not run_dirs:
        raise InputError("give at least one run directory")
    runs = [load_run(p) for p in run_dirs]
    report = Report(title)
    rows = []
    for r in runs:
        m = r["metrics"]
        rows.append({"task": r["task"], "annotator": r["annotator"], "n": m.get("n"), "answer rate": m.get("answer_rate"),
                     "accuracy (answered)": m.get("accuracy_answered"), "accuracy (all)": m.get("accuracy_all"),
                     "macro F1": m.get("macro_f1"), "kappa vs human": m.get("kappa"), "AUROC": m.get("auroc"),
                     "judged": m.get("judged"), "run": r["path"]})
    report.heading("Runs").table(rows, caption="accuracy (all) counts NOANSWER as wrong")
    for metric, key in (("Accuracy (all items)", "accuracy_all"), ("Answer rate", "answer_rate")):
        data: dict[str, dict[str, float]] = {}
        for r in runs:
            value = r["metrics"].get(key)
            data.setdefault(r["task"], {})[r["annotator"]] = float("nan") if value is None else value
        report.bar_chart(data, title=f"{metric} per model per task", ylabel=metric.lower())
    languages = [(r, lang, m) for r in runs for lang, m in (r["metrics"].get("per_language") or {}).items()]
    if languages:
        report.heading("Per language").table([{"annotator": r["annotator"], "language": lang, "n": m["n"], "answer rate": m["answer_rate"],
                                               "accuracy (all)": m.get("accuracy_all"), "macro F1": m.get("macro_f1")} for r, lang, m in languages])
        per_lang: dict[str, dict[str, float]] = {}
        for r, lang, m in languages:
            value = m.get("accuracy_all")
            per_lang.setdefault(lang, {})[r["annotator"]] = float("nan") if value is None else value
        report.bar_chart(per_lang, title="Accuracy per language")
    pairs = agreement(runs)
    report.heading("Agreement between annotators")
    report.text("Cohen's kappa on the items both annotators labelled; an unanswered item counts as the category NOANSWER.")
    report.table(pairs) if pairs else report.text("No two annotators share items.")
    return report.write(out)
