"""The built-in tasks, task files and reading a task's dataset. `Task` itself lives in `annotaudit.core.tasks`
(re-exported here), so classifiers and others need not import annotate for it. Built-ins follow Mohta et al.
2023; a user's task is a ten-line YAML or TOML file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from annotaudit.core.errors import InputError
from annotaudit.core.io import Problems, read_text
from annotaudit.core.tasks import CLASSIFIER_METRICS, NOANSWER, Task, label_pattern

from . import readers

__all__ = ["CLASSIFIER_METRICS", "NOANSWER", "Task", "builtin_tasks", "get_task", "load_task_file", "read_items"]

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
        patterns={g: GENRE_PATTERNS.get(g, [label_pattern(g)]) for g in readers.MMIMDB_GENRES},
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
