"""Examples for the classifiers: human labels from a task's dataset, LLM labels from annotate runs.

Tasks (labels, splits, metrics) are the annotate tasks: `annotaudit.annotate.tasks.get_task`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from annotaudit.annotate import readers
from annotaudit.annotate.tasks import get_task, read_items
from annotaudit.core.errors import InputError
from annotaudit.core.io import iter_jsonl
from annotaudit.core.runner import RECORDS, Sample, read_run_records, run_config
from annotaudit.core.tasks import NOANSWER, Task


@dataclass
class Example:
    """One classifier input: text (or a text pair), an optional image, and its target label(s)."""

    id: str
    text: str
    image: Path | None
    target: str | tuple[str, ...]
    text_pair: str | None = None


def to_sample(ex: Example) -> Sample:
    """The runner's view of an example, so classifier records share every command's schema."""
    target = list(ex.target) if isinstance(ex.target, tuple) else ex.target or None
    return Sample(ex.id, {"text": ex.text, "text_pair": ex.text_pair, "image": None if ex.image is None else str(ex.image)}, target)


def from_sample(sample: Sample) -> Example:
    image = sample.input.get("image")
    target = tuple(sample.target) if isinstance(sample.target, list) else sample.target or ""
    return Example(sample.id, sample.input["text"], None if image is None else Path(image), target, sample.input.get("text_pair"))


def as_task(task: str | Path | Task) -> Task:
    """A Task as given, or a built-in name or task file resolved by `get_task`."""
    return task if isinstance(task, Task) else get_task(task)


def _plain(label: str) -> str:
    return label.strip().lower().replace("_", " ")


def normalize_label(task: Task, raw: Any, item: str, where: str | Path | None = None, line: int | None = None) -> str | tuple[str, ...]:
    """A raw label (human or LLM) as one of the task's classes, or a tuple of classes for multi-label tasks.

    Aliases and combined labels (MM-IMDB's "both" = drama and comedy) expand to the classes they stand for.
    """
    values = raw if isinstance(raw, list | tuple) else [raw]
    parts = {**{k.lower(): v for k, v in task.combine.items()}, **task.aliases}
    out: list[str] = []
    for value in values:
        mapped = parts.get(str(value).strip().lower(), parts.get(_plain(str(value)), value))
        for label in mapped if isinstance(mapped, list) else [mapped]:
            label = parts.get(str(label).strip().lower(), label)  # an alias of a combined label
            for one in label if isinstance(label, list) else [label]:
                match = [x for x in task.classes if _plain(x) == _plain(str(one))]
                if not match:
                    raise InputError(f"unknown label {value!r} for task {task.name} (labels: {', '.join(task.classes)})",
                                     path=where, line=line, item=item)
                out.append(match[0])
    if task.classes_multi_label:
        return tuple(x for x in task.classes if x in out)
    if len(out) != 1:
        raise InputError(f"expected one label for task {task.name}, got {raw!r}", path=where, line=line, item=item)
    return out[0]


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


def _items(task: Task, data: Path, split: str, languages: str) -> list[readers.Item]:
    if task.dataset == "xnli":
        return _xnli_split(data, split, languages)
    return read_items(task, data, split, strict=True)


def load_split(task: str | Path | Task, data: str | Path, split: str, languages: str = "en", labelled: bool = True) -> list[Example]:
    """Human-labelled examples of one split; an item without a label is an error naming it (unless not `labelled`)."""
    task = as_task(task)
    items = _items(task, Path(data), split, languages)
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


def load_splits(task: str | Path | Task, data: str | Path, splits: list[str] | None = None,
                languages: str = "en") -> tuple[list[Example], list[Example], list[Example]]:
    """Train, dev and test examples (split names default to the task's)."""
    task = as_task(task)
    names = list(splits) if splits else list(task.splits)
    if len(names) != 3:
        raise InputError(f"splits are three names, train,dev,test; got {', '.join(names)}")
    train, dev, test = (load_split(task, data, s, languages) for s in names)
    return train, dev, test


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
    """The annotating model's name from the run's configuration, else the folder name."""
    try:
        model = run_config(run_dir).get("model")
    except InputError:
        return run_dir.name
    return model if isinstance(model, str) and model else run_dir.name


def _line(path: Path, index: int) -> int | None:
    """The line of the index-th record of a JSON Lines file (read again only to name a bad record)."""
    for k, (n, _) in enumerate(iter_jsonl(path)):
        if k == index:
            return n
    return None


def read_llm_labels(task: Task, run_dir: str | Path) -> LLMLabels:
    """The labels of an annotate run folder (or its records.jsonl): each record's `prediction`, or NOANSWER.

    An unknown label or an id given twice is an error naming the file and line.
    """
    run_dir = Path(run_dir)
    path = run_dir / RECORDS if run_dir.is_dir() else run_dir
    labels: dict[str, str | tuple[str, ...]] = {}
    for k, rec in enumerate(read_run_records(path)):
        item = str(rec["id"])
        if item in labels:
            raise InputError("this id is labelled twice", path=path, line=_line(path, k), item=item)
        prediction = rec["prediction"]
        if prediction in (NOANSWER, None, []):
            labels[item] = NOANSWER
            continue
        try:
            labels[item] = normalize_label(task, prediction, item, path)
        except InputError as exc:
            raise InputError(exc.message, path=path, line=_line(path, k), item=item) from None
    return LLMLabels(run_name(path.parent), path, labels)


def relabel(examples: list[Example], llm: LLMLabels, noanswer: str, task: Task) -> tuple[list[Example], dict[str, int]]:
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
