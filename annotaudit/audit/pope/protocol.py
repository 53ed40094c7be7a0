"""POPE (Li et al., 2023): question files, prompts in English and Italian, answer parsers and metrics.

Building question sets lives in audit.pope.build, running a model in audit.pope.run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from annotaudit.core.errors import InputError
from annotaudit.core.io import read_json, read_records
from annotaudit.core.metrics import Arrays, MetricSpec, divide, names, share_of, values
from annotaudit.core.vocab import LANGUAGES

DEFAULT_IMAGE_PATTERN = "COCO_val2014_{id:012d}.jpg"

# The paper's four templates (its prompt-sensitivity study); the first is the standard one.
TEMPLATES: dict[str, list[str]] = {
    "en": [
        "Is there {obj} in the image?",
        "Does the image contain {obj}?",
        "Have you noticed {obj} in the image?",
        "Can you see {obj} in the image?",
    ],
    "it": [
        "C'è {obj} nell'immagine?",
        "L'immagine contiene {obj}?",
        "Hai notato {obj} nell'immagine?",
        "Riesci a vedere {obj} nell'immagine?",
    ],
}

# What a yes and a no look like as the answer's first token, for score mode.
CANDIDATES = {"en": ("Yes", "No"), "it": ("Sì", "No")}


# Italian ---------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def coco_italian_names() -> dict[str, dict[str, str]]:
    """The 80 COCO categories in Italian: name, gender, plural and indefinite article."""
    return read_json(Path(__file__).resolve().parent.parent / "data" / "coco_categories_it.json")


_USO = re.compile(r"^(s[^aeiouàèéìòù]|z|gn|ps|pn|x|y|i[aeiou])", re.IGNORECASE)


def italian_article(word: str, gender: str) -> str:
    """The indefinite article Italian grammar gives a noun phrase: un, uno, una or un'."""
    vowel = word[:1].lower() in "aeiouàèéìòùh"
    if gender == "f":
        return "un'" if vowel else "una"
    return "uno" if _USO.match(word) else "un"


def italian_phrase(obj: str, words: str | None = None) -> str:
    """'un cane', 'uno zaino', "un'arancia" for a COCO category name; `words` replaces the bare noun
    ('aquilone rosso') and keeps the noun's article."""
    entry = coco_italian_names().get(obj)
    if entry is None:
        raise InputError(f"object {obj!r} is not in the Italian table of COCO categories (audit/data/coco_categories_it.json)")
    art, words = entry["article"], words or entry["it"]
    return f"{art}{words}" if art.endswith("'") else f"{art} {words}"


def english_phrase(obj: str) -> str:
    """'a dog', 'an apple', as the published POPE files write them."""
    return f"{'an' if obj[:1].lower() in 'aeiou' else 'a'} {obj}"


def question_text(obj: str, language: str = "en", variant: int = 0) -> str:
    """One POPE question for an English category name, in the given language and template."""
    if language not in TEMPLATES:
        raise InputError(f"unknown language {language!r}; choose one of {', '.join(LANGUAGES)}")
    phrase = italian_phrase(obj) if language == "it" else english_phrase(obj)
    return TEMPLATES[language][variant].format(obj=phrase)


def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for lang, templates in TEMPLATES.items():
        for t in templates:
            body = re.escape(t).replace(re.escape("{obj}"), "(?P<obj>.+?)")
            out.append((lang, re.compile("^" + body + "$", re.IGNORECASE)))
    return out


_PATTERNS = _patterns()
_EN_ARTICLE = re.compile(r"^(an?|the)\s+", re.IGNORECASE)
_IT_ARTICLE = re.compile(r"^(un'|uno\s+|una\s+|un\s+)", re.IGNORECASE)


def parse_question(text: str) -> tuple[str, str] | None:
    """(language, English object) of a question in one of the templates; None when it is in none.

    Survives the published files' 'an traffic light'.
    """
    text = text.strip()
    for lang, pat in _PATTERNS:
        m = pat.match(text)
        if not m:
            continue
        phrase = m.group("obj").strip()
        if lang == "en":
            return lang, _EN_ARTICLE.sub("", phrase)
        name = _IT_ARTICLE.sub("", phrase)
        for en, entry in coco_italian_names().items():
            if entry["it"].lower() == name.lower():
                return lang, en
        return lang, name
    return None


# Reading files ---------------------------------------------------------------------------------

def _read_lines(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of a JSON Lines file (or a JSON list); CRLF and a UTF-8 BOM are fine."""
    out = read_records(path)
    if not out:
        raise InputError("no records", path=path)
    return out


def read_questions(path: str | Path) -> list[dict[str, Any]]:
    """POPE questions: question_id, image, text, label ('yes'/'no'); extra fields are kept."""
    questions, seen = [], set()
    for n, rec in _read_lines(path):
        for field in ("question_id", "image", "text", "label"):
            if field not in rec:
                raise InputError(f"missing field {field!r}", path=path, line=n)
        label = str(rec["label"]).strip().lower()
        if label not in ("yes", "no"):
            raise InputError(f"label must be 'yes' or 'no', not {rec['label']!r}", path=path, line=n)
        if rec["question_id"] in seen:
            raise InputError(f"question_id {rec['question_id']!r} appears twice", path=path, line=n)
        seen.add(rec["question_id"])
        questions.append({**rec, "label": label, "_line": n})
    return questions


def read_answers(path: str | Path) -> list[dict[str, Any]]:
    """Answer records carrying 'answer' (POPE's own format) or 'text'."""
    return answer_lines(_read_lines(path), path)


def answer_lines(records: list[tuple[int, dict[str, Any]]], path: str | Path) -> list[dict[str, Any]]:
    """Answer records (line, record) with the answer text in `_answer` and the line in `_line`."""
    out = []
    for n, rec in records:
        text = rec.get("answer", rec.get("text"))
        if text is None:
            raise InputError("an answer line needs 'answer' or 'text'", path=path, line=n)
        out.append({**rec, "_answer": str(text), "_line": n})
    return out


# Parsers ---------------------------------------------------------------------------------------

_NO_WORDS = {"en": ("No", "not", "no"), "it": ("No", "not", "no", "Non", "non")}


def parse_pope(text: str, language: str = "en") -> str:
    """POPE's evaluate.py: text before the first '.', commas dropped, split on spaces; 'No', 'not'
    or 'no' among the words means no, anything else (empty included) yes. Italian adds 'Non'/'non'."""
    words = text.split(".")[0].replace(",", "").split(" ")
    return "no" if any(w in _NO_WORDS[language] for w in words) else "yes"


_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_YES = {"en": {"yes"}, "it": {"yes", "sì", "si"}}
_NO = {"en": {"no"}, "it": {"no", "non"}}


def parse_strict(text: str, language: str = "en") -> str:
    """The first word alone decides: yes (sì), or no (non); anything else is 'unknown', counted wrong."""
    words = _WORD.findall(text.lower())
    if words and words[0] in _YES[language]:
        return "yes"
    if words and words[0] in _NO[language]:
        return "no"
    return "unknown"


def parse_vlmevalkit(text: str, language: str = "en") -> str:
    """VLMEvalKit's rule for yes/no benchmarks: lowercase words; yes without no is yes, no without
    yes is no, both or neither 'unknown', counted wrong. 'not' alone decides nothing."""
    words = set(_WORD.findall(text.lower()))
    yes, no = bool(words & _YES[language]), bool(words & _NO[language])
    if yes and not no:
        return "yes"
    if no and not yes:
        return "no"
    return "unknown"


NO_ANSWER = "none"  # a parser's verdict that leaves the question out of TP, FP, TN and FN (RePOPE's rule)


def parse_repope(text: str, language: str = "en") -> str:
    """RePOPE's evaluation code (Neuhaus and Hein 2025): lower-cased, 'yes' anywhere, even inside a word ('eyes'),
    is yes; otherwise 'no' anywhere ('not', 'nothing', 'know' too) is no; otherwise no answer, left out of the
    figures and counted. Their third rule, 'not' anywhere is no, is already covered by 'no'. Italian adds 'sì'."""
    low = text.lower()
    if "yes" in low or (language == "it" and "sì" in low):
        return "yes"
    if "no" in low:
        return "no"
    return NO_ANSWER


PARSERS = {"pope": parse_pope, "strict": parse_strict, "vlmevalkit": parse_vlmevalkit, "repope": parse_repope}


def get_parser(name: str):
    if name not in PARSERS:
        raise InputError(f"unknown parser {name!r}; choose one of {', '.join(PARSERS)}")
    return PARSERS[name]


# Metrics ---------------------------------------------------------------------------------------

def confusion(labels: Sequence[str], predictions: Sequence[str]) -> Arrays:
    """Per question 0/1 tp, fp, tn, fn (positive class yes) and whether it counts: a prediction neither yes nor no
    is a false no, except NO_ANSWER, which leaves the question out of every figure."""
    y, p = np.asarray(labels, dtype=object), np.asarray(predictions, dtype=object)
    counted = p != NO_ANSWER
    yes, said_yes = y == "yes", p == "yes"
    return {"tp": (yes & said_yes).astype(float), "fp": ((y == "no") & said_yes).astype(float),
            "tn": ((y == "no") & (p == "no")).astype(float), "fn": (yes & ~said_yes & counted).astype(float),
            "counted": counted.astype(float)}


def _record_confusion(records: Sequence[dict[str, Any]]) -> Arrays:
    return confusion([r["target"] for r in records], [r["prediction"] for r in records])


def _counts(arrays: Arrays, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(weights @ arrays[k] for k in ("tp", "fp", "tn", "fn"))


# POPE's rates are 0 where undefined, as its evaluate.py has them.
def _accuracy(arrays: Arrays, weights: np.ndarray) -> np.ndarray:
    tp, _, tn, _ = _counts(arrays, weights)
    return divide(tp + tn, weights @ arrays["counted"], 0.0)


def _precision(arrays: Arrays, weights: np.ndarray) -> np.ndarray:
    tp, fp, _, _ = _counts(arrays, weights)
    return divide(tp, tp + fp, 0.0)


def _recall(arrays: Arrays, weights: np.ndarray) -> np.ndarray:
    tp, _, _, fn = _counts(arrays, weights)
    return divide(tp, tp + fn, 0.0)


def _f1(arrays: Arrays, weights: np.ndarray) -> np.ndarray:
    precision, recall = _precision(arrays, weights), _recall(arrays, weights)
    return divide(2 * precision * recall, precision + recall, 0.0)


def _yes_ratio(arrays: Arrays, weights: np.ndarray) -> np.ndarray:
    tp, fp, _, _ = _counts(arrays, weights)
    return divide(tp + fp, weights @ arrays["counted"], 0.0)


METRICS = tuple(MetricSpec(name, _record_confusion, aggregate, share) for name, aggregate, share in (
    ("accuracy", _accuracy, share_of(("tp", "tn"), "counted")), ("precision", _precision, share_of("tp", ("tp", "fp"))),
    ("recall", _recall, share_of("tp", ("tp", "fn"))), ("f1", _f1, None), ("yes_ratio", _yes_ratio, share_of(("tp", "fp"), "counted"))))
METRIC_NAMES = names(METRICS)  # the rates `metrics` gives, in table order


def metrics(labels: list[str], predictions: list[str]) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (positive class yes) and yes-ratio as fractions, with counts.

    A prediction that is neither yes nor no counts as wrong and as not-yes; NO_ANSWER is left out and counted."""
    arrays = confusion(labels, predictions)
    n = int(arrays["counted"].sum())
    counts = {k: int(arrays[k].sum()) for k in ("tp", "fp", "tn", "fn")}
    unknown = sum(1 for p in predictions if p not in ("yes", "no", NO_ANSWER))
    return {**values(METRICS, arrays), "n": n, **counts, "unknown": unknown, "no_answer": len(labels) - n}


def score_answers(questions_path: str | Path, answers_path: str | Path, parser: str = "pope", language: str = "en") -> dict[str, Any]:
    """Metrics of an answers file against a questions file, POPE's way by default, after the alignment check."""
    from .formats import paired_inputs

    parse = get_parser(parser)
    if language not in LANGUAGES:
        raise InputError(f"unknown language {language!r}; choose one of {', '.join(LANGUAGES)}")
    pairs, verdict = paired_inputs(questions_path, answers_path)
    result = metrics([q["label"] for q, _ in pairs], [parse(a["answer"], language) for _, a in pairs])
    return {**result, "parser": parser, "language": language, "alignment": verdict}
