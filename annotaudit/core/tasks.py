"""Tasks as data, shared by annotate and classify: labels (in one fixed order), the prompt, verbalizers
for score mode, the patterns that pull a label out of free text, and the splits and metrics a classifier uses.

The built-in tasks and task files live in `annotaudit.annotate.tasks`, beside the dataset readers they need."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import InputError


class PromptItem(Protocol):
    """What a prompt is rendered from: an annotate reader's Item, or anything with the same three fields."""

    id: str
    text: str
    meta: dict[str, Any]


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
        self.patterns = {lab: _as_list(self.patterns.get(lab)) or [label_pattern(lab)] for lab in self.labels}
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

    def render(self, item: PromptItem) -> str:
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


def label_pattern(label: str) -> str:
    """The label itself as a pattern; underscores match a space, a hyphen or nothing."""
    import regex

    return regex.escape(label).replace("_", "[ _-]?")
