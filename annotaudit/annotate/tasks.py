"""Tasks as data, for both annotate and classify: labels (in one fixed order), the prompt, verbalizers
for score mode, the patterns that pull a label out of free text, and the splits and metrics a
classifier uses. Built-ins follow Mohta et al. 2023; a user's task is a ten-line YAML or TOML file."""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from annotaudit.core.errors import InputError
from annotaudit.core.io import Problems, read_text

from . import readers

NOANSWER = "NOANSWER"
DATASETS = ("hateful_memes", "mmimdb", "xnli", "generic")
CLASSIFIER_METRICS = ("auroc", "accuracy", "micro_f1", "macro_f1")
# train, dev and test split names where a dataset's differ from train, dev, test.
DATASET_SPLITS = {"hateful_memes": ("train", "dev_seen", "test_unseen")}


@dataclass
class Task:
    """What to ask, which answers count, and how to recognise them in a model's reply.

    patterns: label -> regexes, matched whole-word and case-insensitively (default: the label).
    negated: label -> label a negated mention counts as ("not hateful" -> not_hateful); a negated
      mention of a label not listed here is simply ignored.
    combine: label -> labels whose joint mention means it (drama + comedy -> both). A classifier
      learns the parts as a multi-label task (see `classes`).
    positive: the label whose probability gives AUROC on binary tasks.
    metrics, primary: what a classifier reports (primary first; default from the label space) and
      stops early on.
    splits: train, dev and test split names for a classifier (default the dataset's).
    aliases: other spellings of a label in data or label files (raw, lower-case -> label or labels).
    """

    name: str
    labels: list[str]
    prompt: str
    verbalizers: dict[str, str] = field(default_factory=dict)
    patterns: dict[str, list[str]] = field(default_factory=dict)
    negated: dict[str, str] = field(default_factory=dict)
    combine: dict[str, list[str]] = field(default_factory=dict)
    multi_label: bool = False
    dataset: str = "generic"
    positive: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # reader options (e.g. MM-IMDB task)
    metrics: list[str] = field(default_factory=list)
    primary: str | None = None
    splits: list[str] = field(default_factory=list)
    aliases: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = [str(x) for x in self.labels]
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name!r}: needs two or more distinct labels")
        for key in ("verbalizers", "patterns", "negated", "combine"):
            unknown = [k for k in getattr(self, key) if k not in self.labels]
            if unknown:
                raise ValueError(f"task {self.name!r}: {key} names unknown label(s) {', '.join(unknown)}")
        self.verbalizers = {lab: str(self.verbalizers.get(lab, lab.replace("_", " ").capitalize())) for lab in self.labels}
        self.patterns = {lab: _as_list(self.patterns.get(lab)) or [_word(lab)] for lab in self.labels}
        _check_patterns(self.name, self.patterns)
        if self.dataset not in DATASETS:
            raise ValueError(f"task {self.name!r}: dataset must be one of {', '.join(DATASETS)}")
        fields = {f for _, f, _, _ in string.Formatter().parse(self.prompt) if f}
        if "text" not in fields and not fields & {"premise", "hypothesis"}:
            raise ValueError(f"task {self.name!r}: the prompt needs a {{text}} placeholder")
        if self.positive is not None and self.positive not in self.labels:
            raise ValueError(f"task {self.name!r}: positive {self.positive!r} is not a label")
        self._check_classifier()

    def _check_classifier(self) -> None:
        """Fill the classifier defaults and refuse metrics, splits or aliases that cannot work."""
        binary = not self.classes_multi_label and len(self.classes) == 2 and self.positive is not None
        default = ["micro_f1", "macro_f1"] if self.classes_multi_label else ["auroc", "accuracy"] if binary else ["accuracy"]
        self.metrics = _as_list(self.metrics) or default
        unknown = [m for m in self.metrics if m not in CLASSIFIER_METRICS]
        if unknown:
            raise ValueError(f"task {self.name!r}: unknown metric(s) {', '.join(unknown)}; metrics are {', '.join(CLASSIFIER_METRICS)}")
        if "auroc" in self.metrics and not binary:
            raise ValueError(f"task {self.name!r}: auroc needs a single-label task with two labels and a positive label")
        if self.classes_multi_label and set(self.metrics) & {"auroc", "accuracy"}:
            raise ValueError(f"task {self.name!r}: a multi-label classifier reports micro_f1 and macro_f1")
        self.primary = self.primary or self.metrics[0]
        if self.primary not in self.metrics:
            raise ValueError(f"task {self.name!r}: primary metric {self.primary!r} is not among its metrics")
        self.splits = _as_list(self.splits) or list(DATASET_SPLITS.get(self.dataset, ("train", "dev", "test")))
        if len(self.splits) != 3:
            raise ValueError(f"task {self.name!r}: splits are three names: train, dev, test")
        aliases = {}
        for raw, target in self.aliases.items():
            targets = _as_list(target)
            if not targets or any(t not in self.labels for t in targets):
                raise ValueError(f"task {self.name!r}: alias {raw!r} names unknown label(s) {target!r}")
            aliases[str(raw).strip().lower()] = targets if isinstance(target, list | tuple) else targets[0]
        self.aliases = aliases

    @property
    def classes(self) -> list[str]:
        """The classes a classifier predicts, in label order: the labels less those that only combine others."""
        return [lab for lab in self.labels if lab not in self.combine]

    @property
    def classes_multi_label(self) -> bool:
        """A classifier learns combined labels (MM-IMDB's "both") as their parts, so several classes at once."""
        return self.multi_label or bool(self.combine)

    def render(self, item: readers.Item) -> str:
        """The prompt for one item; placeholders are {text} and any field of item.meta."""
        values = {**{k: v for k, v in item.meta.items() if isinstance(v, str | int | float)}, "text": item.text, "id": item.id}
        try:
            return self.prompt.format_map(values)
        except KeyError as exc:
            raise InputError(f"prompt placeholder {exc} has no value for this item", item=item.id) from None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "labels": self.labels, "prompt": self.prompt, "verbalizers": self.verbalizers,
                "patterns": self.patterns, "negated": self.negated, "combine": self.combine, "multi_label": self.multi_label}


def _check_patterns(name: str, patterns: dict[str, list[str]]) -> None:
    """Compile every pattern now, so a typo stops the run before any model loads."""
    import regex

    for label, found in patterns.items():
        for pattern in found:
            try:
                regex.compile(pattern)
            except regex.error as exc:
                raise ValueError(f"task {name!r}: pattern {pattern!r} of label {label!r} is not a valid regular expression: {exc}") from None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list | tuple) else [value])]


def _word(label: str) -> str:
    """The label itself as a pattern; underscores match a space, a hyphen or nothing."""
    import regex

    return regex.escape(label).replace("_", "[ _-]?")


# built-in tasks -------------------------------------------------------------------------------

GENRE_PATTERNS = {
    "sci-fi": [r"sci[- ]?fi", r"science[- ]fiction"],
    "film-noir": [r"film[- ]noir", r"noir"],
    "biography": [r"biography", r"biographical", r"biopic"],
    "romance": [r"romance", r"romantic"],
    "comedy": [r"comedy", r"comedies", r"comedic", r"rom[- ]com"],
    "drama": [r"drama", r"dramas", r"dramedy"],
    "documentary": [r"documentary", r"documentaries"],
    "animation": [r"animation", r"animated"],
    "thriller": [r"thriller", r"thrillers"],
    "western": [r"western", r"westerns"],
    "musical": [r"musical", r"musicals"],
    "war": [r"war film", r"war movie", r"war drama", r"war"],
    "sport": [r"sports?"],
    "short": [r"short film", r"short"],
    "horror": [r"horror"],
    "family": [r"family film", r"family movie", r"family"],
}


def builtin_tasks() -> dict[str, Task]:
    """The study's three datasets (and MM-IMDB's full 23-genre task)."""
    hateful = Task(
        name="hateful_memes", dataset="hateful_memes", labels=[readers.NOT_HATEFUL, readers.HATEFUL],
        prompt="{text}\nIs the text above hateful?",
        verbalizers={readers.HATEFUL: "Yes", readers.NOT_HATEFUL: "No"},
        patterns={
            readers.HATEFUL: [r"^yes", r"hateful", r"hate[- ]speech", r"hatred"],
            readers.NOT_HATEFUL: [r"^no", r"harmless", r"benign", r"non[- ]hateful"],
        },
        negated={readers.HATEFUL: readers.NOT_HATEFUL},
        positive=readers.HATEFUL,
        aliases={"0": readers.NOT_HATEFUL, "1": readers.HATEFUL, "not-hateful": readers.NOT_HATEFUL},
    )
    mmimdb = Task(
        name="mmimdb", dataset="mmimdb", labels=["drama", "comedy", "both"],
        prompt="{text}\nIdentify the genre of this movie? Options: drama, comedy or both. Provide short answers.",
        verbalizers={"drama": "Drama", "comedy": "Comedy", "both": "Both"},
        patterns={
            "drama": GENRE_PATTERNS["drama"][:2],
            "comedy": GENRE_PATTERNS["comedy"],
            "both": [r"^both", r"both(?=[^.]*\b(?:drama|comed))", r"dramedy", r"(?:drama|comedy)[ -](?:drama|comedy)"],
        },
        combine={"both": ["drama", "comedy"]},
        options={"task": "drama_comedy"},
    )
    genres = Task(
        name="mmimdb_genres", dataset="mmimdb", labels=list(readers.MMIMDB_GENRES), multi_label=True,
        prompt="{text}\nIdentify the genres of this movie. Options: " + ", ".join(readers.MMIMDB_GENRES)
        + ". List every genre that applies. Provide short answers.",
        patterns={g: GENRE_PATTERNS.get(g, [_word(g)]) for g in readers.MMIMDB_GENRES},
        options={"task": "genres"},
    )
    xnli = Task(
        name="xnli", dataset="xnli", labels=list(readers.NLI_LABELS),
        prompt="Premise: {premise}\nHypothesis: {hypothesis}\nWhat is the relation between the premise and the hypothesis? "
        "Options: entailment, neutral or contradiction. Provide short answers.",
        verbalizers={"entailment": "Entailment", "neutral": "Neutral", "contradiction": "Contradiction"},
        patterns={
            "entailment": [r"entailment", r"entails?", r"entailed"],
            "neutral": [r"neutral"],
            "contradiction": [r"contradiction", r"contradicts?", r"contradictory", r"contradicted"],
        },
    )
    return {t.name: t for t in (hateful, mmimdb, genres, xnli)}


# task files -----------------------------------------------------------------------------------

class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: labels `yes`/`no`/`on`/`off` stay strings; only true/false are booleans."""


_YamlLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

TASK_KEYS = {"name", "labels", "prompt", "verbalizers", "patterns", "negated", "combine", "multi_label", "dataset", "positive", "options",
             "metrics", "primary", "splits", "aliases"}


def load_task_file(path: str | Path) -> Task:
    """A YAML (.yaml/.yml) or TOML (.toml) file with at least `prompt` and `labels`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no task file at {path}")
    text = read_text(path)
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.load(text, Loader=_YamlLoader)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"malformed TOML: {exc}", path=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"malformed YAML: {getattr(exc, 'problem', exc)}", path=path, line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise InputError("a task file is a mapping with prompt and labels", path=path)
    unknown = sorted(set(data) - TASK_KEYS)
    missing = [k for k in ("prompt", "labels") if k not in data]
    if unknown or missing:
        problem = f"unknown key(s) {', '.join(unknown)}" if unknown else f"missing key(s) {', '.join(missing)}"
        raise InputError(f"{problem}; keys are {', '.join(sorted(TASK_KEYS))}", path=path)
    data.setdefault("name", path.stem)
    try:
        return Task(**data)
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc), path=path) from None


def get_task(name_or_path: str | Path) -> Task:
    """A built-in task by name, or a task file by path."""
    tasks = builtin_tasks()
    if str(name_or_path) in tasks:
        return tasks[str(name_or_path)]
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml", ".toml") or path.exists():
        return load_task_file(path)
    raise InputError(f"unknown task {str(name_or_path)!r}; built-in: {', '.join(tasks)}, or a .yaml/.toml task file")


def read_items(task: Task, data: str | Path, split: str | None = None, languages: list[str] | None = None,
               strict: bool = False, problems: Problems | None = None, check_images: bool = True) -> list[readers.Item]:
    """Read the task's dataset with the reader its format needs.

    A generic task reads one JSONL/CSV file, or with `split` either the rows of that file whose
    `split` field is the split, or the file `<split>.jsonl` (.csv, .tsv) in a folder.
    """
    if task.dataset == "hateful_memes":
        split = split or "test_unseen"
        return _some(readers.read_hateful_memes(data, split, strict=strict, problems=problems, check_images=check_images), data,
                     f"Hateful Memes records in split {split!r} ({split}.jsonl or parquet)", problems)
    if task.dataset == "mmimdb":
        split = split or "dev"
        items = readers.read_mmimdb(data, split, task=task.options.get("task", "drama_comedy"), strict=strict,
                                    problems=problems, plot=task.options.get("plot", "first"), check_images=check_images)
        return _some(items, data, f"MM-IMDb movies in split {split!r} of split.json", problems)
    if task.dataset == "xnli":
        return readers.read_xnli(data, languages or ["en"], strict=strict, problems=problems)
    data = Path(data)
    if data.is_dir():
        return readers.read_generic(_split_file(data, split), task, strict=strict, problems=problems, check_images=check_images)
    items = readers.read_generic(data, task, strict=strict, problems=problems, check_images=check_images)
    if split is None:
        return items
    if not any("split" in it.meta for it in items):
        raise InputError(f"no 'split' field to pick split {split!r} from; give a folder of <split>.jsonl files instead", path=data)
    return [it for it in items if str(it.meta.get("split")) == split]


def _some(items: list[readers.Item], data: str | Path, expected: str, problems: Problems | None) -> list[readers.Item]:
    """Reading nothing is an error that says what was looked for (and how many records were skipped)."""
    if not items:
        skipped = f"; {len(problems)} bad record(s) skipped" if problems else ""
        raise InputError(f"no items: expected {expected}{skipped}", path=data)
    return items


def _split_file(folder: Path, split: str | None) -> Path:
    if split is None:
        raise InputError("a folder of split files needs a split name", path=folder)
    for suffix in (".jsonl", ".csv", ".tsv", ".json"):
        if (folder / f"{split}{suffix}").is_file():
            return folder / f"{split}{suffix}"
    have = sorted(p.name for p in folder.iterdir() if p.suffix in (".jsonl", ".csv", ".tsv", ".json"))
    raise InputError(f"no {split}.jsonl, .csv or .tsv here (found: {', '.join(have) or 'nothing'})", path=folder)
