"""CHAIR (Rohrbach et al., 2018): how many of the COCO objects a caption names are not in the image.

CHAIR_i = hallucinated object mentions / all object mentions (repeats counted);
CHAIR_s = captions with at least one hallucinated mention / all captions. Ground truth per image is
the COCO instance annotations plus the objects named in the reference captions. English matching
follows the reference implementation by default (see audit.chair.words); Italian uses our own
table with simplemma lemmas.

Every scored caption becomes one record (core.runner's schema): target = the image's objects,
prediction = the categories the caption names, raw = the caption, scores = its mentions and counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from annotaudit.core.errors import InputError
from annotaudit.core.io import Problems, read_json, read_records, read_text, write_json
from annotaudit.core.metrics import Arrays, MetricSpec, defined, ratio, share_of, values
from annotaudit.core.runner import RECORD_KEYS, RECORDS, run_config, save_records
from annotaudit.core.runs import MANIFEST, fingerprint
from annotaudit.core.vocab import LANGUAGES

from . import words as chair_words
from .words import COCO_CATEGORIES, TOKEN_RE, singularize

Mention = tuple[str, str]  # (words as written in the caption, COCO category)


# Object extraction ---------------------------------------------------------------------------------

class ObjectExtractor:
    """Finds COCO objects in a caption: `extract(caption) -> [(word, category), ...]` in caption order."""

    def __init__(self, language: str = "en", fix_quirks: bool = False):
        if language not in LANGUAGES:
            raise InputError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
        self.language, self.fix_quirks = language, fix_quirks
        if language == "en":
            self.vocab = chair_words.english_vocabulary(fix_quirks)
            self.phrases = chair_words.english_phrases()
            self.first_words = {p.split()[0] for p in self.phrases}
        else:
            self._build_italian()

    def extract(self, caption: str) -> list[Mention]:
        return self._english(caption) if self.language == "en" else self._italian(caption)

    # English: tokenize, singularize, merge two-word phrases, then look words up.
    def _english(self, caption: str) -> list[Mention]:
        tokens = TOKEN_RE.findall(caption.lower())
        words = [singularize(t, self.fix_quirks) for t in tokens]
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
        self.it_vocab = chair_words.italian_vocabulary()
        index: dict[str, list[tuple[str, ...]]] = {}
        for phrase in self.it_vocab:
            index.setdefault(phrase[0], []).append(phrase)
        self.index = {k: sorted(v, key=len, reverse=True) for k, v in index.items()}
        self.seat_words = set(chair_words.italian_synonyms()["seat_words"])

    def _italian(self, caption: str) -> list[Mention]:
        tokens = chair_words.italian_words(caption)
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
        data = read_json(path)
        names = {c.get("id"): c.get("name") for c in _coco_list(data, "categories", path)}
        for k, name in names.items():
            if name not in COCO_CATEGORIES:
                raise InputError(f"category {name!r} is not one of the 80 COCO categories", path=path, item=str(k))
        for img in data.get("images", []):
            truth.setdefault(int(img["id"]), set())
        for k, ann in enumerate(_coco_list(data, "annotations", path)):
            if ann.get("category_id") not in names or "image_id" not in ann:
                raise InputError("annotation without a known category_id and an image_id", path=path, item=str(ann.get("id", k)))
            truth.setdefault(int(ann["image_id"]), set()).add(names[ann["category_id"]])
    ext = extractor("en", fix_quirks)
    for path in _paths(captions_paths):
        data = read_json(path)
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
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError("ground truth must be a JSON object mapping image id to a list of categories", path=path)
    truth: dict[int, set[str]] = {}
    known = set(COCO_CATEGORIES)
    for key, cats in data.items():
        if not isinstance(cats, list) or not str(key).isdigit():
            raise InputError("expected an image id mapping to a list of categories", path=path, item=str(key))
        unknown = [c for c in cats if c not in known]
        if unknown:
            raise InputError(f"not COCO categories: {', '.join(map(str, unknown))}", path=path, item=str(key))
        truth[int(key)] = set(cats)
    return truth



def resolve_ground_truth(ground_truth: str | Path | None = None, instances: Iterable[str | Path] = (), captions_ref: Iterable[str | Path] = (),
                         fix_quirks: bool = False) -> tuple[dict[int, set[str]], str]:
    """Ground truth from a build-gt file, or built from COCO annotations, with a description of its files
    and their fingerprints for the run configuration (an edited file then counts as another run)."""
    if ground_truth is not None:
        return load_ground_truth(ground_truth), _described([ground_truth])
    instances, captions_ref = list(instances or ()), list(captions_ref or ())
    if instances:
        truth = build_ground_truth(instances, captions_ref, fix_quirks=fix_quirks)
        return truth, "instances " + _described(instances) + ("; captions " + _described(captions_ref) if captions_ref else "")
    raise InputError("give --ground-truth FILE, or --instances FILE (with --captions-ref FILE)")


def _described(paths: Iterable[str | Path]) -> str:
    return ", ".join(f"{Path(p).resolve()} ({fingerprint(p)})" for p in paths)


# Captions ------------------------------------------------------------------------------------------

@dataclass
class Caption:
    """One caption to score, with where it came from (for error messages) and what the record keeps.

    `extra` may hold the source's id, prompt and image, and, for the records of a run, their
    target and meta.
    """

    image_id: int
    caption: str
    line: int
    prompt_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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


def load_image_map(path: str | Path) -> dict[str, int]:
    """question_id -> image id, from a JSON object or from a question file (question_id and image per line)."""
    path = Path(path)
    rows = read_records(path)
    if len(rows) == 1 and "question_id" not in rows[0][1]:
        pairs = list(rows[0][1].items())
    else:
        pairs = []
        for n, rec in rows:
            if "question_id" not in rec:
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
    """Captions from JSONL, a JSON list or concatenated JSON objects: {image_id, caption} (OPERA logs,
    coco-caption results), POPE-style {question_id, text} with an image map, or the records.jsonl of a
    CHAIR run or score (a run folder may be given for its records)."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORDS
    problems = problems if problems is not None else Problems()
    listed = path.suffix.lower() != ".jsonl" and path.is_file() and read_text(path).lstrip().startswith("[")
    rows = read_records(path, on_error=problems)
    if len(rows) == 1 and isinstance(rows[0][1].get("logs"), list):  # lmms-eval's older per-task JSON: {"args": ..., "logs": [samples]}
        rows, listed = [(k, rec) for k, rec in enumerate(rows[0][1]["logs"], 1) if isinstance(rec, dict)], True
    if not rows:
        raise InputError(f"no captions read; formats tried: {CAPTION_FORMATS_TRIED}", path=path)
    captions = []
    for n, rec in rows:
        where = {"path": path, "item": str(n)} if listed else {"path": path, "line": n}
        cap = _caption(rec, image_map, where)
        if isinstance(cap, InputError):
            problems.add(cap)
            continue
        cap.line = n
        if not cap.caption.strip():  # reported, yet scored: an empty answer names no object
            problems.add(InputError("empty caption", **where))
        captions.append(cap)
    return captions


CAPTION_FORMATS_TRIED = ("JSON Lines, a JSON list or concatenated JSON objects of {image_id, caption} or {question_id, text} with --image-map, "
                         "CSV/TSV with those columns, annotaudit records, lmms-eval coco_cap_chair samples (doc, resps/filtered_resps)")


def _caption(rec: dict[str, Any], image_map: dict[str, int] | None, where: dict[str, Any]) -> Caption | InputError:
    if all(k in rec for k in RECORD_KEYS):
        return _recorded_caption(rec, where)
    if isinstance(rec.get("doc"), dict) and ("resps" in rec or "filtered_resps" in rec):
        return _lmms_eval_caption(rec, where)
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
    extra = {"id": rec.get("id", rec.get("question_id")), "prompt": rec.get("prompt"), "image": rec.get("image", image_id)}
    return Caption(image_id, text, 0, str(prompt_id) if prompt_id is not None else None, extra)


def _first_text(value: Any) -> str | None:
    while isinstance(value, list | tuple):
        if not value:
            return None
        value = value[0]
    return value if isinstance(value, str) else None


def _lmms_eval_caption(rec: dict[str, Any], where: dict[str, Any]) -> Caption | InputError:
    """A sample of lmms-eval's coco_cap_chair log: the caption is the (filtered) response, the image id the doc's
    question_id, and the doc's gt_object (or the logged metric's 'answer') its ground truth."""
    doc = rec["doc"]
    text = _first_text(rec.get("filtered_resps")) if rec.get("filtered_resps") is not None else _first_text(rec.get("resps"))
    if text is None:
        return InputError("lmms-eval sample without a text response (resps / filtered_resps)", **where)
    scored = next((v for k, v in rec.items() if k.startswith("coco_cap_") and isinstance(v, dict)), {})
    image_id = parse_image_id(doc.get("image_id", doc.get("question_id", scored.get("image_id"))))
    if image_id is None:
        return InputError(f"no usable image id (doc question_id {doc.get('question_id')!r})", **where)
    truth = doc.get("gt_object", scored.get("answer"))
    extra = {"id": rec.get("doc_id", image_id), "prompt": None, "image": doc.get("image_path", image_id)}
    if isinstance(truth, list):
        extra["target"] = [str(t) for t in truth]
    return Caption(image_id, text, 0, None, extra)


def _recorded_caption(rec: dict[str, Any], where: dict[str, Any]) -> Caption | InputError:
    """A caption from a record of `audit chair run` or `score`: the caption is `raw`, the image and prompt are in `meta`."""
    meta, given = rec["meta"] if isinstance(rec["meta"], dict) else {}, rec["input"] if isinstance(rec["input"], dict) else {}
    if not isinstance(rec["raw"], str):
        return InputError("record without a caption: 'raw' is not a text", **where)
    image_id = parse_image_id(meta.get("image_id", given.get("image")))
    if image_id is None:
        return InputError(f"no usable image id ({meta.get('image_id')!r})", **where)
    prompt_id = meta.get("prompt_id")
    extra = {"id": rec["id"], "prompt": given.get("prompt"), "image": given.get("image", image_id), "target": rec["target"], "meta": meta}
    return Caption(image_id, rec["raw"], 0, str(prompt_id) if prompt_id is not None else None, extra)


# Scoring -------------------------------------------------------------------------------------------

def caption_scores(text: str, truth: set[str], ext: ObjectExtractor) -> tuple[list[str], dict[str, Any]]:
    """(categories named, in caption order; per-caption scores) of one caption against its image's objects."""
    mentions = ext.extract(text)
    hallucinated = [m for m in mentions if m[1] not in truth]
    scores = {
        "mentions": [list(m) for m in mentions],
        "hallucinated": [list(m) for m in hallucinated],
        "recalled": sorted({c for _, c in mentions} & truth),
        "n_mentions": len(mentions),
        "n_hallucinated": len(hallucinated),
        "n_words": len(text.split()),
        "chair_s": int(bool(hallucinated)),
    }
    return [c for _, c in mentions], scores


def score_caption(caption: Caption, truth: set[str], ext: ObjectExtractor) -> dict[str, Any]:
    """The record of one caption: target is the image's objects, prediction the categories the caption names."""
    prediction, scores = caption_scores(caption.caption, truth, ext)
    extra = caption.extra
    meta = dict(extra.get("meta") or {})
    meta["image_id"] = caption.image_id
    if caption.prompt_id is not None:
        meta["prompt_id"] = caption.prompt_id
    if "meta" not in extra:
        meta["line"] = caption.line
    record_id = str(extra["id"]) if extra.get("id") is not None else f"#{caption.line}"
    return {"id": record_id, "input": {"prompt": extra.get("prompt"), "image": extra.get("image", caption.image_id)}, "target": sorted(truth),
            "prediction": prediction, "raw": caption.caption, "scores": scores, "meta": meta}


def caption_records(captions: Iterable[Caption], truth: dict[int, set[str]], language: str = "en", fix_quirks: bool = False,
                    problems: Problems | None = None, source: str | Path | None = None) -> list[dict[str, Any]]:
    """One record per caption; captions of images the ground truth does not know go to `problems` and are left out."""
    problems = problems if problems is not None else Problems()
    ext = extractor(language, fix_quirks)
    records = []
    for cap in captions:
        if cap.image_id not in truth:
            problems.add(InputError(f"image id {cap.image_id} is not in the ground truth", path=source, line=cap.line))
            continue
        records.append(score_caption(cap, truth[cap.image_id], ext))
    return records


def caption_parts(records: Sequence[dict[str, Any]]) -> Arrays:
    """Per caption: whether it hallucinates, its mentions and hallucinated mentions, its words, the image's objects and those it names."""
    scores = [r["scores"] for r in records]
    return {
        "hallucinating": np.array([s["chair_s"] for s in scores], dtype=float),
        "hallucinated": np.array([s["n_hallucinated"] for s in scores], dtype=float),
        "mentions": np.array([s["n_mentions"] for s in scores], dtype=float),
        "words": np.array([s["n_words"] for s in scores], dtype=float),
        "objects": np.array([len(r["target"]) for r in records], dtype=float),
        "recalled": np.array([len(s["recalled"]) for s in scores], dtype=float),
    }


METRICS = (MetricSpec("chair_s", caption_parts, ratio("hallucinating"), share_of("hallucinating")), MetricSpec("chair_i", caption_parts, ratio("hallucinated", "mentions")),
           MetricSpec("recall", caption_parts, ratio("recalled", "objects")))
MEAN_LENGTH = MetricSpec("mean_length", caption_parts, ratio("words"))  # describes the captions, not a rate


def _metrics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    arrays = caption_parts(records)
    figures = {name: defined(v) for name, v in values((*METRICS, MEAN_LENGTH), arrays).items()}
    return {
        **figures,
        "n_captions": len(records),
        "n_mentions": int(arrays["mentions"].sum()),
        "n_hallucinated": int(arrays["hallucinated"].sum()),
        "n_hallucinated_captions": int(arrays["hallucinating"].sum()),
    }


def chair_metrics(records: Iterable[dict[str, Any]], language: str = "en", fix_quirks: bool = False) -> dict[str, Any]:
    """CHAIR_s, CHAIR_i, recall and mean length of scored records, overall and per prompt (meta.prompt_id)."""
    records = list(records)
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        prompt_id = (rec.get("meta") or {}).get("prompt_id")
        if prompt_id is not None:
            by_prompt.setdefault(str(prompt_id), []).append(rec)
    metrics = _metrics(records)
    metrics.update(language=language, fix_quirks=fix_quirks)
    if by_prompt:
        metrics["by_prompt"] = {p: _metrics(recs) for p, recs in by_prompt.items()}
    return metrics


def score_captions(captions: Iterable[Caption], truth: dict[int, set[str]], language: str = "en", fix_quirks: bool = False,
                   problems: Problems | None = None, source: str | Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score captions against ground truth: (metrics, records), without writing anything."""
    records = caption_records(captions, truth, language, fix_quirks, problems, source)
    return chair_metrics(records, language, fix_quirks), records



def score_caption_file(captions: str | Path, out: str | Path, ground_truth: str | Path | None = None, instances: Iterable[str | Path] = (),
                       captions_ref: Iterable[str | Path] = (), image_map: str | Path | None = None, language: str | None = None,
                       fix_quirks: bool = False, problems: Problems | None = None, force: bool = False, model: str | None = None) -> dict[str, Any]:
    """`audit chair score`: score a caption file, or a finished `audit chair run` folder, into a run folder.

    Writes run.json, records.jsonl, metrics.json, problems.jsonl and the report, only after every
    caption is read and scored, so a strict stop leaves earlier results alone. Without ground-truth
    options the records' own targets are the ground truth, which re-scores a run without the model;
    `language` then defaults to the run's. A folder holding scores of other inputs is refused unless `force`.
    `model` names the model that wrote the captions (default: the run's). Returns the metrics.
    """
    captions, out = Path(captions), Path(out)
    source = captions / RECORDS if captions.is_dir() else captions
    if (out / RECORDS).resolve() == source.resolve():
        raise InputError("write the new scores to another folder than the run they re-score", path=out)
    recorded = run_config(captions, "chair", "annotaudit audit chair score --captions") if (captions / MANIFEST).is_file() else {}
    if language is None:
        language = recorded.get("language", "en")
    problems = problems if problems is not None else Problems()
    mapping = load_image_map(image_map) if image_map else None
    caps = read_captions(source, mapping, problems)
    if ground_truth is not None or instances:
        truth, truth_source = resolve_ground_truth(ground_truth, instances, captions_ref, fix_quirks)
    else:
        truth, truth_source = _recorded_truth(caps, source), f"the targets of {source.resolve()}"
    records = caption_records(caps, truth, language, fix_quirks, problems, source)
    if not records:
        first = f"; the first of {len(problems)} problems: {problems.messages()[0]}" if len(problems) else ""
        raise InputError("no caption could be scored" + first, path=source)
    config = {
        "captions": str(source.resolve()), "ground_truth": truth_source,
        "image_map": str(Path(image_map).resolve()) if image_map else None, "language": language, "fix_quirks": fix_quirks,
        "model": model or recorded.get("model"),
    }
    return save_records(out, config, records, lambda recs: {**chair_metrics(recs, language, fix_quirks), "model": config["model"]},
                        chair_report_writer(f"CHAIR of {config['model'] or captions.name}"), problems=problems, force=force,
                        kind="chair", inputs={"captions": source, "image_map": image_map})


def _recorded_truth(captions: list[Caption], source: Path) -> dict[int, set[str]]:
    truth: dict[int, set[str]] = {}
    for cap in captions:
        target = cap.extra.get("target")
        if not isinstance(target, list):
            raise InputError("give --ground-truth FILE, or --instances FILE (with --captions-ref FILE): "
                             "only the records of a CHAIR run and lmms-eval coco_cap_chair logs carry their own ground truth", path=source, line=cap.line)
        truth.setdefault(cap.image_id, set()).update(map(str, target))
    return truth


# Report --------------------------------------------------------------------------------------------

def hallucinated_counts(records: Iterable[dict[str, Any]]) -> Counter:
    return Counter(c for r in records for _, c in r["scores"]["hallucinated"])


def chair_report_writer(title: str = "CHAIR"):
    """The runner's report function: report.md and report.html of the records and their metrics."""
    def write(records: list[dict[str, Any]], metrics: dict[str, Any], out: Path) -> None:
        chair_report(metrics, records, title).write(out)

    return write


def chair_report(metrics: dict[str, Any], records: list[dict[str, Any]], title: str = "CHAIR"):
    from annotaudit.core.report import Report

    keys = ("chair_s", "chair_i", "recall", "mean_length", "n_captions", "n_mentions", "n_hallucinated")
    report = Report(title)
    report.text(
        "CHAIR_s: share of captions naming at least one COCO object that is not in the image. "
        "CHAIR_i: share of object mentions that are hallucinated. Recall: share of ground-truth objects mentioned. "
        f"Language: {metrics.get('language')}; reference quirks {'fixed' if metrics.get('fix_quirks') else 'kept (comparable with the literature)'}."
    )
    report.run_status(metrics)
    rows = [{"captions": "all", **{k: metrics[k] for k in keys}}]
    rows += [{"captions": f"prompt {p}", **{k: m[k] for k in keys}} for p, m in metrics.get("by_prompt", {}).items()]
    report.table(rows, caption="CHAIR metrics (fractions; mean length in words)")
    if metrics.get("by_prompt"):
        report.bar_chart({p: {"CHAIR_s": m["chair_s"] or 0, "CHAIR_i": m["chair_i"] or 0} for p, m in metrics["by_prompt"].items()}, "CHAIR by prompt")
    top = hallucinated_counts(records).most_common(15)
    if top:
        report.heading("Most hallucinated objects")
        report.table([{"object": c, "hallucinated mentions": n} for c, n in top])
    return report
