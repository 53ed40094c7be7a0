"""Tables in the shape the studies print, each figure with its bootstrap interval, and paired differences.

POPE: per model, prompt and setting, each metric per language, with the mean F1 over settings.
CHAIR: per model and prompt. VQA: per model, benchmark and formatting. Annotation: accuracy and
answer rate per model and task, then MMBT trained on human against LLM labels, each LLM arm next
to the annotate run whose labels it learned from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from . import measures
from .bootstrap import Difference, Interval, Items, Statistic, bootstrap, paired_difference
from .runs import KIND_NAMES, SETTINGS, Entry

METRIC_LABELS = {"accuracy": "Acc", "precision": "Prec", "recall": "Rec", "f1": "F1", "yes_ratio": "Yes", "chair_s": "CHAIR_s",
                 "chair_i": "CHAIR_i", "exact": "Exact", "approx": "Approx", "answer_rate": "Answer rate", "auroc": "AUROC",
                 "macro_f1": "Macro F1", "micro_f1": "Micro F1"}
DIFFERENCE_METRICS = {"pope": ("f1",), "chair": ("chair_s", "chair_i"), "vqa": ("exact",), "annotate": ("accuracy", "answer_rate")}
MEAN = "mean"


@dataclass
class Table:
    """Rows of labels (`index` columns) and figures (`columns`, each an Interval or None)."""

    name: str
    title: str
    index: list[str]
    columns: list[str]
    rows: list[dict[str, Any]]
    percent: bool = True
    note: str = ""
    chart: dict[str, dict[str, Interval]] = field(default_factory=dict)  # group -> series -> figure


class Figures:
    """Each entry's items and statistics (its command's metric specs), built once."""

    def __init__(self, resamples: int, seed: int):
        self.resamples, self.seed = resamples, seed
        self._built: dict[int, tuple[Items, dict[str, Statistic]]] = {}

    def of(self, entry: Entry) -> tuple[Items, dict[str, Statistic]]:
        if id(entry) not in self._built:
            self._built[id(entry)] = _build(entry)
        return self._built[id(entry)]

    def interval(self, entry: Entry, metric: str) -> Interval | None:
        items, stats = self.of(entry)
        return bootstrap(stats[metric], items, self.resamples, self.seed) if metric in stats else None

    def difference(self, a: Entry, b: Entry, metric: str) -> Difference | None:
        (items_a, stats_a), (items_b, stats_b) = self.of(a), self.of(b)
        if metric not in stats_a or metric not in stats_b:
            return None
        return paired_difference(stats_a[metric], items_a, stats_b[metric], items_b, self.resamples, self.seed)

    def mean_f1(self, parts: list[Entry]) -> tuple[Items, Statistic]:
        return measures.pope_mean_f1([self.of(p)[0] for p in parts])


def _build(entry: Entry) -> tuple[Items, dict[str, Statistic]]:
    if entry.kind == "pope":
        return measures.pope_figures(entry.records, entry.setting)
    if entry.kind == "chair":
        return measures.chair_figures(entry.records)
    if entry.kind == "vqa":
        return measures.vqa_figures(entry.records)
    if entry.kind == "annotate":
        return measures.annotate_figures(entry.records)
    return measures.mmbt_figures(entry.records, entry.info["task"])


def _ordered(values: list[str], first: tuple[str, ...] = ()) -> list[str]:
    seen = list(dict.fromkeys(values))
    return [v for v in first if v in seen] + [v for v in seen if v not in first]


def _column(metric: str, language: str) -> str:
    return f"{METRIC_LABELS.get(metric, metric)} {language}".strip()


def _languages(entries: list[Entry]) -> list[str]:
    return _ordered([e.language for e in entries], ("en", "it"))


def _by(entries: list[Entry], key: Callable[[Entry], Any]) -> dict[Any, list[Entry]]:
    out: dict[Any, list[Entry]] = {}
    for e in entries:
        out.setdefault(key(e), []).append(e)
    return out


# POPE -------------------------------------------------------------------------------------------

def pope_tables(entries: list[Entry], figures: Figures) -> list[Table]:
    tables = []
    for dataset, group in _by(entries, lambda e: e.dataset).items():
        langs = _languages(group)
        columns = [_column(m, lang) for m in measures.POPE_METRICS for lang in langs]
        rows, chart = [], {}
        for (model, prompt), row_entries in _by(group, lambda e: (e.model, e.prompt)).items():
            cells = {(e.language, e.setting): e for e in row_entries}
            settings = _ordered([e.setting for e in row_entries], SETTINGS)
            for setting in settings:
                row: dict[str, Any] = {"model": model, "prompt": prompt, "setting": setting}
                for lang in langs:
                    entry = cells.get((lang, setting))
                    for m in measures.POPE_METRICS:
                        row[_column(m, lang)] = figures.interval(entry, m) if entry else None
                    if entry:
                        chart.setdefault(f"{model} {lang}".strip(), {})[setting] = row[_column("f1", lang)]
                rows.append(row)
            if len(settings) > 1:
                row = {"model": model, "prompt": prompt, "setting": f"{MEAN} F1"}
                for lang in langs:
                    parts = [cells[(lang, s)] for s in settings if (lang, s) in cells]
                    if len(parts) == len(settings):
                        items, stat = figures.mean_f1(parts)
                        row[_column("f1", lang)] = bootstrap(stat, items, figures.resamples, figures.seed)
                rows.append(row)
        units = {figures.of(e)[0].unit for e in group}
        note = "Intervals resample images (all questions about an image together)." if units == {"image"} else (
            "Some answers carry no image: their questions are resampled one by one.")
        tables.append(Table(f"pope_{dataset}", f"POPE on {dataset} (%)", ["model", "prompt", "setting"], columns, rows,
                            note=note + " The mean F1 row averages the settings, resampling images jointly.", chart=chart))
    return tables


# CHAIR, VQA, annotation -------------------------------------------------------------------------

def _simple_table(kind: str, entries: list[Entry], figures: Figures, metrics: tuple[str, ...], index: list[str],
                  row_key: Callable[[Entry], tuple[str, ...]], note: str, chart_metric: str) -> Table:
    langs = _languages(entries)
    columns = [_column(m, lang) for m in metrics for lang in langs]
    rows, chart = [], {}
    for key, row_entries in _by(entries, row_key).items():
        row: dict[str, Any] = dict(zip(index, key))
        for e in row_entries:
            for m in metrics:
                row[_column(m, e.language)] = figures.interval(e, m)
            chart.setdefault(" ".join(key[:2]).strip(), {})[e.language or "all"] = row[_column(chart_metric, e.language)]
        rows.append(row)
    return Table(kind, f"{KIND_NAMES[kind]} (%)", index, columns, rows, note=note, chart=chart)


def chair_table(entries: list[Entry], figures: Figures) -> Table:
    return _simple_table("chair", entries, figures, measures.CHAIR_METRICS, ["model", "dataset", "prompt"],
                         lambda e: (e.model, e.dataset, e.prompt), "Intervals resample captions.", "chair_i")


def vqa_table(entries: list[Entry], figures: Figures) -> Table:
    units = {figures.of(e)[0].unit for e in entries}
    note = "Intervals resample images (all questions about an image together)." if units == {"image"} else "Intervals resample questions."
    return _simple_table("vqa", entries, figures, measures.VQA_METRICS, ["model", "benchmark", "formatting"],
                         lambda e: (e.model, e.dataset, e.prompt), note, "exact")


def annotate_table(entries: list[Entry], figures: Figures) -> Table:
    table = _simple_table("annotate", entries, figures, measures.ANNOTATE_METRICS, ["model", "task", "mode"],
                          lambda e: (e.model, e.dataset, e.prompt),
                          "Accuracy over all labelled items (no answer counts as wrong); intervals resample items.", "accuracy")
    return table


# MMBT -------------------------------------------------------------------------------------------

def mmbt_table(entries: list[Entry], annotations: list[Entry], figures: Figures) -> Table:
    """MMBT per task and arm, with the accuracy and answer rate of the annotate run each LLM arm learned from."""
    metric_names: list[str] = []
    for e in entries:
        metric_names += [m for m in figures.of(e)[1] if m not in metric_names]
    by_run = {a.run.resolve(): a for a in annotations}
    columns = [METRIC_LABELS.get(m, m) for m in metric_names] + ["label accuracy", "label answer rate"]
    rows, chart = [], {}
    for e in sorted(entries, key=lambda e: (e.dataset, e.model != "human")):
        source = e.info.get("trained_on")
        row: dict[str, Any] = {"task": e.dataset, "labels": e.model, "seeds": len(e.records),
                               "labels from": "human annotators" if e.info["labels"] == "human" else (str(source) if source else e.info["labels"])}
        for m in metric_names:
            row[METRIC_LABELS.get(m, m)] = figures.interval(e, m)
        linked = by_run.get(source) if source is not None else None
        if linked is not None:
            row["label accuracy"], row["label answer rate"] = figures.interval(linked, "accuracy"), figures.interval(linked, "answer_rate")
        primary = e.info["task"].primary
        chart.setdefault(e.dataset, {})[e.model] = row.get(METRIC_LABELS.get(primary, primary))
        rows.append(row)
    return Table("mmbt", "MMBT trained on human against LLM labels", ["task", "labels", "seeds", "labels from"], columns, rows, percent=False,
                 note="Test metrics averaged over seeds; intervals resample test items. Label accuracy and answer rate are those of the "
                      "annotate run the arm learned from, when it is among the compared runs.", chart=chart)


# Differences ------------------------------------------------------------------------------------

def _pairs(group: list[Entry]) -> list[tuple[Entry, Entry]]:
    return [(a, b) for a, b in combinations(group, 2) if a.model != b.model]


def differences(entries: list[Entry], figures: Figures) -> Table:
    """Every two models on the same benchmark, prompt, language and setting: the paired difference of the headline figures."""
    rows = []
    for (kind, dataset, prompt, language, setting), group in _by(entries, lambda e: (e.kind, e.dataset, e.prompt, *e.column)).items():
        metrics = (group[0].info["task"].primary,) if kind == "mmbt" else DIFFERENCE_METRICS[kind]
        for a, b in _pairs(group):
            for m in metrics:
                diff = figures.difference(a, b, m)
                if diff is not None:
                    rows.append(_difference_row(kind, dataset, prompt, language, setting, m, a.model, b.model, diff))
    rows += _mean_f1_differences(entries, figures)
    return Table("differences", "Paired differences between models (A − B)", ["kind", "benchmark", "prompt", "column", "figure", "A", "B",
                 "common items", "clusters"], ["difference", "excludes zero"], rows,
                 note="Each difference is bootstrapped over the items both runs evaluated, with the same draws for both; "
                      "* marks an interval that excludes zero. Differences in points (x 100, MMBT's AUROC and F1 too).")


def _difference_row(kind: str, dataset: str, prompt: str, language: str, setting: str, metric: str, a: str, b: str, diff: Difference) -> dict[str, Any]:
    return {"kind": KIND_NAMES[kind], "benchmark": dataset, "prompt": prompt, "column": " ".join(x for x in (language, setting) if x),
            "figure": METRIC_LABELS.get(metric, metric), "A": a, "B": b, "common items": diff.n, "clusters": f"{diff.clusters} {diff.unit}s",
            "difference": diff, "excludes zero": "*" if diff.flagged else ""}


def _pope_rows(entries: list[Entry]) -> dict[tuple[str, tuple[str, str], str], list[Entry]]:
    return _by([e for e in entries if e.kind == "pope"], lambda e: (e.dataset, (e.model, e.prompt), e.language))


def _mean_f1_differences(entries: list[Entry], figures: Figures) -> list[dict[str, Any]]:
    """Paired differences of the mean F1 over settings, for models that have the same settings."""
    complete: dict[tuple[str, str, str], list[tuple[str, list[Entry]]]] = {}
    for (dataset, (model, prompt), language), parts in _pope_rows(entries).items():
        if len(parts) > 1:
            parts = sorted(parts, key=lambda e: e.setting)
            complete.setdefault((dataset, prompt, language), []).append((model, parts))
    rows = []
    for (dataset, prompt, language), models in complete.items():
        for (name_a, a), (name_b, b) in combinations(models, 2):
            if [e.setting for e in a] != [e.setting for e in b]:
                continue
            (items_a, stat_a), (items_b, stat_b) = figures.mean_f1(a), figures.mean_f1(b)
            diff = paired_difference(stat_a, items_a, stat_b, items_b, figures.resamples, figures.seed)
            rows.append(_difference_row("pope", dataset, prompt, language, f"{MEAN} F1", "f1", name_a, name_b, diff))
    return rows


def build_tables(entries: list[Entry], figures: Figures) -> list[Table]:
    """Every table the entries fill, in the studies' order, then the paired differences."""
    by_kind = _by(entries, lambda e: e.kind)
    tables = pope_tables(by_kind.get("pope", []), figures)
    if "chair" in by_kind:
        tables.append(chair_table(by_kind["chair"], figures))
    if "vqa" in by_kind:
        tables.append(vqa_table(by_kind["vqa"], figures))
    if "annotate" in by_kind:
        tables.append(annotate_table(by_kind["annotate"], figures))
    if "mmbt" in by_kind:
        tables.append(mmbt_table(by_kind["mmbt"], by_kind.get("annotate", []), figures))
    diffs = differences(entries, figures)
    if diffs.rows:
        tables.append(diffs)
    return tables
