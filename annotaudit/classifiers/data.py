"""Tasks, splits and labels for the classifiers: human labels from the datasets, LLM labels from annotate runs."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from annotaudit.annotate import readers
from annotaudit.core.errors import InputError
from annotaudit.core.io import iter_jsonl

NOANSWER = "NOANSWER"


@dataclass(frozen=True)
class TaskSpec:
    """A classification task: its label space, its metrics and where its splits come from."""

    name: str
    labels: tuple[str, ...]
    multi_label: bool
    metrics: tuple[str, ...]
    primary: str
    splits: tuple[str, str, str]  # train, dev, test
    aliases: dict[str, Any] = field(default_factory=dict)  # raw label (lower-case) -> label or list of labels
    positive: str | None = None  # the class whose probability gives AUROC


TASKS = {
    "hateful_memes": TaskSpec(
        "hateful_memes", (readers.NOT_HATEFUL, readers.HATEFUL), False, ("auroc", "accuracy"), "auroc",
        ("train", "dev_seen", "test_unseen"),
        {"0": readers.NOT_HATEFUL, "1": readers.HATEFUL, "not hateful": readers.NOT_HATEFUL, "not-hateful": readers.NOT_HATEFUL},
        positive=readers.HATEFUL,
    ),
    "mmimdb": TaskSpec(
        "mmimdb", ("drama", "comedy"), True, ("micro_f1", "macro_f1"), "micro_f1", ("train", "dev", "test"),
        {"both": ["drama", "comedy"]},
    ),
    "mmimdb_genres": TaskSpec("mmimdb_genres", readers.MMIMDB_GENRES, True, ("micro_f1", "macro_f1"), "micro_f1", ("train", "dev", "test")),
    "xnli": TaskSpec("xnli", readers.NLI_LABELS, False, ("accuracy",), "accuracy", ("train", "dev", "test")),
}


@dataclass
class Example:
    """One classifier input: text (or a text pair), an optional image, and its target label(s)."""

    id: str
    text: str
    image: Path | None
    target: str | tuple[str, ...]
    text_pair: str | None = None


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def normalize_label(task: TaskSpec, raw: Any, item: str, where: str | Path | None = None, line: int | None = None) -> str | tuple[str, ...]:
    """A raw label (human or LLM) as the task's label, or a tuple of labels for multi-label tasks."""
    values = raw if isinstance(raw, list | tuple) else [raw]
    out: list[str] = []
    for value in values:
        key = str(value).strip().lower().replace("_", " ")
        mapped = task.aliases.get(key, task.aliases.get(str(value).strip().lower(), value))
        for label in mapped if isinstance(mapped, list) else [mapped]:
            match = [x for x in task.labels if x.lower().replace("_", " ") == str(label).strip().lower().replace("_", " ")]
            if not match:
                raise InputError(f"unknown label {value!r} for task {task.name} (labels: {', '.join(task.labels)})", path=where, line=line, item=item)
            out.append(match[0])
    if task.multi_label:
        return tuple(x for x in task.labels if x in out)
    if len(out) != 1:
        raise InputError(f"expected one label for task {task.name}, got {raw!r}", path=where, line=line, item=item)
    return out[0]


def _reader(task: TaskSpec, data: Path, languages: str) -> Callable[[str], list[readers.Item]]:
    if task.name == "hateful_memes":
        return lambda split: readers.read_hateful_memes(data, split, strict=True)
    if task.name in ("mmimdb", "mmimdb_genres"):
        sub = "genres" if task.name == "mmimdb_genres" else "drama_comedy"
        return lambda split: readers.read_mmimdb(data, split, task=sub, strict=True)
    return lambda split: _xnli_split(data, split, languages)


def _xnli_split(data: Path, split: str, languages: str) -> list[readers.Item]:
    """XNLI ships dev and test only: train on 90% of dev, stop early on the other 10% (fixed shuffle)."""
    folder = data if data.is_dir() else data.parent
    if split == "test":
        return readers.read_xnli(folder / "xnli.test.tsv", languages, strict=True)
    items = readers.read_xnli(folder / "xnli.dev.tsv", languages, strict=True)
    order = list(range(len(items)))
    random.Random(0).shuffle(order)
    cut = max(1, len(items) // 10)
    chosen = order[cut:] if split == "train" else order[:cut]
    return [items[i] for i in sorted(chosen)]


def load_split(task: TaskSpec, data: str | Path, split: str, languages: str = "en", labelled: bool = True) -> list[Example]:
    """Human-labelled examples of one split; an item without a label is an error naming it (unless not `labelled`)."""
    items = _reader(task, Path(data), languages)(split)
    if not items:
        raise InputError(f"split {split!r} of {data} holds no items for task {task.name}")
    out = []
    for item in items:
        pair = item.meta.get("hypothesis") if "premise" in item.meta else None
        text = item.meta["premise"] if pair is not None else item.text
        if item.label is None and labelled:
            raise InputError(f"split {split!r} has no human label for this item; pick a labelled split", path=item.meta.get("source"), item=item.id)
        target = "" if item.label is None else normalize_label(task, item.label, item.id, item.meta.get("source"))
        out.append(Example(item.id, text, item.image, target, pair))
    return out


@dataclass
class LLMLabels:
    """The labels one annotate run gave: id -> label (task labels) or NOANSWER."""

    name: str
    path: Path
    labels: dict[str, str | tuple[str, ...]]

    @property
    def answered(self) -> dict[str, str | tuple[str, ...]]:
        return {k: v for k, v in self.labels.items() if v != NOANSWER}


def run_name(run_dir: Path) -> str:
    """The annotating model's name from the run manifest, else the folder name."""
    manifest = run_dir / "run.json"
    if manifest.is_file():
        try:
            config = json.loads(manifest.read_text(encoding="utf-8")).get("config", {})
            if isinstance(config, dict) and isinstance(config.get("model"), str):
                return config["model"]
        except json.JSONDecodeError:
            pass
    return run_dir.name


def read_llm_labels(task: TaskSpec, run_dir: str | Path) -> LLMLabels:
    """`RUN_DIR/predictions.jsonl` lines of {id, label, answered}; a bad line is an error naming it."""
    run_dir = Path(run_dir)
    path = run_dir / "predictions.jsonl" if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise FileNotFoundError(f"no annotate run at {run_dir}: {path} does not exist")
    labels: dict[str, str | tuple[str, ...]] = {}
    for n, rec in iter_jsonl(path):
        if "id" not in rec or "label" not in rec:
            raise InputError("expected an object with 'id' and 'label'", path=path, line=n)
        item = str(rec["id"])
        if rec["label"] in (NOANSWER, None):
            labels[item] = NOANSWER
        else:
            labels[item] = normalize_label(task, rec["label"], item, path, n)
    if not labels:
        raise InputError("no predictions", path=path)
    return LLMLabels(run_name(run_dir if run_dir.is_dir() else run_dir.parent), path, labels)


def relabel(examples: list[Example], llm: LLMLabels, noanswer: str, task: TaskSpec) -> tuple[list[Example], dict[str, int]]:
    """Swap human labels for the run's; NOANSWER items are dropped or mapped to a fallback label.

    Items the run did not label are left out (counted as `missing`), so a run over part of the
    training split trains on that part.
    """
    fallback = None if noanswer == "drop" else normalize_label(task, noanswer, "--noanswer")
    out, counts = [], {"kept": 0, "noanswer": 0, "missing": 0}
    for ex in examples:
        label = llm.labels.get(ex.id)
        if label is None:
            counts["missing"] += 1
            continue
        if label == NOANSWER:
            counts["noanswer"] += 1
            if fallback is None:
                continue
            label = fallback
        out.append(replace(ex, target=label))
        counts["kept"] += 1
    if not out:
        raise InputError(f"run {llm.path} labels none of the {len(examples)} training items (ids do not match, or all are NOANSWER)")
    return out, counts
