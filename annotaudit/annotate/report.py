"""Reports of annotate runs: one run's own report, and `annotate report`, the study's Figure 2
(accuracy and answer rate per model per task) with how far the annotators, humans included, agree
with one another (pairwise Cohen's kappa).

`annotate report` redraws the study's figure as the study printed it, point figures only. The comparison to
cite, with intervals, items paired by content and corrected paired tests, is `annotaudit compare`."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import read_json
from annotaudit.core.report import Report
from annotaudit.core.runner import METRICS, read_run_records, run_config
from annotaudit.core.tasks import NOANSWER, Task

from .metrics import kappa

HUMAN = "human"
UNANSWERED_SHOWN = 10


def _f(x: Any) -> str:
    return "" if x is None else str(x)


def run_report(records: list[dict[str, Any]], metrics: dict[str, Any], out: str | Path, task: Task) -> tuple[Path, Path]:
    """report.md and report.html of one run: its metrics, per class and per language, and replies no label was read from.

    The unanswered replies are there so a reader can see whether the task's patterns missed an answer.
    """
    model = next((r["meta"].get("model") for r in records if r["meta"].get("model")), "")
    report = Report(f"annotate · {task.name} · {model}")
    report.heading("Metrics").table([{key: metrics.get(key) for key in (
        "n", "answered", "answer_rate", "judged", "n_labeled", "accuracy_answered", "accuracy_all", "macro_f1", "micro_f1",
        "kappa", "auroc", "problems", "failed") if key in metrics}], caption="accuracy_all counts NOANSWER as wrong")
    report.run_status(metrics)
    if metrics.get("per_class"):
        report.heading("Per class").table([{"label": lab, **row} for lab, row in metrics["per_class"].items()])
    if metrics.get("per_language"):
        report.heading("Per language").table([{"language": lang, "n": m["n"], "answer rate": m["answer_rate"],
                                               "accuracy (all)": m.get("accuracy_all"), "macro F1": m.get("macro_f1")}
                                              for lang, m in metrics["per_language"].items()])
    unanswered = [r for r in records if r["prediction"] == NOANSWER and r.get("raw")]
    if unanswered:
        report.heading("Unanswered replies")
        report.text(f"{len(unanswered)} replies gave no label; the first {min(len(unanswered), UNANSWERED_SHOWN)}:")
        report.table([{"id": r["id"], "human label": _f(r["target"]), "reply": r["raw"][0][:300]} for r in unanswered[:UNANSWERED_SHOWN]])
    return report.write(out)


def load_run(path: str | Path) -> dict[str, Any]:
    """A run folder's configuration, metrics and records keyed by id (metrics recomputed when missing)."""
    path = Path(path)
    config = run_config(path, "annotate", "annotaudit annotate report")
    records = {str(r["id"]): r for r in read_run_records(path)}
    if (path / METRICS).is_file():
        metrics = read_json(path / METRICS)
    else:
        from .run import recompute

        metrics = recompute(path)
    model = next(iter(records.values()))["meta"].get("model") or config.get("model")
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
        annotators = [(r["annotator"], {k: _key(v["prediction"]) for k, v in r["records"].items()}) for r in group]
        humans = {}
        for r in group:
            humans.update({k: _key(v["target"]) for k, v in r["records"].items() if v.get("target") not in (None, [])})
        if humans:
            annotators.append((HUMAN, humans))
        for (a, la), (b, lb) in combinations(annotators, 2):
            common = sorted(set(la) & set(lb))
            if not common:
                continue
            rows.append({"task": task, "annotator A": a, "annotator B": b, "items": len(common),
                         "raw agreement": sum(la[k] == lb[k] for k in common) / len(common),
                         "kappa": kappa([la[k] for k in common], [lb[k] for k in common])})
    return rows


def study_figure(run_dirs: list[str | Path], out: str | Path, title: str = "Zero-shot annotation") -> tuple[Path, Path]:
    """Write report.md and report.html with the study's Figure 2 for the given runs."""
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
