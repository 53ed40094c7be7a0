"""Readers for the datasets as they lie on disk: Hateful Memes, MM-IMDB, XNLI, and a user's JSONL/CSV,
and for the hub's parquet copies of Hateful Memes, XNLI and a user's table.

Every reader returns a list of `Item`. A bad record (malformed line, missing image, unknown label)
becomes an `InputError` naming the file and line, or the item id where the format has no lines.
With `strict=True` (or a strict `Problems`) the first one is raised; otherwise the record is
skipped and the error goes to `problems` (a warning when none is given), so one bad line does not
cost a whole run.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import Problems, embedded_image, image_cache, iter_jsonl, read_json, read_parquet_records, read_records, read_text, safe_path

HATEFUL, NOT_HATEFUL = "hateful", "not_hateful"
HATEFUL_MEMES_SPLITS = ("train", "dev_seen", "dev_unseen", "test_seen", "test_unseen")
NLI_LABELS = ("entailment", "neutral", "contradiction")
XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
# The 23 genres of Arevalo et al.'s MM-IMDB, lower-cased.
MMIMDB_GENRES = (
    "drama", "comedy", "romance", "thriller", "crime", "action", "adventure", "horror", "documentary", "mystery",
    "sci-fi", "fantasy", "family", "biography", "war", "history", "music", "animation", "musical", "western",
    "sport", "short", "film-noir",
)
PLOT_CHOICES = ("first", "longest", "all")


@dataclass
class Item:
    """One thing to annotate. `label` is the human label (a list for multi-label tasks) or None."""

    id: str
    text: str
    image: Path | None = None
    label: str | list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


OnError = Callable[[InputError], None]


def _reporter(strict: bool, problems: Problems | None) -> OnError:
    """Where a reader sends a bad record: raised when strict, else into `problems`, else a warning."""
    if strict or (problems is not None and problems.strict):
        return _raise
    if problems is None:
        return lambda err: warnings.warn(f"skipped: {err}", stacklevel=2)
    return problems.add


def _raise(err: InputError) -> None:
    raise err


def _image(root: Path, rel: str, path: Path, line: int | None, item: str | None, check: bool) -> Path:
    try:
        image = safe_path(root, rel)
    except InputError as exc:
        raise InputError(exc.message, path=path, line=line, item=item) from None
    if check and not image.is_file():
        raise InputError(f"image not found: {image}", path=path, line=line, item=item)
    return image


def _unique(items: Iterable[tuple[Item, Path, int | None]], report: OnError) -> list[Item]:
    """Drop repeated ids (they would make resuming ambiguous), reporting each one."""
    seen: dict[str, int | None] = {}
    out = []
    for item, path, line in items:
        if item.id in seen:
            first = f" (first on line {seen[item.id]})" if seen[item.id] is not None else ""
            report(InputError(f"duplicate id {item.id!r}{first}", path=path, line=line, item=item.id))
            continue
        seen[item.id] = line
        out.append(item)
    return out


# Parquet with embedded images ---------------------------------------------------------------


def _safe_name(value: Any) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(value))[:100] or "item"


# Hateful Memes ------------------------------------------------------------------------------


def read_hateful_memes(root: str | Path, split: str = "test_unseen", strict: bool = False, problems: Problems | None = None,
                       check_images: bool = True) -> list[Item]:
    """`root/<split>.jsonl` lines of {"id","img","label","text"}; images resolved under root.

    Labels 1/0 become "hateful"/"not_hateful"; a test file without labels gives label None.
    """
    root = Path(root)
    parquet = _hateful_parquet(root, split)
    if parquet is not None:
        return _hateful_memes_parquet(parquet, strict, problems, check_images)
    path = root / f"{split}.jsonl"
    if not path.is_file() and (root / "data" / f"{split}.jsonl").is_file():
        root, path = root / "data", root / "data" / f"{split}.jsonl"
    if not path.is_file():
        have = sorted(p.stem for p in root.glob("*.jsonl")) if root.is_dir() else []
        raise FileNotFoundError(f"no Hateful Memes split {split!r} at {path}; found: {', '.join(have) or 'nothing'}")
    report = _reporter(strict, problems)

    def items() -> Iterator[tuple[Item, Path, int]]:
        for n, rec in iter_jsonl(path, on_error=report):
            try:
                yield _meme(rec, root, path, n, check_images), path, n
            except InputError as exc:
                report(exc)

    return _unique(items(), report)


def _hateful_parquet(root: Path, split: str) -> Path | None:
    """The parquet file of a split: ROOT itself, ROOT/<split>.parquet or the hub's ROOT/data/<split>-*.parquet."""
    if root.suffix.lower() == ".parquet":
        return root
    if (root / f"{split}.jsonl").is_file() or (root / "data" / f"{split}.jsonl").is_file():
        return None
    for pattern in (f"{split}.parquet", f"{split}-*.parquet", f"data/{split}.parquet", f"data/{split}-*.parquet"):
        hits = sorted(root.glob(pattern))
        if len(hits) == 1:
            return hits[0]
    return None


def _hateful_memes_parquet(path: Path, strict: bool, problems: Problems | None, check_images: bool) -> list[Item]:
    """The hub's Hateful Memes: id, text, label and the image embedded (`image` or `img`), or `img` as a path beside the file."""
    report = _reporter(strict, problems)
    folder = image_cache(path)

    def items() -> Iterator[tuple[Item, Path, int]]:
        for n, rec in read_parquet_records(path):
            try:
                yield _parquet_meme(rec, path, n, folder, check_images), path, n
            except InputError as exc:
                report(exc)

    out = _unique(items(), report)
    if not out:
        raise InputError("no memes read from the parquet file (columns id, text, label and image or img expected)", path=path)
    return out


def _parquet_meme(rec: dict[str, Any], path: Path, n: int, folder: Path, check_images: bool) -> Item:
    where = {"path": path, "item": f"row {n}"}
    if "text" not in rec:
        raise InputError("missing column 'text'", **where)
    item_id = str(rec.get("id") if rec.get("id") is not None else n)
    raw = rec.get("image", rec.get("img"))
    image = embedded_image(raw, folder, _safe_name(item_id))
    if image is None and isinstance(raw, str) and raw:
        image = _image(path.parent, raw, path, None, item_id, check_images)
    if image is None:
        raise InputError("no image: expected an embedded image in 'image' or 'img', or an image path", **where)
    label = rec.get("label")
    if label is not None and str(label) not in ("0", "1"):
        raise InputError(f"unknown label {label!r} (expected 0 or 1)", **where)
    label = None if label is None else HATEFUL if str(label) == "1" else NOT_HATEFUL
    return Item(item_id, str(rec["text"]), image, label, {"source": str(path), "row": n})


def _meme(rec: dict[str, Any], root: Path, path: Path, line: int, check_images: bool) -> Item:
    missing = [k for k in ("id", "img", "text") if k not in rec]
    if missing:
        raise InputError(f"missing field(s) {', '.join(missing)}", path=path, line=line)
    item_id = str(rec["id"])
    label = rec.get("label")
    if label is not None:
        if str(label) not in ("0", "1"):
            raise InputError(f"unknown label {label!r} (expected 0 or 1)", path=path, line=line, item=item_id)
        label = HATEFUL if str(label) == "1" else NOT_HATEFUL
    image = _image(root, str(rec["img"]), path, line, item_id, check_images)
    return Item(item_id, str(rec["text"]), image, label, {"source": str(path), "line": line})


# MM-IMDB ------------------------------------------------------------------------------------


def _mmimdb_root(root: Path) -> Path:
    for cand in (root, root / "mmimdb"):
        if (cand / "split.json").is_file() and (cand / "dataset").is_dir():
            return cand
    raise FileNotFoundError(f"no MM-IMDB at {root}: expected split.json and dataset/ there or under {root / 'mmimdb'}")


def _plot(plots: Any, how: str) -> str:
    if isinstance(plots, str):
        return plots
    plots = [str(p) for p in plots or [] if str(p).strip()]
    if not plots:
        return ""
    if how == "longest":
        return max(plots, key=len)
    if how == "all":
        return "\n\n".join(plots)
    return plots[0]


def mmimdb_label(genres: Iterable[str], task: str) -> str | list[str] | None:
    """drama_comedy: "drama", "comedy", "both", or None when neither; genres: the known genres present."""
    names = {str(g).strip().lower() for g in genres}
    if task == "genres":
        return [g for g in MMIMDB_GENRES if g in names]
    drama, comedy = "drama" in names, "comedy" in names
    if drama and comedy:
        return "both"
    return "drama" if drama else "comedy" if comedy else None


def read_mmimdb(root: str | Path, split: str = "dev", task: str = "drama_comedy", strict: bool = False,
                problems: Problems | None = None, plot: str = "first", check_images: bool = True) -> list[Item]:
    """Arevalo's layout: `split.json` (train/dev/test id lists), `dataset/<id>.json` and `<id>.jpeg`.

    `plot` picks which of a movie's plot summaries becomes the text (default the first one, the
    IMDb synopsis the others elaborate). For task "drama_comedy" only movies with drama and/or
    comedy among their genres are kept; for "genres" the label is the list of the 23 genres.
    """
    if task not in ("drama_comedy", "genres"):
        raise ValueError(f"unknown MM-IMDB task {task!r}; use drama_comedy or genres")
    if plot not in PLOT_CHOICES:
        raise ValueError(f"plot must be one of {', '.join(PLOT_CHOICES)}")
    root = _mmimdb_root(Path(root))
    split_file = root / "split.json"
    splits = read_json(split_file)
    if not isinstance(splits, dict):
        raise InputError("expected an object of split name -> ids", path=split_file)
    if split not in splits:
        raise InputError(f"no split {split!r}; it has {', '.join(splits)}", path=split_file)
    report = _reporter(strict, problems)

    def items() -> Iterator[tuple[Item, Path, None]]:
        for raw_id in splits[split]:
            try:
                item = _movie(root, str(raw_id), task, plot, check_images)
            except InputError as exc:
                report(exc)
                continue
            if item is not None:
                yield item, split_file, None

    return _unique(items(), report)


def _movie(root: Path, item_id: str, task: str, plot: str, check_images: bool) -> Item | None:
    path = safe_path(root / "dataset", f"{item_id}.json")
    if not path.is_file():
        raise InputError(f"listed in split.json but {path} does not exist", path=root / "split.json", item=item_id)
    try:
        rec = read_json(path)
    except InputError as exc:
        raise InputError(exc.message, path=path, line=exc.line, item=item_id) from None
    if not isinstance(rec, dict):
        raise InputError("expected a JSON object", path=path, item=item_id)
    if "genres" not in rec or "plot" not in rec:
        raise InputError("missing field plot or genres", path=path, item=item_id)
    label = mmimdb_label(rec["genres"], task)
    if label is None:
        return None
    text = _plot(rec["plot"], plot)
    if not text:
        raise InputError("empty plot", path=path, item=item_id)
    image = _image(root / "dataset", f"{item_id}.jpeg", path, None, item_id, check_images)
    meta = {"source": str(path), "genres": list(rec["genres"]), "title": rec.get("title")}
    return Item(item_id, text, image, label, meta)


# XNLI ---------------------------------------------------------------------------------------


def nli_text(premise: str, hypothesis: str) -> str:
    return f"Premise: {premise}\nHypothesis: {hypothesis}"


def read_xnli(path: str | Path, languages: Iterable[str] | str | None = ("en",), strict: bool = False,
              problems: Problems | None = None) -> list[Item]:
    """An XNLI-style TSV (header; columns language, gold_label, sentence1, sentence2; no quoting).

    Ids are `<language>-<pairID>` (pairID is shared by the translations of one pair). A requested
    language with no rows is an error; XNLI has no Dutch, so a Dutch set must be the user's own file.
    XNLI's quotes are text, so this reads without CSV quoting rather than with `core.io.read_records`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no NLI file at {path}")
    if isinstance(languages, str):
        languages = [x.strip() for x in languages.split(",") if x.strip()]
    wanted = None if languages is None else [lang.lower() for lang in languages]
    report = _reporter(strict, problems)
    if path.suffix.lower() == ".parquet":
        return _xnli_parquet(path, wanted, report)
    found: dict[str, int] = {}

    def items() -> Iterator[tuple[Item, Path, int]]:
        with io.StringIO(read_text(path)) as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None) or []
            missing = [c for c in ("language", "gold_label", "sentence1", "sentence2") if c not in header]
            if missing:
                raise InputError(f"header lacks column(s) {', '.join(missing)}", path=path, line=1)
            for row in reader:
                n = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    report(InputError(f"expected {len(header)} tab-separated fields, got {len(row)}", path=path, line=n))
                    continue
                rec = dict(zip(header, row))
                lang = rec["language"].strip().lower()
                found[lang] = found.get(lang, 0) + 1
                if wanted is not None and lang not in wanted:
                    continue
                try:
                    yield _pair(rec, lang, path, n), path, n
                except InputError as exc:
                    report(exc)

    out = _unique(items(), report)
    for lang in wanted or []:
        if not found.get(lang):
            raise InputError(_no_language(lang, found), path=path)
    return out


NLI_LABEL_IDS = {0: "entailment", 1: "neutral", 2: "contradiction"}


def _parquet_language(path: Path, wanted: list[str] | None) -> str:
    """The language of a one-language parquet (the hub's XNLI configs): its folder or name, else the one asked for."""
    for name in (path.parent.name, path.stem.split("-")[0], path.stem.split("_")[0]):
        if name.lower() in XNLI_LANGUAGES:
            return name.lower()
    if wanted and len(wanted) == 1:
        return wanted[0]
    raise InputError("cannot tell this parquet file's language (no 'language' column, no language folder): name one with --languages", path=path)


def _xnli_parquet(path: Path, wanted: list[str] | None, report: OnError) -> list[Item]:
    """The hub's XNLI: premise, hypothesis, label (0 entailment, 1 neutral, 2 contradiction), one language a config.

    There is no pair id, so an item's id is <language>-<file stem>-<row>.
    """
    rows = read_parquet_records(path)
    if rows and not {"premise", "hypothesis", "label"} <= set(rows[0][1]):
        raise InputError(f"expected columns premise, hypothesis, label (has: {', '.join(rows[0][1])})", path=path)
    if rows and isinstance(rows[0][1]["premise"], dict):
        raise InputError("this is the all-languages configuration (one dict of translations a row): use a one-language file", path=path)
    fixed = None if rows and "language" in rows[0][1] else _parquet_language(path, wanted)
    found: dict[str, int] = {}

    def items() -> Iterator[tuple[Item, Path, int]]:
        for n, rec in rows:
            lang = str(rec.get("language") or fixed).lower()
            found[lang] = found.get(lang, 0) + 1
            if wanted is not None and lang not in wanted:
                continue
            item_id = f"{lang}-{path.stem}-{n}"
            label = rec["label"]
            gold = NLI_LABEL_IDS.get(label) if isinstance(label, int) else str(label).strip().lower()
            if gold not in NLI_LABELS:
                report(InputError(f"unknown label {label!r} (expected 0, 1, 2 or {', '.join(NLI_LABELS)})", path=path, item=f"row {n}"))
                continue
            premise, hypothesis = str(rec["premise"]).strip(), str(rec["hypothesis"]).strip()
            meta = {"premise": premise, "hypothesis": hypothesis, "language": lang, "source": str(path), "row": n}
            yield Item(item_id, nli_text(premise, hypothesis), None, gold, meta), path, n

    out = _unique(items(), report)
    for lang in wanted or []:
        if not found.get(lang):
            raise InputError(_no_language(lang, found), path=path)
    if not out:
        raise InputError("no NLI pairs read from the parquet file", path=path)
    return out


def _no_language(lang: str, found: dict[str, int]) -> str:
    have = ", ".join(sorted(found)) or "none"
    msg = f"no rows in language {lang!r} (file has: {have})"
    if lang in ("nl", "nld", "dutch") and lang not in XNLI_LANGUAGES:
        msg += "; XNLI has no Dutch: give your own NLI file with the same columns (language, gold_label, sentence1, sentence2)"
    return msg


def _pair(rec: dict[str, str], lang: str, path: Path, line: int) -> Item:
    pair_id = (rec.get("pairID") or "").strip() or str(line)
    item_id = f"{lang}-{pair_id}"
    gold = rec["gold_label"].strip().lower()
    if gold not in NLI_LABELS:
        raise InputError(f"unknown label {rec['gold_label']!r} (expected {', '.join(NLI_LABELS)})", path=path, line=line, item=item_id)
    premise, hypothesis = rec["sentence1"].strip(), rec["sentence2"].strip()
    meta = {"premise": premise, "hypothesis": hypothesis, "language": lang, "source": str(path), "line": line}
    return Item(item_id, nli_text(premise, hypothesis), None, gold, meta)


# Generic JSONL / CSV -------------------------------------------------------------------------


def _task_labels(task: Any) -> tuple[list[str] | None, bool]:
    if task is None:
        return None, False
    labels = getattr(task, "labels", None)
    if labels is None and isinstance(task, list | tuple):
        labels = task
    return (list(labels) if labels else None), bool(getattr(task, "multi_label", False))


def _norm_label(raw: Any, labels: list[str] | None, multi: bool, path: Path, line: int, item_id: str) -> str | list[str] | None:
    if raw is None or raw == "" or raw == []:
        return None
    if multi:
        values = raw if isinstance(raw, list) else [v for v in str(raw).replace(";", "|").split("|")]
        return [_one_label(v, labels, path, line, item_id) for v in values if str(v).strip()]
    if isinstance(raw, list):
        raise InputError("a list label needs a multi-label task", path=path, line=line, item=item_id)
    return _one_label(raw, labels, path, line, item_id)


def _one_label(raw: Any, labels: list[str] | None, path: Path, line: int, item_id: str) -> str:
    value = str(raw).strip()
    if labels is None:
        return value
    for label in labels:
        if label.lower() == value.lower():
            return label
    raise InputError(f"unknown label {value!r} (task labels: {', '.join(labels)})", path=path, line=line, item=item_id)


GENERIC_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")


def _generic_records(path: Path, report: OnError) -> list[tuple[int, dict[str, Any]]]:
    suffix = (Path(path.stem) if path.suffix == ".gz" else path).suffix.lower()
    if suffix not in GENERIC_SUFFIXES:
        raise InputError(f"expected one of {', '.join(GENERIC_SUFFIXES)} (gzipped or not)", path=path)
    rows = read_parquet_records(path) if suffix == ".parquet" else read_records(path, on_error=report)
    if not rows:
        raise InputError("no records read; formats tried: JSON Lines, a JSON list, concatenated JSON objects, CSV, TSV, parquet "
                         "(records of id, text, image, label)", path=path)
    if suffix in (".csv", ".tsv") and rows and "text" not in rows[0][1]:
        raise InputError(f"header lacks a 'text' column (has: {', '.join(rows[0][1])})", path=path, line=1)
    return rows


def read_generic(path: str | Path, task: Any = None, strict: bool = False, problems: Problems | None = None,
                 check_images: bool = True) -> list[Item]:
    """A user's JSONL or CSV of {id, text, [image], [label]}; images relative to the file's folder.

    `task` (a Task, or a list of labels) validates labels case-insensitively; a multi-label task
    takes a JSON list, or in CSV labels joined by "|". A missing id becomes the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path}")
    labels, multi = _task_labels(task)
    report = _reporter(strict, problems)

    def items() -> Iterator[tuple[Item, Path, int]]:
        for n, rec in _generic_records(path, report):
            try:
                yield _generic(rec, path, n, labels, multi, check_images), path, n
            except InputError as exc:
                report(exc)

    return _unique(items(), report)


def _generic(rec: dict[str, Any], path: Path, line: int, labels: list[str] | None, multi: bool, check_images: bool) -> Item:
    item_id = str(rec.get("id") or "").strip() or str(line)
    text = rec.get("text")
    if text is None or not str(text).strip():
        raise InputError("missing or empty 'text'", path=path, line=line, item=item_id)
    image = None
    if isinstance(rec.get("image"), dict):
        image = embedded_image(rec["image"], image_cache(path), _safe_name(item_id))
    elif rec.get("image"):
        image = _image(path.parent, str(rec["image"]), path, line, item_id, check_images)
    label = _norm_label(rec.get("label"), labels, multi, path, line, item_id)
    extra = {k: v for k, v in rec.items() if k not in ("id", "text", "image", "label")}
    return Item(item_id, str(text), image, label, {**extra, "source": str(path), "line": line})
