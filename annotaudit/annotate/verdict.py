"""`annotate verdict`: can an LLM replace the annotators?

Reads the humans' labels and one or more LLMs' labels in any of the layouts below, joins them by item
id, and writes a run folder of kind "verdict": the alt-test of each LLM (annotate.alttest), agreement
with its ceiling, Krippendorff's alpha among the humans (annotate.agreement), the prevalence of each
class by prediction-powered inference where the LLM labelled items the humans did not (annotate.ppi),
and the items whose human label is most likely wrong where the LLM gave probabilities (annotate.label_issues).

Humans: a JSON object {annotator: {item: label}} (the alt-test authors' layout); long CSV or JSONL
rows of item, annotator, label; a wide CSV or JSONL with an id column and one column per annotator;
an XNLI .tsv, whose label1..label5 are the annotators, with the item ids `annotate run --task xnli` gives.
LLMs: an `annotate run` folder (named by its model), a JSON {item: label} (named by its file stem), or
{llm: {item: label}} (one LLM per key).

Labels: through the task's label set when an LLM run (or the XNLI file) names a task; JSON values keep
their type and CSV cells that read as numbers become numbers; when every label is a number the scale is
numeric (ordinal and interval alpha, and neg_rmse). An LLM's no-answer (NOANSWER, or null) matches no human.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotaudit.core.errors import InputError
from annotaudit.core.io import Problems, read_json, read_records, read_text, write_json, write_jsonl
from annotaudit.core.report import Report
from annotaudit.core.runner import RECORDS, read_run_records, run_config
from annotaudit.core.runs import RunDir
from annotaudit.core.tasks import NOANSWER, Task

from . import agreement
from .alttest import NO_ANSWER, SCORINGS, AltTest, NotTestable, advantage_replicates, alt_test
from .tasks import get_task

KIND = "verdict"
METRICS, LABEL_ISSUES = "metrics.json", "label_issues.jsonl"
OUTPUTS = [METRICS, LABEL_ISSUES, "report.md", "report.html", "report_files"]
HUMAN_LAYOUTS = (
    "a JSON object {annotator: {item: label}}",
    "long CSV/JSONL rows of item, annotator, label",
    "a wide CSV/JSONL with an id column and the columns named by --annotator-columns",
    "an XNLI .tsv with label1..label5",
)
LLM_LAYOUTS = ("an `annotate run` folder", "a JSON object {item: label}", "a JSON object {llm: {item: label}}")
TEXT_SUFFIXES = (".csv", ".tsv")
XNLI_COLUMNS = ("language", "gold_label", "sentence1", "sentence2", "label1")


@dataclass
class Label:
    """A label as read, with where it was read (for the one-line error that names it)."""

    value: Any
    path: Path
    line: int | None = None


@dataclass
class Humans:
    path: Path
    labels: dict[str, dict[str, Label]]  # annotator -> item -> label, in the file's order
    task: str | None = None  # the XNLI layout implies the xnli task

    @property
    def annotators(self) -> list[str]:
        return list(self.labels)


@dataclass
class Llm:
    name: str
    path: Path
    labels: dict[str, Label]  # item -> label
    task: str | None = None
    languages: list[str] | None = None
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)  # item -> label -> probability (run folders)


# Reading ---------------------------------------------------------------------------------------


def _not_empty(path: Path) -> None:
    if not path.exists():
        raise InputError("file not found", path=path)
    if path.is_file() and not read_text(path).strip():
        raise InputError("empty file: no labels", path=path)


def _cell(value: Any, text: bool) -> Any:
    """A label from a file: blank is no label; a CSV cell that reads as a number becomes that number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not text or not isinstance(value, str):
        return value
    value = value.strip()
    for kind in (int, float):
        try:
            number = kind(value)
        except ValueError:
            continue
        return number if math.isfinite(number) else value
    return value


def _layout_error(path: Path, found: str, layouts: tuple[str, ...]) -> InputError:
    return InputError(f"{found}; layouts tried: {'; '.join(layouts)}", path=path)


def read_humans(path: str | Path, annotator_columns: list[str] | None = None, languages: list[str] | None = None) -> Humans:
    """The humans' labels in any of HUMAN_LAYOUTS (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise _layout_error(path, "a folder, not a file of human labels", HUMAN_LAYOUTS)
    _not_empty(path)
    suffix = path.suffix.lower()
    if suffix == ".tsv" and _is_xnli(path):
        return _xnli_humans(path, languages)
    if suffix == ".json":
        data = read_json(path)
        if isinstance(data, dict):
            return _authors_humans(data, path)
        if not isinstance(data, list):
            raise _layout_error(path, f"a JSON {type(data).__name__}", HUMAN_LAYOUTS)
    return _row_humans(read_records(path), path, annotator_columns)


def _authors_humans(data: dict[str, Any], path: Path) -> Humans:
    if not all(isinstance(v, dict) for v in data.values()):
        raise _layout_error(path, "a JSON object whose values are not all {item: label} objects", HUMAN_LAYOUTS)
    labels = {str(a): {str(i): Label(v, path) for i, v in inner.items() if v is not None} for a, inner in data.items()}
    return Humans(path, {a: found for a, found in labels.items() if found})


def _row_humans(rows: list[tuple[int, dict[str, Any]]], path: Path, annotator_columns: list[str] | None) -> Humans:
    if not rows:
        raise InputError("no records read", path=path)
    columns = {c for _, row in rows for c in row}
    text = path.suffix.lower() in TEXT_SUFFIXES
    if {"annotator", "label"} <= columns and columns & {"item", "id"}:
        return _long_humans(rows, path, text)
    if annotator_columns and "id" in columns:
        missing = [c for c in annotator_columns if c not in columns]
        if missing:
            raise InputError(f"no column(s) {', '.join(missing)} named by --annotator-columns (has: {', '.join(sorted(columns))})", path=path)
        return _wide_humans(rows, path, annotator_columns, text)
    hint = "" if annotator_columns else " (a wide file needs --annotator-columns)"
    raise _layout_error(path, f"records with columns {', '.join(sorted(columns))}{hint}", HUMAN_LAYOUTS)


def _item_id(row: dict[str, Any], key: str, path: Path, line: int) -> str:
    value = row.get(key)
    if value is None or not str(value).strip():
        raise InputError(f"missing {key!r}", path=path, line=line)
    return str(value).strip()


def _long_humans(rows: list[tuple[int, dict[str, Any]]], path: Path, text: bool) -> Humans:
    key = "item" if any("item" in row for _, row in rows) else "id"
    labels: dict[str, dict[str, Label]] = {}
    for line, row in rows:
        item, annotator = _item_id(row, key, path, line), _item_id(row, "annotator", path, line)
        value = _cell(row.get("label"), text)
        if value is None:
            continue
        known = labels.setdefault(annotator, {})
        if item in known:
            raise InputError(f"annotator {annotator!r} labels item {item!r} twice (first on line {known[item].line})", path=path, line=line)
        known[item] = Label(value, path, line)
    return Humans(path, labels)


def _wide_humans(rows: list[tuple[int, dict[str, Any]]], path: Path, columns: list[str], text: bool) -> Humans:
    labels: dict[str, dict[str, Label]] = {c: {} for c in columns}
    seen: dict[str, int] = {}
    for line, row in rows:
        item = _item_id(row, "id", path, line)
        if item in seen:
            raise InputError(f"duplicate id {item!r} (first on line {seen[item]})", path=path, line=line)
        seen[item] = line
        for column in columns:
            value = _cell(row.get(column), text)
            if value is not None:
                labels[column][item] = Label(value, path, line)
    return Humans(path, {a: found for a, found in labels.items() if found})


def _is_xnli(path: Path) -> bool:
    header = read_text(path).split("\n", 1)[0].rstrip("\r").split("\t")
    return all(c in header for c in XNLI_COLUMNS)


def _xnli_humans(path: Path, languages: list[str] | None) -> Humans:
    """label1..label5 as five annotators; item ids, the language filter and the rows skipped as bad are those of
    `annotate run --task xnli`, so the items are the run's items."""
    from .readers import read_xnli

    items = {item.meta["line"]: item.id for item in read_xnli(path, languages or ["en"], problems=Problems())}
    labels: dict[str, dict[str, Label]] = {f"label{k}": {} for k in range(1, 6)}
    reader = csv.reader(io.StringIO(read_text(path)), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader)
    for row in reader:
        item = items.get(reader.line_num)
        if item is None:
            continue
        rec = dict(zip(header, row))
        for annotator in labels:
            value = _cell(rec.get(annotator), True)
            if value is not None:
                labels[annotator][item] = Label(value, path, reader.line_num)
    return Humans(path, {a: found for a, found in labels.items() if found}, task="xnli")


def read_llms(path: str | Path) -> list[Llm]:
    """One source of LLM labels in any of LLM_LAYOUTS; the authors' layout gives one LLM per key."""
    path = Path(path)
    if path.is_dir():
        return [_run_folder(path)]
    _not_empty(path)
    if path.suffix.lower() != ".json":
        raise _layout_error(path, f"a {path.suffix or 'suffix-less'} file", LLM_LAYOUTS)
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise _layout_error(path, "not a non-empty JSON object", LLM_LAYOUTS)
    if all(isinstance(v, dict) for v in data.values()):
        return [Llm(str(name), path, {str(i): Label(v, path) for i, v in inner.items()}) for name, inner in data.items()]
    if any(isinstance(v, dict | list) for v in data.values()):
        raise _layout_error(path, "a JSON object mixing labels and nested objects", LLM_LAYOUTS)
    return [Llm(path.stem, path, {str(i): Label(v, path) for i, v in data.items()})]


def _run_folder(path: Path) -> Llm:
    config = run_config(path, kind="annotate", command="annotate verdict")
    records = read_run_records(path)
    labels, probabilities = {}, {}
    for rec in records:
        item = str(rec["id"])
        if isinstance(rec["prediction"], list):
            raise InputError("a multi-label prediction; the verdict compares one label per item", path=path / RECORDS, item=item)
        labels[item] = Label(rec["prediction"], path / RECORDS)
        scores = rec.get("scores") or {}
        found = scores.get("probs") or scores.get("votes")
        if isinstance(found, dict):
            probabilities[item] = {str(k): float(v) for k, v in found.items()}
    return Llm(str(config.get("model") or path.name), path, labels, config.get("task"), config.get("languages"), probabilities)


def _unique_names(llms: list[Llm]) -> None:
    seen: dict[str, int] = {}
    for llm in llms:
        seen[llm.name] = seen.get(llm.name, 0) + 1
    for llm in llms:
        if seen[llm.name] > 1:
            llm.name = f"{llm.name} ({llm.path.name})"


# Labels ----------------------------------------------------------------------------------------


def _task(humans: Humans, llms: list[Llm]) -> Task | None:
    names = sorted({str(x) for x in [humans.task, *(llm.task for llm in llms)] if x})
    if len(names) > 1:
        raise InputError(f"the inputs name different tasks ({', '.join(names)}); give LLM runs of one task")
    if not names:
        return None
    task = get_task(names[0])
    if task.multi_label:
        raise InputError(f"task {task.name!r} is multi-label; the verdict compares one label per item")
    return task


def _in_task(label: Label, task: Task, item: str) -> str:
    text = str(label.value).strip()
    for known in task.labels:
        if known.lower() == text.lower():
            return known
    alias = task.aliases.get(text.lower())
    if isinstance(alias, str):
        return alias
    raise InputError(f"label {label.value!r} is not a label of task {task.name!r} ({', '.join(task.labels)})",
                     path=label.path, line=label.line, item=item)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


@dataclass
class Table:
    """The joined labels: items x annotators for the humans, one vector per LLM, as numbers (see alttest)."""

    items: list[str]
    annotators: list[str]
    humans: np.ndarray
    llms: dict[str, np.ndarray]
    llm_only: dict[str, list[str]]  # items an LLM labelled that no human did
    numeric: bool
    classes: list[Any]  # the class labels, as read (task order, else first appearance)
    raw_humans: dict[str, dict[str, Any]]  # item -> annotator -> label, for prevalence and label issues
    raw_llms: dict[str, dict[str, Any]]  # llm -> item -> label (NOANSWER for no answer)


def join(humans: Humans, llms: list[Llm], scoring: str) -> Table:
    """Normalise every label (task, numbers), check the scoring can use them, and lay them out by item."""
    task = _task(humans, llms)
    values: dict[str, dict[str, Any]] = {}
    where: list[tuple[Any, Label, str]] = []
    for annotator, found in humans.labels.items():
        for item, label in found.items():
            value = _in_task(label, task, item) if task else label.value
            values.setdefault(item, {})[annotator] = value
            where.append((value, label, item))
    raw_llms: dict[str, dict[str, Any]] = {}
    for llm in llms:
        out = raw_llms[llm.name] = {}
        for item, label in llm.labels.items():
            if label.value is None or label.value == NOANSWER:
                out[item] = NOANSWER
                continue
            out[item] = _in_task(label, task, item) if task else label.value
            where.append((out[item], label, item))
    for value, label, item in where:
        if isinstance(value, dict | list):
            raise InputError(f"a label is one value, not {type(value).__name__} {value!r}", path=label.path, line=label.line, item=item)
    numeric = all(_number(value) is not None for value, _, _ in where)
    if scoring == "neg_rmse" and not numeric:
        value, label, item = next(w for w in where if _number(w[0]) is None)
        raise InputError(f"text label {value!r} under --scoring neg_rmse, which needs numbers; use --scoring accuracy",
                         path=label.path, line=label.line, item=item)
    return _lay_out(humans.annotators, values, raw_llms, numeric, task)


def _lay_out(annotators: list[str], values: dict[str, dict[str, Any]], raw_llms: dict[str, dict[str, Any]], numeric: bool, task: Task | None) -> Table:
    items = list(values)
    index = {item: k for k, item in enumerate(items)}
    codes: dict[Any, float] = {}

    def code(value: Any, llm: bool = False) -> float:
        if llm and value == NOANSWER:
            return NO_ANSWER
        return _number(value) if numeric else codes.setdefault(value, float(len(codes)))

    humans = np.full((len(items), len(annotators)), np.nan)
    for k, item in enumerate(items):
        for a, annotator in enumerate(annotators):
            if annotator in values[item]:
                humans[k, a] = code(values[item][annotator])
    llms, llm_only = {}, {}
    for name, found in raw_llms.items():
        vector = np.full(len(items), np.nan)
        for item, value in found.items():
            if item in index:
                vector[index[item]] = code(value, llm=True)
        llms[name] = vector
        llm_only[name] = [item for item in found if item not in index]
    seen = list(dict.fromkeys(v for labels in values.values() for v in labels.values()))
    classes = list(task.labels) if task else sorted(seen, key=_number) if numeric else seen
    return Table(items, annotators, humans, llms, llm_only, numeric, classes, values, raw_llms)


# The verdict -----------------------------------------------------------------------------------


@dataclass
class Options:
    """What decides the results; a rerun with another value is refused unless forced."""

    scoring: str = "accuracy"
    epsilon: float = 0.15
    q: float = 0.05
    min_humans: int = 2
    min_items: int = 30
    annotator_columns: list[str] | None = None
    languages: list[str] | None = None
    replicates: int = agreement.REPLICATES
    seed: int = 0

    def check(self) -> None:
        if self.scoring not in SCORINGS:
            raise InputError(f"unknown --scoring {self.scoring!r}; use {' or '.join(SCORINGS)}")
        if not 0 <= self.epsilon < 1:
            raise InputError(f"--epsilon must be in [0, 1) (got {self.epsilon})")
        if not 0 < self.q < 1:
            raise InputError(f"--q must be in (0, 1) (got {self.q})")
        if self.min_humans < 2:
            raise InputError(f"--min-humans must be at least 2: a left-out annotator needs another human to compare with (got {self.min_humans})")
        if self.min_items < 2:
            raise InputError(f"--min-items must be at least 2 for a t-test (got {self.min_items})")


@dataclass
class Verdict:
    metrics: dict[str, Any]
    notes: list[str]  # one line each: what was skipped and why
    lines: list[str]  # one line per LLM: its verdict


def verdict(humans_path: str | Path, llm_paths: list[str | Path], out: str | Path, options: Options | None = None, force: bool = False) -> Verdict:
    """Read, join, test and measure; write the run folder. Bad input raises InputError before the folder is touched,
    and only then is a folder holding another run refused (unless forced)."""
    options = options or Options()
    options.check()
    if not llm_paths:
        raise InputError("no --llm given: name at least one LLM's labels")
    llms = [llm for path in llm_paths for llm in read_llms(path)]
    _unique_names(llms)
    languages = options.languages or next((llm.languages for llm in llms if llm.task == "xnli" and llm.languages), None)
    humans = read_humans(humans_path, options.annotator_columns, languages)
    if not humans.labels:
        raise InputError("no human labels read", path=humans.path)
    inputs = {"humans": humans_path, **{f"llm{k + 1}": p for k, p in enumerate(llm_paths)}}
    config = {**options.__dict__, "languages": languages}
    table = join(humans, llms, options.scoring)
    for llm in llms:
        if np.isnan(table.llms[llm.name]).all():
            raise InputError(f"no item id of LLM {llm.name!r} is in the human labels (e.g. LLM {_some(llm.labels)}; humans {_some(table.items)}): "
                             "the ids do not join", path=llm.path)
    metrics, notes = measure(table, llms, humans, options)
    issues = [row for llm in llms for row in label_issues(table, llm)]
    run = RunDir(out, config, kind=KIND, inputs=inputs, items=len(table.items), force=force, outputs=OUTPUTS)
    write_json(run.path / METRICS, metrics)
    if issues:
        write_jsonl(run.path / LABEL_ISSUES, issues)
    write_report(metrics, notes, issues, run.path)
    run.finish()
    return Verdict(metrics, notes, verdict_lines(metrics))


def _some(ids: Any) -> str:
    return ", ".join(repr(i) for i in list(ids)[:3])


def measure(table: Table, llms: list[Llm], humans: Humans, options: Options) -> tuple[dict[str, Any], list[str]]:
    """metrics.json: the alt-test of each LLM, agreement, what was dropped, prevalence."""
    notes: list[str] = []
    boot = agreement.Bootstrap(len(table.items), options.replicates, options.seed)
    several = len(table.annotators) >= 2
    if not several:
        notes.append(f"only one human annotator ({table.annotators[0]}): the alt-test and Krippendorff's alpha need at least two, "
                     "so they are skipped; Cohen's kappa and prevalence are still given")
    kept_items = int(((~np.isnan(table.humans)).sum(1) >= options.min_humans).sum())
    metrics: dict[str, Any] = {"n_items": len(table.items), "annotators": table.annotators, "scoring": options.scoring, "numeric": table.numeric,
                               "llms": {}, "agreement": {"humans": _human_agreement(table, boot) if several else None, "llms": {}},
                               "dropped": {"items_below_min_humans": len(table.items) - kept_items, "llms": {}}, "prevalence": {}}
    for llm in llms:
        vector = table.llms[llm.name]
        dropped = {"human_items_without_llm_label": int(np.isnan(vector).sum()), "llm_items_without_humans": len(table.llm_only[llm.name])}
        if several:
            result = _alt_test(table, llm, options, humans.path)
            metrics["llms"][llm.name] = _alt_test_metrics(result, boot)
            dropped["skipped_annotators"] = result.skipped
            notes += [f"{llm.name}: annotator {a} has {n} item(s) with an LLM label and at least {options.min_humans} human labels "
                      f"(fewer than --min-items {options.min_items}): skipped" for a, n in result.skipped.items()]
        metrics["dropped"]["llms"][llm.name] = dropped
        metrics["agreement"]["llms"][llm.name] = _llm_agreement(table, vector, boot, several)
        found = _prevalence(table, llm.name)
        if found is not None:
            metrics["prevalence"][llm.name] = found
    return metrics, notes


def _alt_test(table: Table, llm: Llm, options: Options, humans_path: Path) -> AltTest:
    try:
        return alt_test(table.humans, table.llms[llm.name], table.annotators, options.scoring, options.epsilon, options.q,
                        options.min_humans, options.min_items)
    except NotTestable as exc:
        raise InputError(f"LLM {llm.name!r}: {exc}; lower --min-items or label more items", path=humans_path) from None


def _alt_test_metrics(result: AltTest, boot: agreement.Bootstrap) -> dict[str, Any]:
    rho = agreement.interval(result.advantage_probability, advantage_replicates(result, boot), result.n_items)
    return {
        "winning_rate": result.winning_rate, "advantage_probability": result.advantage_probability, "passed": result.passed,
        "epsilon": result.epsilon, "q": result.q, "n_items": result.n_items, "scoring": result.scoring,
        "advantage_probability_interval": {k: rho[k] for k in ("low", "high")},
        "annotators": {name: {"p_value": t.p_value, "rejected": t.rejected, "n_items": t.n_items, "llm_wins": t.llm_wins, "human_wins": t.human_wins}
                       for name, t in result.annotators.items()},
        "skipped_annotators": result.skipped,
    }


def _alpha_tables(data: np.ndarray, table: Table) -> list[tuple[np.ndarray, tuple[str, ...]]]:
    """Nominal alpha on the labels as they are; ordinal and interval (numeric scales) with no-answers as no label."""
    tables = [(data, ("nominal",))]
    if table.numeric:
        tables.append((np.where(np.isinf(data), np.nan, data), ("ordinal", "interval")))
    return tables


def _alphas(configurations: list[np.ndarray], table: Table, boot: agreement.Bootstrap) -> list[dict[str, Any]]:
    """Alpha at each of the table's levels, for several label matrices at once."""
    tables = [t for data in configurations for t in _alpha_tables(data, table)]
    found = iter(agreement.alphas(tables, boot))
    return [{k: v for _ in _alpha_tables(data, table) for k, v in next(found).items()} for data in configurations]


def _human_agreement(table: Table, boot: agreement.Bootstrap) -> dict[str, Any]:
    return {"alpha": _alphas([table.humans], table, boot)[0], "fleiss_kappa": agreement.fleiss_kappa(table.humans, boot)}


def _llm_agreement(table: Table, vector: np.ndarray, boot: agreement.Bootstrap, several: bool) -> dict[str, Any]:
    """Cohen's kappa against each human and the majority; alpha with the LLM added and in place of each human."""
    others = [table.humans[:, k] for k in range(len(table.annotators))] + ([agreement.majority(table.humans)] if several else [])
    kappas = agreement.cohen_kappas([(vector, other) for other in others], boot)
    out: dict[str, Any] = {"cohen_kappa": dict(zip([*table.annotators, "majority"], kappas))}
    if not several:
        return out
    configurations = [np.column_stack([table.humans, vector])]
    for k in range(len(table.annotators)):
        swapped = table.humans.copy()
        swapped[:, k] = np.where(np.isnan(table.humans[:, k]), np.nan, vector)
        configurations.append(swapped)
    added, *in_place = _alphas(configurations, table, boot)
    out["alpha_added"] = added
    out["alpha_in_place"] = dict(zip(table.annotators, in_place))
    return out


def _prevalence(table: Table, name: str) -> dict[str, Any] | None:
    """PPI++ prevalence of each class where the LLM labelled items beyond the humans' (None otherwise)."""
    from .ppi import prevalence

    labels = table.raw_llms[name]
    human = {item: list(found.values()) for item, found in table.raw_humans.items() if item in labels}
    if len(human) < 2 or not table.llm_only[name]:
        return None
    return prevalence(human, labels, table.classes)


def label_issues(table: Table, llm: Llm) -> list[dict[str, Any]]:
    """The human-labelled items ranked by how likely their human label is wrong, by cleanlab against the LLM's
    probabilities (score mode or sampled votes of an annotate run). Items where no probability falls on a class
    (every sample a no-answer) are left out; none at all when the LLM gave no probabilities."""
    classes = set(map(str, table.classes))
    items = [item for item in table.items if sum(p for c, p in llm.probabilities.get(item, {}).items() if c in classes) > 0]
    if not items:
        return []
    from .label_issues import rank_label_issues  # cleanlab, only when there is something to rank

    ranked = rank_label_issues(items, [table.raw_humans[item] for item in items], [llm.probabilities[item] for item in items], table.classes)
    return [{"llm": llm.name, "rank": k, **row} for k, row in enumerate(ranked, 1)]


# What it says ----------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def verdict_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per LLM, e.g. "gpt-4o passes the alt-test: ω = 0.75 at ε = 0.2 (ρ = 0.77)"."""
    lines = []
    for name, m in metrics["llms"].items():
        word = "passes" if m["passed"] else "fails"
        lines.append(f"{name} {word} the alt-test: ω = {_f(m['winning_rate'])} at ε = {m['epsilon']:g} (ρ = {_f(m['advantage_probability'])})")
    return lines


def _interval_of(fig: dict[str, Any]) -> dict[str, Any]:
    return {"value": fig["value"], "low": fig["low"], "high": fig["high"]}


def write_report(metrics: dict[str, Any], notes: list[str], issues: list[dict[str, Any]], out: Path) -> None:
    report = Report("Can an LLM replace the annotators?")
    report.text(f"{metrics['n_items']} items labelled by {len(metrics['annotators'])} annotators ({', '.join(metrics['annotators'])}); "
                f"scoring: {metrics['scoring']}. Every interval is a 95% bootstrap interval over items.")
    for note in notes:
        report.text(note)
    if metrics["llms"]:
        _report_alt_test(report, metrics)
    _report_agreement(report, metrics)
    if metrics["prevalence"]:
        _report_prevalence(report, metrics)
    if issues:
        _report_label_issues(report, issues)
    _report_dropped(report, metrics)
    report.write(out)


def _report_alt_test(report: Report, metrics: dict[str, Any]) -> None:
    report.heading("The alt-test")
    report.text("For each annotator, is the LLM at least as good as that annotator at matching the other annotators, "
                "allowing the LLM an advantage of ε? ω is the share of annotators it beats (Benjamini-Yekutieli at q); "
                "it passes when ω ≥ 0.5. ρ is the probability that it does at least as well as a random annotator on an item, "
                "and ranks LLMs.")
    for line in verdict_lines(metrics):
        report.text(line)
    rows, per_annotator = [], []
    for name, m in metrics["llms"].items():
        rho = {"value": m["advantage_probability"], **m["advantage_probability_interval"]}
        rows.append({"LLM": name, "passed": "yes" if m["passed"] else "no", "ω (winning rate)": m["winning_rate"], "ρ (advantage)": rho,
                     "ε": m["epsilon"], "q": m["q"], "items": m["n_items"], "annotators tested": len(m["annotators"]),
                     "skipped": len(m["skipped_annotators"])})
        for a, t in m["annotators"].items():
            per_annotator.append({"LLM": name, "annotator": a, "items": t["n_items"], "LLM ≥ human": t["llm_wins"], "human ≥ LLM": t["human_wins"],
                                  "p-value": t["p_value"], "LLM wins": "yes" if t["rejected"] else "no"})
    rows.sort(key=lambda r: -r["ρ (advantage)"]["value"])
    report.table(rows, caption="LLMs ranked by ρ", floatfmt=".2f")
    report.bar_chart({r["LLM"]: {"ρ": r["ρ (advantage)"]} for r in rows}, "Advantage probability ρ per LLM", ylabel="ρ")
    with report.collapsed("The test of each annotator"):
        report.table(per_annotator, floatfmt=".3g")


def _report_agreement(report: Report, metrics: dict[str, Any]) -> None:
    ag = metrics["agreement"]
    report.heading("Agreement, with the humans' own as the ceiling")
    if ag["humans"]:
        rows = [{"figure": f"Krippendorff's α ({level}) among the humans", "value": _interval_of(fig), "items": fig["n_items"]}
                for level, fig in ag["humans"]["alpha"].items()]
        fk = ag["humans"]["fleiss_kappa"]
        rows.append({"figure": "Fleiss' κ (items every annotator labelled)", "value": _interval_of(fk), "items": fk["n_items"]})
        report.table(rows)
    rows, per_annotator = [], []
    for name, found in ag["llms"].items():
        row: dict[str, Any] = {"LLM": name}
        if "majority" in found["cohen_kappa"]:
            fig = found["cohen_kappa"]["majority"]
            row.update({"Cohen's κ vs majority": _interval_of(fig), "items": fig["n_items"]})
        for level, fig in found.get("alpha_added", {}).items():
            row[f"α ({level}) with the LLM added"] = _interval_of(fig)
        rows.append(row)
        for a, fig in found["cohen_kappa"].items():
            if a == "majority":
                continue
            entry = {"LLM": name, "annotator": a, "Cohen's κ": _interval_of(fig), "items": fig["n_items"]}
            for level, alpha in found.get("alpha_in_place", {}).get(a, {}).items():
                entry[f"α ({level}) with the LLM in its place"] = _interval_of(alpha)
            per_annotator.append(entry)
    report.table(rows, drop_empty=True)
    report.table(per_annotator, caption="The LLM against each annotator, and α when the LLM takes that annotator's labels", drop_empty=True)


def _report_prevalence(report: Report, metrics: dict[str, Any]) -> None:
    report.heading("Prevalence of each class (prediction-powered inference)")
    report.text("PPI++ corrects the LLM's labels on the items humans did not label with the human sample; the interval is valid "
                "only if the human-labelled items are a random sample of the LLM's items.")
    rows = []
    for name, classes in metrics["prevalence"].items():
        for c, fig in classes.items():
            rows.append({"LLM": name, "class": c, "PPI++": _estimate(fig["ppi"]), "humans only": _estimate(fig["classical"]),
                         "LLM only": _estimate(fig["llm_only"]), "human items": fig["n_human"], "LLM-only items": fig["n_llm_only"],
                         "LLM labels worth (human labels)": fig.get("llm_worth_in_human_labels")})
    report.table(rows, floatfmt=".3f")


def _estimate(fig: dict[str, Any]) -> dict[str, Any]:
    return {"value": fig["estimate"], "low": fig["low"], "high": fig["high"]}


def _report_label_issues(report: Report, issues: list[dict[str, Any]], top: int = 10) -> None:
    report.heading("Items to re-check: the human label may be wrong")
    report.text(f"cleanlab ranks the human labels against the LLM's probabilities; the {top} most doubtful per LLM are below, "
                f"all of them in {LABEL_ISSUES}. A low score means the label is more likely wrong.")
    rows = [{"LLM": row["llm"], "rank": row["rank"], "item": row["item"],
             "human labels": ", ".join(map(str, row["human_labels"].values() if isinstance(row["human_labels"], dict) else row["human_labels"])),
             "LLM label": row["llm_label"], "LLM probability": row["llm_probability"], "score": row["score"]}
            for row in issues if row["rank"] <= top]
    report.table(rows, floatfmt=".3f")


def _report_dropped(report: Report, metrics: dict[str, Any]) -> None:
    dropped = metrics["dropped"]
    rows = [{"LLM": name, "human items it did not label": d["human_items_without_llm_label"], "its items no human labelled": d["llm_items_without_humans"],
             "annotators skipped": ", ".join(f"{a} ({n} items)" for a, n in d.get("skipped_annotators", {}).items()) or "none"}
            for name, d in dropped["llms"].items()]
    report.heading("What was left out")
    report.text(f"{dropped['items_below_min_humans']} item(s) have fewer human labels than --min-humans and are not tested.")
    report.table(rows)
