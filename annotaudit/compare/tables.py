"""Tables in the shape the studies print, each figure with its bootstrap interval, and paired differences.

POPE: per model, prompt and setting, each metric per language, with the mean F1 over settings, and
the ranking under each label set the runs scored. CHAIR: per model and prompt, with the mean caption
length. VQA: per model, benchmark and formatting. Annotation: accuracy and answer rate per model and
task, then MMBT trained on human against LLM labels, each LLM arm next to the annotate run whose
labels it learned from. Verdicts: the alt-test per LLM, ranked by ρ. Every figure table gives each
figure's n and clusters; the paired differences form one family, adjusted together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from annotaudit.audit.pope.formats import setting_of
from annotaudit.core.errors import InputError
from annotaudit.core.vocab import LANGUAGES, SETTINGS

from . import measures
from .bootstrap import MIN_CLUSTERS, MIN_ITEMS, ContentMismatch, Difference, Interval, Items, Statistic, bootstrap, common_items, flag, paired_difference
from .multiplicity import ALPHA, resamples_needed
from .runs import KIND_NAMES, UNFINISHED, Entry

METRIC_LABELS = {"accuracy": "Acc", "precision": "Prec", "recall": "Rec", "f1": "F1", "yes_ratio": "Yes", "chair_s": "CHAIR_s",
                 "chair_i": "CHAIR_i", "exact": "Exact", "approx": "Approx", "answer_rate": "Answer rate", "auroc": "AUROC",
                 "macro_f1": "Macro F1", "micro_f1": "Micro F1", "mean_length": "Length"}
DIFFERENCE_METRICS = {"pope": ("f1",), "chair": ("chair_s", "chair_i"), "vqa": ("exact",), "annotate": ("accuracy", "answer_rate")}
MEAN = "mean"
ADJUSTMENT_NAMES = {"holm": "Holm's step-down adjustment (family-wise error)", "bh": "Benjamini–Hochberg's adjustment (false discovery rate)"}
FIGURE_NOTE = (f"n is the items behind a figure, with its clusters in brackets. † an exact interval: Clopper–Pearson for a proportion on "
               f"fewer than {MIN_ITEMS} items, on Korn and Graubard's effective n when it has fewer than {MIN_CLUSTERS} clusters. "
               f"‡ a ratio on fewer than {MIN_CLUSTERS} clusters: its bootstrap interval is unreliable. "
               "(k undefined): resamples where the figure is undefined, left out of its interval.")


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
    plain: set[str] = field(default_factory=set)  # columns whose figures are not rates (never scaled to %)


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
        proportion = measures.PROPORTIONS.get(entry.kind, {}).get(metric)
        return bootstrap(stats[metric], items, self.resamples, self.seed, proportion=proportion) if metric in stats else None

    def difference(self, a: Entry, b: Entry, metric: str) -> Difference | None:
        (items_a, stats_a), (items_b, stats_b) = self.of(a), self.of(b)
        if metric not in stats_a or metric not in stats_b:
            return None
        self.check_pair(a, b)
        return paired_difference(stats_a[metric], items_a, stats_b[metric], items_b, self.resamples, self.seed)

    def check_pair(self, a: Entry, b: Entry) -> int:
        """How many keys two entries share; one line when they share none or hold one key with different content."""
        items_a, items_b = self.of(a)[0], self.of(b)[0]
        try:
            shared = len({items_a.ids[k] for k in common_items(items_a, items_b)[0]})
        except ContentMismatch as e:
            raise InputError(f"{a.run} and {b.run} both hold {items_a.unit if items_a.unit != 'image' or a.kind == 'chair' else 'question'} "
                             f"{e.key!r} with different content ({e.a} against {e.b}): items with one id and different content are never paired") from None
        if not shared:
            raise InputError(f"{a.run} and {b.run} share no item ({KIND_NAMES[a.kind]}, {a.dataset} {' '.join(a.column).strip()}): "
                             "nothing to compare; tell them apart with --label NAME=RUN_DIR or compare them separately")
        return shared

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


def _size(interval: Interval | None) -> str:
    """'40 (10 images)': the items behind a figure and their clusters."""
    if interval is None or not interval.n:
        return ""
    return str(interval.n) if interval.clusters == interval.n and interval.unit in ("item", "caption") else (
        f"{interval.n} ({interval.clusters} {interval.unit}s)")


def _n_column(language: str) -> str:
    return f"n {language}".strip()


def _languages(entries: list[Entry]) -> list[str]:
    return _ordered([e.language for e in entries], LANGUAGES)


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
        columns = [_column(m, lang) for m in measures.POPE_METRICS for lang in langs] + [_n_column(lang) for lang in langs]
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
                    row[_n_column(lang)] = _size(row[_column("f1", lang)])
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
                        row[_n_column(lang)] = _size(row[_column("f1", lang)])
                rows.append(row)
        units = {figures.of(e)[0].unit for e in group}
        note = "Intervals resample images (all questions about an image together)." if units == {"image"} else (
            "Some answers carry no image: their questions are resampled one by one.")
        note += " The mean F1 row averages the settings, resampling images jointly. " + FIGURE_NOTE + _protocol_note(group)
        tables.append(Table(f"pope_{dataset}", f"POPE on {dataset} (%)", ["model", "prompt", "setting"], columns, rows, note=note, chart=chart))
        ranking = label_set_ranking(dataset, group)
        if ranking is not None:
            tables.append(ranking)
    return tables


def _protocol_note(group: list[Entry]) -> str:
    """A visible note wherever one column holds figures from two versions of the label files."""
    notes = []
    for (lang, setting), column in _by(group, lambda e: e.column).items():
        versions = _by(column, lambda e: e.info.get("protocol", "unknown"))
        if len(versions) > 1:
            which = "; ".join(f"{v}: {', '.join(dict.fromkeys(e.model for e in es))}" for v, es in versions.items())
            notes.append(f"{' '.join(x for x in (lang, setting) if x)} mixes label-file versions ({which})")
    return (" Two protocols in one column, not the same questions or labels: " + "; ".join(notes) + ".") if notes else ""


def label_set_ranking(dataset: str, group: list[Entry]) -> Table | None:
    """Each model's F1 under every label set its POPE score used, ranked within each label set and setting;
    None unless some run scored more than one label set."""
    if not any(len(e.info.get("label_sets") or {}) > 1 for e in group):
        return None
    figures: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for e in group:
        for name, label_set in (e.info.get("label_sets") or {}).items():
            for raw, values in (label_set.get("settings") or {}).items():
                if setting_of(raw) == e.setting and isinstance(values, dict) and values.get("f1") is not None:
                    figures.setdefault((name, e.setting), []).append((" ".join(x for x in (e.model, e.language) if x), values))
    rows = []
    for (name, setting), scored in figures.items():
        ranked = sorted(dict(scored).items(), key=lambda kv: -kv[1]["f1"])
        rows += [{"label set": name, "setting": setting, "rank": k, "model": model, "F1": f"{100 * v['f1']:.1f}", "n": v.get("n"),
                  "excluded": v.get("excluded", 0)} for k, (model, v) in enumerate(ranked, 1)]
    return Table(f"pope_{dataset}_label_sets", f"POPE on {dataset}: rankings per label set", ["label set", "setting", "rank", "model"],
                 ["F1", "n", "excluded"], rows, percent=False,
                 note="F1 (%) as each run's metrics.json gives it under each label set (audit pope score --labels), on the n questions "
                      "that set labels; excluded are questions it does not hold. A model whose rank differs between label sets is "
                      "ranked differently by the labels, not by its answers. Intervals for the first label set are in the table above.")


# CHAIR, VQA, annotation -------------------------------------------------------------------------

def _simple_table(kind: str, entries: list[Entry], figures: Figures, metrics: tuple[str, ...], index: list[str],
                  row_key: Callable[[Entry], tuple[str, ...]], note: str, chart_metric: str) -> Table:
    langs = _languages(entries)
    columns = [_column(m, lang) for m in metrics for lang in langs] + [_n_column(lang) for lang in langs]
    rows, chart = [], {}
    for key, row_entries in _by(entries, row_key).items():
        row: dict[str, Any] = dict(zip(index, key))
        for e in row_entries:
            for m in metrics:
                row[_column(m, e.language)] = figures.interval(e, m)
            row[_n_column(e.language)] = _size(row[_column(chart_metric, e.language)])
            chart.setdefault(" ".join(key[:2]).strip(), {})[e.language or "all"] = row[_column(chart_metric, e.language)]
        rows.append(row)
    plain = {_column(m, lang) for m in metrics if m == "mean_length" for lang in langs}
    return Table(kind, f"{KIND_NAMES[kind]} (%)", index, columns, rows, note=note + " " + FIGURE_NOTE, chart=chart, plain=plain)


def chair_table(entries: list[Entry], figures: Figures) -> Table:
    return _simple_table("chair", entries, figures, (*measures.CHAIR_METRICS, "mean_length"), ["model", "dataset", "prompt"],
                         lambda e: (e.model, e.dataset, e.prompt),
                         "Intervals resample images, each with all its captions. Length is the mean caption length in words, beside "
                         "CHAIR and recall because CHAIR alone rewards short captions.", "chair_i")


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
    columns = [METRIC_LABELS.get(m, m) for m in metric_names] + ["n", "label accuracy", "label answer rate"]
    rows, chart = [], {}
    for e in sorted(entries, key=lambda e: (e.dataset, e.model != "human")):
        source = e.info.get("trained_on")
        row: dict[str, Any] = {"task": e.dataset, "labels": e.model, "seeds": len(e.records),
                               "labels from": "human annotators" if e.info["labels"] == "human" else (str(source) if source else e.info["labels"])}
        for m in metric_names:
            row[METRIC_LABELS.get(m, m)] = figures.interval(e, m)
        row["n"] = _size(row[METRIC_LABELS.get(metric_names[0], metric_names[0])]) if metric_names else ""
        linked = by_run.get(source) if source is not None else None
        if linked is not None:
            row["label accuracy"], row["label answer rate"] = figures.interval(linked, "accuracy"), figures.interval(linked, "answer_rate")
        primary = e.info["task"].primary
        chart.setdefault(e.dataset, {})[e.model] = row.get(METRIC_LABELS.get(primary, primary))
        rows.append(row)
    return Table("mmbt", "MMBT trained on human against LLM labels", ["task", "labels", "seeds", "labels from"], columns, rows, percent=False,
                 note="Test metrics averaged over seeds; intervals resample test items. Label accuracy and answer rate are those of the "
                      "annotate run the arm learned from, when it is among the compared runs. " + FIGURE_NOTE, chart=chart)


# Verdicts ---------------------------------------------------------------------------------------

def _stored(figure: Any, n: int) -> Interval | None:
    """A figure with its interval as the verdict's metrics.json stores it."""
    if not isinstance(figure, dict) or figure.get("value") is None:
        return None
    n = int(figure.get("n_items", n))
    return Interval(figure["value"], figure.get("low"), figure.get("high"), n, n, "item")


def verdict_table(entries: list[Entry]) -> Table:
    """Per verdict run, its LLMs ranked by ρ: ω, ρ, passed, and α among the humans (the ceiling) beside α with the LLM added."""
    rows = []
    for e in entries:
        metrics = e.info["metrics"]
        humans = ((metrics.get("agreement") or {}).get("humans") or {}).get("alpha") or {}
        llms = (metrics.get("agreement") or {}).get("llms") or {}
        ranked = sorted(metrics["llms"].items(), key=lambda kv: -(kv[1].get("advantage_probability") or 0))
        for rank, (name, test) in enumerate(ranked, 1):
            n = int(test.get("n_items") or 0)
            rho = test.get("advantage_probability")
            band = test.get("advantage_probability_interval") or {}
            added = (llms.get(name) or {}).get("alpha_added") or {}
            rows.append({"humans": e.dataset + (f" {UNFINISHED}" if "unfinished" in e.info else ""), "rank": rank, "LLM": name,
                         "ω": None if test.get("winning_rate") is None else f"{test['winning_rate']:.2f}",
                         "ρ": None if rho is None else Interval(rho, band.get("low"), band.get("high"), n, n, "item"),
                         "passed": "yes" if test.get("passed") else "no", "ε": test.get("epsilon"), "n": n,
                         "α humans": _stored(humans.get("nominal"), n), "α with LLM": _stored(added.get("nominal"), n)})
    return Table("verdict", "Can the LLM replace the annotators? The alt-test, LLMs ranked by ρ", ["humans", "rank", "LLM"],
                 ["ω", "ρ", "passed", "ε", "n", "α humans", "α with LLM"], rows, percent=False,
                 note="ω is the share of annotators the LLM beats by the alt-test (Benjamini–Yekutieli at the run's q); it passes at ω ≥ 0.5. "
                      "ρ is the chance the LLM does at least as well as a random annotator on an item, with its bootstrap interval "
                      "over items. α (nominal) among the humans is the ceiling; α with the LLM added shows whether it lowers it. "
                      "Figures as annotate verdict wrote them.")


# Differences ------------------------------------------------------------------------------------

@dataclass
class Planned:
    """One paired difference to compute: two entries (or two POPE rows' settings, for the mean F1) and the figure."""

    kind: str
    dataset: str
    prompt: str
    column: str
    metric: str
    a: list[Entry]
    b: list[Entry]

    def label(self, side: list[Entry], other: list[Entry]) -> str:
        e = side[0]
        return e.model if e.prompt == other[0].prompt else f"{e.model}, {e.prompt}"


def _pairs(group: list[Entry]) -> list[tuple[Entry, Entry]]:
    return [(a, b) for a, b in combinations(group, 2) if (a.model, a.prompt) != (b.model, b.prompt)]


def plan_differences(entries: list[Entry]) -> list[Planned]:
    """Every two rows on the same benchmark, prompt (in any mode), language and setting, for each headline figure,
    then the mean F1 over POPE settings: the family of differences one report makes."""
    plan = []
    compared = [e for e in entries if e.kind in DIFFERENCE_METRICS or e.kind == "mmbt"]
    for (kind, dataset, pairing, language, setting), group in _by(compared, lambda e: (e.kind, e.dataset, e.pairing, *e.column)).items():
        metrics = (group[0].info["task"].primary,) if kind == "mmbt" else DIFFERENCE_METRICS[kind]
        column = " ".join(x for x in (language, setting) if x)
        plan += [Planned(kind, dataset, pairing, column, m, [a], [b]) for a, b in _pairs(group) for m in metrics]
    complete: dict[tuple[str, str, str], list[list[Entry]]] = {}
    for (dataset, _, pairing, language), parts in _by([e for e in entries if e.kind == "pope"],
                                                       lambda e: (e.dataset, (e.model, e.prompt), e.pairing, e.language)).items():
        if len(parts) > 1:
            complete.setdefault((dataset, pairing, language), []).append(sorted(parts, key=lambda e: e.setting))
    for (dataset, pairing, language), rows in complete.items():
        for a, b in combinations(rows, 2):
            if [e.setting for e in a] == [e.setting for e in b]:
                plan.append(Planned("pope", dataset, pairing, f"{language} {MEAN} F1".strip(), "f1", a, b))
    return plan


def check_plan(plan: list[Planned], figures: Figures) -> None:
    """Refuse, before anything is written, resamples too few for the family and pairs that cannot be paired."""
    needed = resamples_needed(len(plan))
    if plan and figures.resamples < needed:
        raise InputError(f"--resamples {figures.resamples} is too few for {len(plan)} paired differences: the smallest p-value, "
                         f"2/(resamples + 1), must pass {ALPHA:g}/{len(plan)}; give --resamples {needed} or more")
    for p in plan:
        for a, b in zip(p.a, p.b):
            figures.check_pair(a, b)


def differences(plan: list[Planned], figures: Figures, adjustment: str = "holm") -> Table:
    """Each planned difference with its interval and p-value, the p-values adjusted over the whole family."""
    rows, diffs = [], []
    for p in plan:
        if len(p.a) == 1:
            diff = figures.difference(p.a[0], p.b[0], p.metric)
            items_a, items_b = figures.of(p.a[0])[0], figures.of(p.b[0])[0]
        else:
            (items_a, stat_a), (items_b, stat_b) = figures.mean_f1(p.a), figures.mean_f1(p.b)
            diff = paired_difference(stat_a, items_a, stat_b, items_b, figures.resamples, figures.seed)
        if diff is None:
            continue
        diffs.append(diff)
        rows.append({"kind": KIND_NAMES[p.kind], "benchmark": p.dataset, "prompt": p.prompt, "column": p.column,
                     "figure": METRIC_LABELS.get(p.metric, p.metric), "A": p.label(p.a, p.b), "B": p.label(p.b, p.a),
                     "common items": diff.n, "clusters": f"{diff.clusters} {diff.unit}s", "difference": diff,
                     "held": [len(set(items_a.ids)), len(set(items_b.ids))]})
    flag(diffs, adjustment)
    for row, diff in zip(rows, diffs):
        row["p"] = "" if diff.p_value is None else f"{diff.p_value:.4f}"
        row["adjusted p"] = "" if diff.adjusted is None else f"{diff.adjusted:.4f}"
        row["flagged"] = "*" if diff.flagged else ""
    return Table("differences", "Paired differences between models (A − B)", ["kind", "benchmark", "prompt", "column", "figure", "A", "B",
                 "common items", "clusters"], ["difference", "p", "adjusted p", "flagged"], rows,
                 note=f"{len(diffs)} comparisons, one family: p-values adjusted by {ADJUSTMENT_NAMES[adjustment]}; * marks an adjusted "
                      f"p-value at most {ALPHA:g}. Each difference is bootstrapped over the items both runs hold, paired by what they are "
                      "(POPE: image and object within a setting; CHAIR: image, with all its captions; annotation, VQA and MMBT: id and "
                      "content), the same clusters drawn for both. p is two-sided: twice (1 + resampled differences on the other side "
                      "of 0) / (resamples + 1). Differences in points (x 100, MMBT's AUROC and F1 too). " + FIGURE_NOTE)


def build_tables(entries: list[Entry], figures: Figures, adjustment: str = "holm", plan: list[Planned] | None = None) -> list[Table]:
    """Every table the entries fill, in the studies' order, then the verdicts and the paired differences."""
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
    if "verdict" in by_kind:
        tables.append(verdict_table(by_kind["verdict"]))
    plan = plan_differences(entries) if plan is None else plan
    if plan:
        check_plan(plan, figures)
        tables.append(differences(plan, figures, adjustment))
    unfinished = sorted({f"{e.run}: {e.info['unfinished']}" for e in entries if "unfinished" in e.info})
    if unfinished:
        for t in tables:
            t.note = (f"{UNFINISHED} marks runs compared with --allow-unfinished: " + "; ".join(unfinished) + ". " + t.note).strip()
    return tables
