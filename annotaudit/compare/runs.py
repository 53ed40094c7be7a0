"""Read any mix of run folders, tell what each one is, and group them into table rows.

A run's kind comes from its manifest (`run.json` kind); its dataset, model, prompt (or formatting),
language and setting from the manifest's config and its records. A row is (kind, dataset, model, prompt); languages and
settings are its columns, so the English and Italian runs of one model share a row. Two runs that
fill the same cell are an error unless `--label` names them apart. Only finished runs whose records
still give their own metrics.json are read, unless `allow_unfinished` lets the others in, marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotaudit.audit.pope.formats import setting_of
from annotaudit.core.errors import InputError
from annotaudit.core.io import read_json, safe_path
from annotaudit.core.runner import METRICS, read_run_records, run_config, run_manifest
from annotaudit.core.runs import MANIFEST
from annotaudit.core.vocab import LANGUAGES, SETTINGS

KINDS = ("pope", "chair", "vqa", "annotate", "mmbt", "verdict")
KIND_NAMES = {"pope": "POPE", "chair": "CHAIR", "vqa": "VQA", "annotate": "annotation", "mmbt": "MMBT", "verdict": "verdict"}
UNFINISHED = "(unfinished)"
TOLERANCE = 1e-9


@dataclass
class Entry:
    """What one run (or one part of it: a setting, a prompt, a language, an MMBT arm) contributes to one row."""

    kind: str
    dataset: str
    model: str
    prompt: str
    language: str
    setting: str
    run: Path
    records: list[Any]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.kind, self.dataset, self.model, self.prompt

    @property
    def column(self) -> tuple[str, str]:
        return self.language, self.setting

    @property
    def pairing(self) -> str:
        """The prompt less the mode: runs of one model in score and generate mode are compared too."""
        return str(self.info.get("pairing", self.prompt))


# Names -----------------------------------------------------------------------------------------

def model_name(value: Any) -> str:
    """A short model name: a registry name as it is, a local model by its folder ('hf:/x/models/lvlm' -> 'lvlm')."""
    text = str(value or "").removeprefix("hf:")
    if "/" in text and (text.startswith(("/", ".", "~")) or Path(text).exists()):
        return Path(text).name
    return text or "?"


def dataset_name(path: Any, fallback: str) -> str:
    """A question or task file's name less its setting and language parts ('coco_pope_random' -> 'coco_pope')."""
    if not path:
        return fallback
    parts = [p for p in re.split(r"[_\-]", Path(str(path)).stem) if p]
    kept = [p for p in parts if p.lower() not in LANGUAGES and p.lower() not in SETTINGS]
    return "_".join(kept) or fallback


def _config_of(run: Path | None) -> dict[str, Any]:
    if run is None or not (run / MANIFEST).is_file():
        return {}
    return run_config(run)


def _source_run(path: Any) -> Path | None:
    """The run folder a re-scoring read its records from (the folder, or the folder of its records.jsonl)."""
    if not path:
        return None
    p = Path(str(path))
    folder = p if p.is_dir() else p.parent
    return folder if (folder / MANIFEST).is_file() else None


# Kinds -----------------------------------------------------------------------------------------

# run.json kind -> the kind of compare's rows
READS = {"pope": "pope", "chair": "chair", "vqa": "vqa", "annotate": "annotate", "classify": "mmbt", "classify-compare": "mmbt-compare",
         "verdict": "verdict"}


def _pope(run: Path, config: dict[str, Any], records: list[dict[str, Any]]) -> list[Entry]:
    source = _config_of(_source_run(config.get("run")))
    questions = config.get("questions") or source.get("questions")
    first = next(iter(questions.values()), None) if isinstance(questions, dict) else questions
    dataset = dataset_name(first, "pope")
    answered_by = _config_of(_source_run(config.get("answers"))).get("model")  # answers taken from another run folder
    model = config.get("model") or source.get("model") or answered_by or Path(str(config.get("answers") or run)).stem
    mode, parser = config.get("mode", "generate"), config.get("parser", "pope")
    metrics = _metrics_of(run)
    labels = (metrics.get("protocol") or {}).get("labels") or {}
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        meta = r.get("meta") or {}
        cells.setdefault((str(meta.get("setting")), int(meta.get("template", 1))), []).append(r)
    entries = []
    for (raw_setting, template), recs in cells.items():
        pairing = f"template {template}" + (f", {parser} parser" if parser != "pope" else "")
        prompt = f"template {template}" + (f", {mode}" if mode != "generate" else "") + (f", {parser} parser" if parser != "pope" else "")
        protocol = (labels.get(raw_setting) or {}).get("version") or "unknown"
        entries.append(Entry("pope", dataset, model_name(model), prompt, config.get("language", "en"), setting_of(raw_setting), run, recs,
                             {"pairing": pairing, "protocol": protocol, "label_sets": metrics.get("label_sets") or {}}))
    return entries


def _chair_dataset(config: dict[str, Any], source: dict[str, Any]) -> str:
    images = str(config.get("images") or source.get("images") or "")
    truth = str(config.get("ground_truth") or source.get("ground_truth") or "")
    if "coco" in (images + truth).lower() or "val2014" in images:
        return "coco"
    if images:
        folder = Path(images)
        return folder.parent.name if folder.name in ("images", "img") else folder.name
    return "captions"


def _chair(run: Path, config: dict[str, Any], records: list[dict[str, Any]]) -> list[Entry]:
    source_run = _source_run(config.get("captions"))
    source = _config_of(source_run)
    model = config.get("model") or source.get("model") or Path(str(config.get("captions") or run)).stem
    language = config.get("language", "en")
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        pid = str((r.get("meta") or {}).get("prompt_id") or "default")
        by_prompt.setdefault(pid, []).append(r)
    entries = []
    for pid, recs in by_prompt.items():
        # a prompt named after its language ('en', 'I1-it') is the same prompt as its translations
        prompt = "default" if pid in LANGUAGES else re.sub(rf"[-_]({'|'.join(LANGUAGES)})$", "", pid)
        entries.append(Entry("chair", _chair_dataset(config, source), model_name(model), prompt, language, "", run, recs,
                             {"language": language, "fix_quirks": bool(config.get("fix_quirks"))}))
    return entries


def _task(config: dict[str, Any]) -> Any | None:
    """The annotation task of a run, or None when its file is gone."""
    from annotaudit.annotate.tasks import get_task

    try:
        return get_task(config["task"])
    except (InputError, FileNotFoundError, ValueError):
        return None


def _annotate(run: Path, config: dict[str, Any], records: list[dict[str, Any]]) -> list[Entry]:
    task = _task(config)
    dataset = task.name if task is not None else (config.get("task_spec") or {}).get("name") or dataset_name(config.get("task"), "task")
    mode = config.get("mode", "generate")
    judge = f", judge {config['judge']}" if config.get("judge") else ""
    prompt = mode + (f" x{config['samples']}" if mode == "generate" and config.get("samples", 1) > 1 else "") + judge
    langs = config.get("languages") or []
    by_language: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        lang = (r.get("meta") or {}).get("language") or (langs[0] if len(langs) == 1 else "")
        by_language.setdefault(str(lang), []).append(r)
    return [Entry("annotate", dataset, model_name(config.get("model")), prompt, lang, "", run, recs,
                  {"task": task, "path": run, "pairing": judge.removeprefix(", ")}) for lang, recs in by_language.items()]


def _vqa(run: Path, config: dict[str, Any], records: list[dict[str, Any]]) -> list[Entry]:
    task = str(config.get("task"))
    dataset = Path(task).stem if "/" in task or task.endswith((".json", ".jsonl", ".parquet")) else task
    language = "it" if dataset.endswith("-it") else ""
    by_formatting: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_formatting.setdefault(str(r["meta"]["formatting"]), []).append(r)
    return [Entry("vqa", dataset, model_name(config.get("model")), f, language, "", run, recs) for f, recs in by_formatting.items()]


def _mmbt_entry(run: Path, task_name: str, labels: str, trained_on: Path | None, seed_runs: list[list[dict[str, Any]]]) -> Entry:
    from annotaudit.annotate.tasks import get_task

    linked = _config_of(trained_on).get("model") if trained_on is not None else None
    arm = "human" if labels == "human" else model_name(linked or labels)
    return Entry("mmbt", task_name, arm, "", "", "", run, seed_runs, {"task": get_task(task_name), "trained_on": trained_on, "labels": labels})


def _labels_run(labels: str, candidates: list[Path]) -> Path | None:
    """The annotate run whose labels an arm was trained on: the folder itself, or the candidate whose model the arm is named after."""
    if labels == "human":
        return None
    folder = _source_run(labels)
    if folder is not None:
        return folder.resolve()
    for path in candidates:
        if str(_config_of(path).get("model") or path.name) == labels:
            return path.resolve()
    return None


def _mmbt_compare(run: Path, config: dict[str, Any], metrics: dict[str, Any]) -> list[Entry]:
    runs = [Path(p) for p in config.get("runs", [])]
    entries = []
    for name, result in metrics["results"].items():
        arm_dir = safe_path(run, result["dir"])
        seeds = [read_run_records(d) for d in sorted(arm_dir.glob("seed_*")) if (d / "records.jsonl").is_file()]
        if not seeds:
            raise InputError(f"no seed_*/records.jsonl for the arm {name!r}", path=arm_dir)
        entries.append(_mmbt_entry(run, config["task"], name, _labels_run(name, runs), seeds))
    return entries


def _verdict(run: Path, metrics: dict[str, Any]) -> list[Entry]:
    if not isinstance(metrics.get("llms"), dict):
        raise InputError("no llms in the metrics of this verdict run", path=run / METRICS)
    humans = (run_manifest(run).get("inputs") or {}).get("humans") or {}
    name = Path(str(humans.get("path") or run)).stem
    return [Entry("verdict", name, "", "", "", "", run, [], {"metrics": metrics})]


# Finished and untouched ------------------------------------------------------------------------

def _metrics_of(run: Path) -> dict[str, Any]:
    metrics = read_json(run / METRICS) if (run / METRICS).is_file() else {}
    return metrics if isinstance(metrics, dict) else {}


def _differs(recorded: Any, computed: float) -> bool:
    if recorded is None or isinstance(recorded, bool) or not isinstance(recorded, int | float):
        return False
    return abs(float(recorded) - computed) > TOLERANCE if computed == computed else True


def _first_disagreement(kind: str, records: list[dict[str, Any]], metrics: dict[str, Any]) -> str | None:
    """The first figure of metrics.json that the records no longer give, as 'name: recorded, records give'."""
    from annotaudit.core.metrics import item_arrays

    from . import measures

    checks: list[tuple[str, Any, float]] = []
    if kind == "pope":
        for setting, templates in (metrics.get("templates") or {}).items():
            for template, figures in (templates or {}).items():
                part = [r for r in records if str((r.get("meta") or {}).get("setting")) == setting
                        and str((r.get("meta") or {}).get("template", 1)) == str(template)]
                arrays = item_arrays(measures.POPE_SPECS, part) if part else {}
                checks += [(f"{setting} {s.name}", (figures or {}).get(s.name), s.value(arrays) if part else float("nan"))
                           for s in measures.POPE_SPECS]
    elif kind == "chair":
        arrays = item_arrays(measures.CHAIR_SPECS, records)
        checks += [(s.name, metrics.get(s.name), s.value(arrays)) for s in measures.CHAIR_SPECS]
    elif kind == "annotate":
        arrays = item_arrays(measures.ANNOTATE_SPECS, records)
        checks += [("accuracy_all", metrics.get("accuracy_all"), measures.ANNOTATE_SPECS[0].value(arrays)),
                   ("answer_rate", metrics.get("answer_rate"), measures.ANNOTATE_SPECS[1].value(arrays))]
    elif kind == "vqa":
        for formatting, figures in (metrics.get("formattings") or {}).items():
            part = [r for r in records if str((r.get("meta") or {}).get("formatting")) == formatting]
            if part:
                arrays = item_arrays(measures.VQA_SPECS, part)
                checks += [(f"{formatting} {s.name}", (figures or {}).get(s.name), s.value(arrays)) for s in measures.VQA_SPECS]
    for name, recorded, computed in checks:
        if _differs(recorded, computed):
            return f"{name}: metrics.json has {recorded:.4f}, its records give {computed:.4f}"
    return None


def unfinished(run: Path, kind: str, records: list[dict[str, Any]] | None) -> str | None:
    """Why a run cannot be compared as it is: no metrics.json, fewer records than its manifest's items,
    or records that no longer give its own metrics.json; None for a finished, untouched run."""
    if not (run / METRICS).is_file():
        return "it has no metrics.json (unfinished)"
    if records is None:
        return None
    expected = run_manifest(run).get("items")
    if isinstance(expected, int) and len(records) < expected:
        return f"it has {len(records)} records of the {expected} its run.json names (unfinished or edited)"
    wrong = _first_disagreement(kind, records, _metrics_of(run))
    return f"its records disagree with its own metrics.json ({wrong}): edited since it was scored" if wrong else None


# Reading ---------------------------------------------------------------------------------------

def read_run(run: str | Path, label: str | None = None, allow_unfinished: bool = False) -> list[Entry]:
    """The entries of one run folder; `label` replaces the model name in its rows. An unfinished or edited run is
    refused in one line, or with `allow_unfinished` read and marked."""
    run = Path(run)
    if not run.is_dir():
        raise InputError("not a folder", path=run)
    config = run_config(run, tuple(READS), "annotaudit compare")
    kind = READS[run_manifest(run)["kind"]]
    records = read_run_records(run) if kind in ("pope", "chair", "annotate", "vqa", "mmbt") and (run / "records.jsonl").is_file() else None
    if records is None and kind in ("pope", "chair", "annotate", "vqa", "mmbt"):
        reason = "it has no records.jsonl (unfinished)"
    else:
        reason = unfinished(run, kind, records)
    if reason and not allow_unfinished:
        raise InputError(f"not compared: {reason}; compare it anyway, marked {UNFINISHED}, with --allow-unfinished", path=run)
    entries = _entries(run, kind, config, records or [])
    for e in entries:
        if reason:
            e.info["unfinished"] = reason
    if label:
        for e in entries:
            e.info["model"] = e.model
            e.model = label
    for e in entries:
        if reason:
            e.model = f"{e.model} {UNFINISHED}".strip()
    return entries


def _entries(run: Path, kind: str, config: dict[str, Any], records: list[dict[str, Any]]) -> list[Entry]:
    if kind == "verdict":
        return _verdict(run, _metrics_of(run))
    if kind == "mmbt-compare":
        metrics = read_json(run / METRICS)
        if not isinstance(metrics, dict) or "results" not in metrics:
            raise InputError("no results in the metrics of this classify compare run (is it finished?)", path=run / METRICS)
        return _mmbt_compare(run, config, metrics)
    if kind == "mmbt":
        labels = str(config.get("labels", "human"))
        entries = [_mmbt_entry(run, config["task"], labels, _labels_run(labels, []), [records])]
        entries[0].info["seed"] = config.get("seed")
        return entries
    return {"pope": _pope, "chair": _chair, "annotate": _annotate, "vqa": _vqa}[kind](run, config, records)


def parse_labels(labels: list[str]) -> dict[Path, str]:
    """NAME=RUN_DIR pairs -> {resolved run folder: name}."""
    out: dict[Path, str] = {}
    for text in labels or []:
        name, sep, folder = text.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise InputError(f"--label takes NAME=RUN_DIR, not {text!r}")
        out[Path(folder.strip()).resolve()] = name.strip()
    return out


def read_runs(runs: list[str | Path], labels: dict[Path, str] | None = None, allow_unfinished: bool = False) -> list[Entry]:
    """Every run's entries, MMBT arms linked to the given annotate runs, and no cell filled twice."""
    if not runs:
        raise InputError("give at least one run folder")
    labels = labels or {}
    resolved = [Path(r).resolve() for r in runs]
    twice = next((r for k, r in enumerate(resolved) if r in resolved[:k]), None)
    if twice is not None:
        raise InputError("this run folder is given twice", path=twice)
    unknown = [p for p in labels if p not in resolved]
    if unknown:
        raise InputError("--label names a folder that is not among the runs", path=unknown[0])
    entries = [e for r in runs for e in read_run(r, labels.get(Path(r).resolve()), allow_unfinished)]
    annotate_runs = [e.run.resolve() for e in entries if e.kind == "annotate"]
    for e in entries:
        if e.kind == "mmbt" and e.info["trained_on"] is None and e.info["labels"] != "human":
            e.info["trained_on"] = _labels_run(e.info["labels"], annotate_runs)
            if e.info["trained_on"] is not None and "model" not in e.info:
                e.model = model_name(_config_of(e.info["trained_on"]).get("model"))
    return merge_seeds(check_unique(entries))


def check_unique(entries: list[Entry]) -> list[Entry]:
    """Refuse two runs that fill the same cell of a row (MMBT seeds of one arm excepted)."""
    seen: dict[tuple[Any, ...], Entry] = {}
    for e in entries:
        cell = (*e.key, *e.column)
        other = seen.get(cell)
        if other is not None and other.run != e.run and not (e.kind == "mmbt" and other.info.get("seed") != e.info.get("seed")):
            where = ", ".join(x for x in (KIND_NAMES[e.kind], e.dataset, e.model, e.prompt, *e.column) if x)
            raise InputError(f"{other.run} and {e.run} both give {where}; tell them apart with --label NAME=RUN_DIR")
        seen.setdefault(cell, e)
    return entries


def merge_seeds(entries: list[Entry]) -> list[Entry]:
    """Single MMBT runs of one arm with different seeds become one entry, averaged over its seeds."""
    out: list[Entry] = []
    arms: dict[tuple[Any, ...], Entry] = {}
    for e in entries:
        if e.kind != "mmbt" or "seed" not in e.info:
            out.append(e)
            continue
        cell = (*e.key, *e.column)
        if cell in arms:
            arms[cell].records.extend(e.records)
        else:
            arms[cell] = e
            out.append(e)
    return out
