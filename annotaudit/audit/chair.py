"""CHAIR (Rohrbach et al., 2018): how many of the COCO objects a caption names are not in the image.

CHAIR_i = hallucinated object mentions / all object mentions (repeats counted);
CHAIR_s = captions with at least one hallucinated mention / all captions. Ground truth per image is
the COCO instance annotations plus the objects named in the reference captions. English matching
follows the reference implementation by default (see audit.chair_words); Italian uses our own
table with simplemma lemmas.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import iter_jsonl, write_json

from . import chair_words as W

LANGUAGES = ("en", "it")
Mention = tuple[str, str]  # (words as written in the caption, COCO category)


# Object extraction ---------------------------------------------------------------------------------

class ObjectExtractor:
    """Finds COCO objects in a caption: `extract(caption) -> [(word, category), ...]` in caption order."""

    def __init__(self, language: str = "en", fix_quirks: bool = False):
        if language not in LANGUAGES:
            raise InputError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
        self.language, self.fix_quirks = language, fix_quirks
        if language == "en":
            self.vocab = W.english_vocabulary(fix_quirks)
            self.phrases = W.english_phrases()
            self.first_words = {p.split()[0] for p in self.phrases}
        else:
            self._build_italian()

    def extract(self, caption: str) -> list[Mention]:
        return self._english(caption) if self.language == "en" else self._italian(caption)

    # English: tokenize, singularize, merge two-word phrases, then look words up.
    def _english(self, caption: str) -> list[Mention]:
        tokens = W.TOKEN_RE.findall(caption.lower())
        words = [W.singularize(t, self.fix_quirks) for t in tokens]
        merged: list[tuple[str, str]] = []  # (normalized word, surface)
        i, n = 0, len(words)
        while i < n:
            if words[i] in self.first_words and i + 1 < n:
                target = self.phrases.get(words[i] + " " + words[i + 1])
                if target is not None:
                    merged.append((target, tokens[i] + " " + tokens[i + 1]))
                    i += 2
                    continue
            merged.append((words[i], tokens[i]))
            i += 1
        drop_seat = any(w == "toilet" for w, _ in merged)  # "the seat of the toilet" is no chair
        return [(s, self.vocab[w]) for w, s in merged if w in self.vocab and not (drop_seat and w == "seat")]

    # Italian: tokenize, lemmatize with simplemma, longest phrase match on surface or lemma.
    def _build_italian(self) -> None:
        self.it_vocab = W.italian_vocabulary()
        index: dict[str, list[tuple[str, ...]]] = {}
        for phrase in self.it_vocab:
            index.setdefault(phrase[0], []).append(phrase)
        self.index = {k: sorted(v, key=len, reverse=True) for k, v in index.items()}
        self.seat_words = set(W.italian_table()["seat_words"])

    def _italian(self, caption: str) -> list[Mention]:
        tokens = W.italian_words(caption)
        forms = [(t, _lemma_it(t)) for t in tokens]
        found: list[tuple[str, str, str]] = []  # (surface, category, lemma of the first word)
        i, n = 0, len(tokens)
        while i < n:
            best = self._longest(forms, i)
            if best is None:
                i += 1
                continue
            category = self.it_vocab[best]
            if category is not None:
                found.append((" ".join(tokens[i : i + len(best)]), category, forms[i][1] if len(best) == 1 else ""))
            i += len(best)
        drop_seat = any(c == "toilet" for _, c, _ in found)
        return [(s, c) for s, c, lem in found if not (drop_seat and c == "chair" and (lem in self.seat_words or s in self.seat_words))]

    def _longest(self, forms: Sequence[tuple[str, str]], i: int) -> tuple[str, ...] | None:
        best: tuple[str, ...] | None = None
        for form in set(forms[i]):
            for phrase in self.index.get(form, ()):
                if best is not None and len(phrase) <= len(best):
                    break
                if i + len(phrase) <= len(forms) and all(phrase[k] in forms[i + k] for k in range(1, len(phrase))):
                    best = phrase
                    break
        return best


@lru_cache(maxsize=200_000)
def _lemma_it(token: str) -> str:
    import simplemma

    return simplemma.lemmatize(token, lang="it").lower() if token.isalpha() else token


@cache
def extractor(language: str = "en", fix_quirks: bool = False) -> ObjectExtractor:
    """A shared extractor per setting (building one reads the vocabulary)."""
    return ObjectExtractor(language, fix_quirks)


def extract_objects(caption: str, language: str = "en", fix_quirks: bool = False) -> list[Mention]:
    """The COCO objects a caption names, as (word, category) pairs in caption order."""
    return extractor(language, fix_quirks).extract(caption)


# Ground truth --------------------------------------------------------------------------------------

def _read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None


def _coco_list(data: Any, key: str, path: str | Path) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise InputError(f"not a COCO annotation file: no '{key}' list", path=path)
    return data[key]


def build_ground_truth(instances_paths: str | Path | Iterable[str | Path], captions_paths: str | Path | Iterable[str | Path] = (), fix_quirks: bool = False) -> dict[int, set[str]]:
    """Per-image COCO objects, the CHAIR way: instance annotations plus the objects that the
    reference captions name (read with the English extractor). Images listed without any object
    get an empty set, so that everything a caption names there counts as hallucinated."""
    truth: dict[int, set[str]] = {}
    for path in _paths(instances_paths):
        data = _read_json(path)
        names = {c.get("id"): c.get("name") for c in _coco_list(data, "categories", path)}
        for k, name in names.items():
            if name not in W.COCO_CATEGORIES:
                raise InputError(f"category {name!r} is not one of the 80 COCO categories", path=path, item=str(k))
        for img in data.get("images", []):
            truth.setdefault(int(img["id"]), set())
        for k, ann in enumerate(_coco_list(data, "annotations", path)):
            if ann.get("category_id") not in names or "image_id" not in ann:
                raise InputError("annotation without a known category_id and an image_id", path=path, item=str(ann.get("id", k)))
            truth.setdefault(int(ann["image_id"]), set()).add(names[ann["category_id"]])
    ext = extractor("en", fix_quirks)
    for path in _paths(captions_paths):
        data = _read_json(path)
        for img in data.get("images", []) if isinstance(data, dict) else []:
            truth.setdefault(int(img["id"]), set())
        for k, ann in enumerate(_coco_list(data, "annotations", path)):
            if "image_id" not in ann or not isinstance(ann.get("caption"), str):
                raise InputError("caption annotation without image_id and caption", path=path, item=str(ann.get("id", k)))
            truth.setdefault(int(ann["image_id"]), set()).update(c for _, c in ext.extract(ann["caption"]))
    return truth


def _paths(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(paths, str | Path):
        return [Path(paths)]
    return [Path(p) for p in paths]


def write_ground_truth(truth: dict[int, set[str]], path: str | Path) -> Path:
    """JSON mapping image id to its sorted category names (atomic write)."""
    write_json(path, {str(k): sorted(v) for k, v in sorted(truth.items())})
    return Path(path)


def load_ground_truth(path: str | Path) -> dict[int, set[str]]:
    """Read a ground-truth file written by build-gt (or the same format, optionally gzipped)."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise InputError("ground truth must be a JSON object mapping image id to a list of categories", path=path)
    truth: dict[int, set[str]] = {}
    known = set(W.COCO_CATEGORIES)
    for key, cats in data.items():
        if not isinstance(cats, list) or not str(key).isdigit():
            raise InputError("expected an image id mapping to a list of categories", path=path, item=str(key))
        unknown = [c for c in cats if c not in known]
        if unknown:
            raise InputError(f"not COCO categories: {', '.join(map(str, unknown))}", path=path, item=str(key))
        truth[int(key)] = set(cats)
    return truth


# Captions ------------------------------------------------------------------------------------------

@dataclass
class Caption:
    """One caption to score, with where it came from (for error messages)."""

    image_id: int
    caption: str
    line: int
    prompt_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Problems:
    """Collects bad-input messages; in strict mode the first one is raised."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.errors: list[InputError] = []

    def add(self, err: InputError) -> None:
        if self.strict:
            raise err
        self.errors.append(err)

    def messages(self) -> list[str]:
        return [str(e) for e in self.errors]


_ID_RE = re.compile(r"(\d+)(?:\.\w+)?$")


def parse_image_id(value: Any) -> int | None:
    """An image id from an int, a digit string or a COCO file name (COCO_val2014_000000310196.jpg)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _ID_RE.search(value.strip())
        return int(m.group(1)) if m else None
    return None


def _records(path: Path) -> list[tuple[int, Any]]:
    """(line or item number, parsed record) from a JSON list or a JSON Lines file; bad lines kept as None."""
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            return [(k + 1, r) for k, r in enumerate(json.loads(text))]
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    out: list[tuple[int, Any]] = []
    for n, rec in iter_jsonl(path, on_error=lambda err: out.append((err.line, err))):
        out.append((n, rec))
    return out


def load_image_map(path: str | Path) -> dict[str, int]:
    """question_id -> image id, from a JSON object or from a question file (question_id and image per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    text = path.read_text(encoding="utf-8-sig").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and "question_id" not in data:
        pairs = data.items()
    else:
        pairs = []
        for n, rec in _records(path):
            if isinstance(rec, InputError):
                raise rec
            if not isinstance(rec, dict) or "question_id" not in rec:
                raise InputError("image map line needs question_id and image (or image_id)", path=path, line=n)
            pairs.append((rec["question_id"], rec.get("image", rec.get("image_id"))))
    out = {}
    for qid, image in pairs:
        image_id = parse_image_id(image)
        if image_id is None:
            raise InputError(f"no image id in {image!r}", path=path, item=str(qid))
        out[str(qid)] = image_id
    return out


def read_captions(path: str | Path, image_map: dict[str, int] | None = None, problems: Problems | None = None) -> list[Caption]:
    """Captions from JSONL or a JSON list of {image_id, caption} (OPERA logs, coco-caption results,
    `audit chair run` output) or of POPE-style {question_id, text} with an image map."""
    path = Path(path)
    problems = problems or Problems()
    is_list = path.read_text(encoding="utf-8-sig").lstrip().startswith("[") if path.is_file() else False
    captions = []
    for n, rec in _records(path):
        where = {"path": path, "item": str(n)} if is_list else {"path": path, "line": n}
        if isinstance(rec, InputError):
            problems.add(rec)
            continue
        cap = _caption(rec, image_map, where)
        if isinstance(cap, InputError):
            problems.add(cap)
            continue
        cap.line = n
        if not cap.caption.strip():  # reported, yet scored: an empty answer names no object
            problems.add(InputError("empty caption", **where))
        captions.append(cap)
    return captions


def _caption(rec: Any, image_map: dict[str, int] | None, where: dict[str, Any]) -> Caption | InputError:
    if not isinstance(rec, dict):
        return InputError("expected a JSON object", **where)
    text = rec.get("caption", rec.get("text"))
    if not isinstance(text, str):
        return InputError("no caption: expected a 'caption' (or POPE-style 'text') field", **where)
    raw = rec.get("image_id", rec.get("image"))
    if raw is None and "question_id" in rec:
        if image_map is None:
            return InputError("POPE-style record without an image: pass --image-map", **where)
        raw = image_map.get(str(rec["question_id"]))
        if raw is None:
            return InputError(f"question_id {rec['question_id']} is not in the image map", **where)
    image_id = parse_image_id(raw)
    if image_id is None:
        return InputError(f"no usable image id ({raw!r})", **where)
    prompt_id = rec.get("prompt_id")
    return Caption(image_id, text, 0, str(prompt_id) if prompt_id is not None else None, {k: rec[k] for k in ("id", "prompt") if k in rec})


# Scoring -------------------------------------------------------------------------------------------

def _empty_totals() -> dict[str, float]:
    return {"n_captions": 0, "n_hallucinated_captions": 0, "n_mentions": 0, "n_hallucinated": 0, "n_words": 0, "gt_objects": 0, "gt_mentioned": 0}


def _add(tot: dict[str, float], detail: dict[str, Any]) -> None:
    tot["n_captions"] += 1
    tot["n_hallucinated_captions"] += bool(detail["hallucinated"])
    tot["n_mentions"] += len(detail["mentions"])
    tot["n_hallucinated"] += len(detail["hallucinated"])
    tot["n_words"] += detail["n_words"]
    tot["gt_objects"] += len(detail["ground_truth"])
    tot["gt_mentioned"] += len(detail["recalled"])


def _metrics(tot: dict[str, float]) -> dict[str, Any]:
    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    return {
        "chair_s": ratio(tot["n_hallucinated_captions"], tot["n_captions"]),
        "chair_i": ratio(tot["n_hallucinated"], tot["n_mentions"]),
        "recall": ratio(tot["gt_mentioned"], tot["gt_objects"]),
        "mean_length": ratio(tot["n_words"], tot["n_captions"]),
        "n_captions": int(tot["n_captions"]),
        "n_mentions": int(tot["n_mentions"]),
        "n_hallucinated": int(tot["n_hallucinated"]),
        "n_hallucinated_captions": int(tot["n_hallucinated_captions"]),
    }


def score_caption(caption: Caption, truth: set[str], ext: ObjectExtractor) -> dict[str, Any]:
    """Per-caption detail: mentions, hallucinated ones, ground truth and the recalled objects."""
    mentions = ext.extract(caption.caption)
    hallucinated = [m for m in mentions if m[1] not in truth]
    detail = {"image_id": caption.image_id}
    if caption.prompt_id is not None:
        detail["prompt_id"] = caption.prompt_id
    detail.update(
        caption=caption.caption,
        mentions=[list(m) for m in mentions],
        hallucinated=[list(m) for m in hallucinated],
        ground_truth=sorted(truth),
        recalled=sorted({c for _, c in mentions} & truth),
        n_words=len(caption.caption.split()),
    )
    return detail


def score_captions(captions: Iterable[Caption], truth: dict[int, set[str]], language: str = "en", fix_quirks: bool = False, problems: Problems | None = None, source: str | Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score captions against ground truth: (metrics, per-caption details). Captions of images the
    ground truth does not know are reported to `problems` and left out."""
    problems = problems or Problems()
    ext = extractor(language, fix_quirks)
    total, by_prompt, details = _empty_totals(), {}, []
    for cap in captions:
        if cap.image_id not in truth:
            problems.add(InputError(f"image id {cap.image_id} is not in the ground truth", path=source, line=cap.line))
            continue
        d = score_caption(cap, truth[cap.image_id], ext)
        details.append(d)
        _add(total, d)
        if cap.prompt_id is not None:
            _add(by_prompt.setdefault(cap.prompt_id, _empty_totals()), d)
    metrics = _metrics(total)
    metrics.update(language=language, fix_quirks=fix_quirks)
    if by_prompt:
        metrics["by_prompt"] = {p: _metrics(t) for p, t in by_prompt.items()}
    return metrics, details


def hallucinated_counts(details: Iterable[dict[str, Any]]) -> Counter:
    return Counter(c for d in details for _, c in d["hallucinated"])


def write_results(out: str | Path, metrics: dict[str, Any], details: list[dict[str, Any]], title: str = "CHAIR") -> None:
    """metrics.json, details.jsonl (each written whole, then moved into place) and the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "details.jsonl.tmp"
    tmp.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in details), encoding="utf-8")
    tmp.replace(out / "details.jsonl")
    write_json(out / "metrics.json", metrics)
    chair_report(metrics, details, title).write(out)


def chair_report(metrics: dict[str, Any], details: list[dict[str, Any]], title: str = "CHAIR"):
    from annotaudit.core.report import Report

    keys = ("chair_s", "chair_i", "recall", "mean_length", "n_captions", "n_mentions", "n_hallucinated")
    report = Report(title)
    report.text(
        "CHAIR_s: share of captions naming at least one COCO object that is not in the image. "
        "CHAIR_i: share of object mentions that are hallucinated. Recall: share of ground-truth objects mentioned. "
        f"Language: {metrics.get('language')}; reference quirks {'fixed' if metrics.get('fix_quirks') else 'kept (comparable with the literature)'}."
    )
    rows = [{"captions": "all", **{k: metrics[k] for k in keys}}]
    rows += [{"captions": f"prompt {p}", **{k: m[k] for k in keys}} for p, m in metrics.get("by_prompt", {}).items()]
    report.table(rows, caption="CHAIR metrics (fractions; mean length in words)")
    if metrics.get("by_prompt"):
        report.bar_chart({p: {"CHAIR_s": m["chair_s"] or 0, "CHAIR_i": m["chair_i"] or 0} for p, m in metrics["by_prompt"].items()}, "CHAIR by prompt")
    top = hallucinated_counts(details).most_common(15)
    if top:
        report.heading("Most hallucinated objects")
        report.table([{"object": c, "hallucinated mentions": n} for c, n in top])
    return report
