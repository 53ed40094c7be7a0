"""POPE files as other projects publish them, read into one shape and paired with their labels only after checking.

Question files (with labels): POPE's own JSON Lines, LLaVA's `llava_pope_test.jsonl` (no labels: they come from a
folder of `coco_pope_<setting>.json`, paired by position within each setting as LLaVA's eval_pope.py does) and the
hub's parquet copy. Answer files: POPE's and LLaVA's answer lines, an annotaudit run folder, lmms-eval's per-sample
logs and VLMEvalKit's prediction sheets; the last two carry their own labels.

Every pairing, by id or by position, compares each field both sides carry (setting, image, the object asked about,
the label) and refuses a disagreement, naming the first mismatched row of both files and the count.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import embedded_image, image_cache, parquet_columns, read_parquet_records, read_records, read_sheet_records
from annotaudit.core.vocab import SETTINGS

from .protocol import answer_lines, parse_question, read_questions

ANSWER_FORMATS = ("auto", "pope", "llava", "records", "lmms-eval", "vlmevalkit")
QUESTION_FORMATS_TRIED = "POPE question lines (question_id, image, text, label), LLaVA's llava_pope_test.jsonl (question_id, image, text, category) with --labels, hub parquet (question_id, question, answer, image, category)"
ANSWER_FORMATS_TRIED = ("POPE/LLaVA answer lines (question_id or line order; answer or text), an annotaudit run folder or records.jsonl, "
                        "lmms-eval samples (doc, target, resps/filtered_resps), VLMEvalKit sheets .xlsx/.tsv (index, question, answer, category, prediction)")
COMPARED = ("setting", "image", "object", "label")


# Small normalisers ----------------------------------------------------------------------------

_TRAILING_ID = re.compile(r"(\d+)(?:\.\w+)?$")


def image_key(value: Any) -> str | None:
    """What identifies an image across formats: the number at the end of its name (COCO ids), else its file name."""
    if isinstance(value, dict):
        value = value.get("path")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    name = Path(str(value).strip().replace("\\", "/")).name
    if not name:
        return None
    m = _TRAILING_ID.search(name)
    return str(int(m.group(1))) if m else name.lower()


def question_object(text: Any) -> str | None:
    """The (English) object a POPE question asks about, in any template or language and wherever it sits in a
    prompt (a chat wrapper, an answer-format suffix); None when the text holds no POPE question."""
    if not isinstance(text, str) or not text.strip():
        return None
    candidates = [text.strip()] + [line.strip() for line in text.splitlines()]
    candidates += [part.strip() + "?" for line in text.splitlines() for part in line.split("?")[:-1]]
    for cand in candidates:
        for start in _starts(cand):
            parsed = parse_question(cand[start:])
            if parsed is not None:
                return parsed[1].strip().lower()
    for cand in candidates:
        loose = _LOOSE.search(cand)
        if loose:
            return loose.group("obj").strip().lower()
    return None


# The standard English question with a misspelt last word, as published files have it ('in the imange?').
_LOOSE = re.compile(r"\bis there\s+(?:an?\s+|the\s+)?(?P<obj>[^?]+?)\s+in the \w+\s*\?", re.IGNORECASE)


def _starts(text: str) -> list[int]:
    """Where a question may start in a line: its beginning, and after each ':' or '>' or sentence end (chat prompts)."""
    return [0] + [m.end() for m in re.finditer(r"[:>.!]\s*", text)]


def _norm_text(text: Any) -> str | None:
    """A question's first line, spaces and case evened out: answer-format lines appended after it do not count."""
    if not isinstance(text, str) or not text.strip():
        return None
    return " ".join(text.strip().splitlines()[0].split()).lower()


def question_key(image: Any, text: Any) -> tuple[str | None, str | None]:
    """What a question is, across files whose ids and order differ: its image and the object it asks about
    (its first line, evened out, where it is in no POPE template)."""
    return image_key(image), question_object(text) or _norm_text(text)


def setting_of(name: Any) -> str:
    """The POPE setting a file name or category names ('coco_pope_random', 'q_random' -> 'random'); other names as they are."""
    text = str(name or "")
    for s in SETTINGS:
        if text == s or text.endswith("_" + s):
            return s
    return text


def _label(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    return text if text in ("yes", "no") else None


def _flatten_text(value: Any) -> str | None:
    """The first text of lmms-eval's nested response lists ([["Yes"]] or ["Yes"])."""
    while isinstance(value, list | tuple):
        if not value:
            return None
        value = value[0]
    return None if value is None else str(value)


# Questions ------------------------------------------------------------------------------------

def question_row(qid: Any, image: Any, text: Any, label: Any, setting: str | None, path: Path, line: int) -> dict[str, Any]:
    return {"question_id": qid, "image": image, "text": text, "label": label, "setting": setting, "_path": path, "_line": line}


def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".parquet"


def carries_labels(path: str | Path) -> bool:
    """Whether a question file holds its own labels (all formats but LLaVA's llava_pope_test.jsonl)."""
    path = Path(path)
    if path.is_dir() or is_parquet(path):
        return True
    records = read_records(path)
    first = records[0][1] if records else {}
    return not ("label" not in first and "category" in first and "question_id" in first)


def load_questions(path: str | Path, labels: Any = None) -> list[dict[str, Any]]:
    """Labelled questions from any question format, each with its setting, file and line.

    A POPE file's setting is the one its name ends in (coco_pope_random: random), else its stem; LLaVA's and the
    hub's carry a category. `labels` (a labels.LabelSet, or a folder) labels LLaVA's question file.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("expected a question file, not a folder (a folder of coco_pope_*.json goes to --labels)", path=path)
    if is_parquet(path):
        rows = parquet_questions(path)
    else:
        records = read_records(path)
        if not records:
            raise InputError(f"no questions read; formats tried: {QUESTION_FORMATS_TRIED}", path=path)
        first = records[0][1]
        if "label" not in first and "category" in first and "question_id" in first:
            if labels is None:
                raise InputError("LLaVA-style questions (question_id, image, text, category) carry no labels: "
                                 "pass --labels FOLDER holding coco_pope_{adversarial,popular,random}.json", path=path)
            return llava_questions(path, records, labels)
        if "label" not in first and "question" in first and "answer" in first:
            rows = [_hub_question(rec, path, n) for n, rec in records]
        else:
            rows = [question_row(q["question_id"], q["image"], q["text"], q["label"], setting_of(path.stem), path, q["_line"]) for q in read_questions(path)]
    if labels is not None:
        raise InputError("this question file carries its own labels; --labels is only for LLaVA's llava_pope_test.jsonl", path=path)
    if not rows:
        raise InputError(f"no questions read; formats tried: {QUESTION_FORMATS_TRIED}", path=path)
    return rows


def _hub_question(rec: dict[str, Any], path: Path, n: int) -> dict[str, Any]:
    """A row of the hub's POPE (lmms-lab/POPE): question_id, question, answer, image_source or image, category."""
    for field in ("question", "answer"):
        if field not in rec:
            raise InputError(f"missing field {field!r}", path=path, line=n)
    label = _label(rec["answer"])
    if label is None:
        raise InputError(f"answer must be 'yes' or 'no', not {rec['answer']!r}", path=path, line=n)
    image = rec.get("image_source") or rec.get("image_path") or rec.get("image")
    qid = rec.get("question_id", rec.get("id", n))
    return question_row(qid, image, rec["question"], label, setting_of(rec.get("category") or path.stem), path, n)


def parquet_questions(path: Path) -> list[dict[str, Any]]:
    """The hub's POPE parquet, images left out: they are read only where a model needs them (`parquet_images`)."""
    rows = read_parquet_records(path, skip=("image",))
    if "image" in parquet_columns(path) and not any(r.get("image_source") for _, r in rows[:1]):
        paths = read_parquet_records(path, columns=["image"])
        rows = [(n, {**r, "image": (img.get("image") or {}).get("path") if isinstance(img.get("image"), dict) else None})
                for (n, r), (_, img) in zip(rows, paths)]
    return [_hub_question(rec, path, n) for n, rec in rows]


def parquet_images(path: str | Path, folder: str | Path) -> dict[int, str]:
    """Write each embedded image of a POPE parquet once into `folder`; row number -> file name there.

    The file name is the row's image_source (COCO_val2014_...jpg) or the embedded path, so the same image
    shared by many questions is written once.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[int, str] = {}
    for n, rec in read_parquet_records(path, columns=["image", "image_source"]):
        image = rec.get("image")
        name = Path(str(rec.get("image_source") or (image.get("path") if isinstance(image, dict) else None) or f"row{n}"))
        target = embedded_image(image, folder, name.stem, name.suffix or ".jpg")
        if target is None:
            raise InputError("no embedded image bytes in column 'image'", path=path, item=f"row {n}")
        out[n] = target.name
    return out


def parquet_question_sets(path: str | Path, setting: str | None, images: str | Path | None) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Path], Path]:
    """The hub's POPE parquet for `audit pope run`: its questions by category (one category, or all with
    'all'), the parquet as each setting's file, and the folder its embedded images were written to
    (`images`, or a cache folder kept for resuming)."""
    path = Path(path)
    rows = parquet_questions(path)
    folder = Path(images) if images else image_cache(path)
    names = parquet_images(path, folder)
    sets: dict[str, list[dict[str, Any]]] = {}
    for q in rows:
        if setting in (None, "", "all") or q["setting"] == setting:
            sets.setdefault(q["setting"], []).append({**q, "image": names[q["_line"]]})
    if not sets:
        found = sorted({q["setting"] for q in rows})
        raise InputError(f"no questions of setting {setting!r}; the file has {', '.join(found) or 'none'}", path=path)
    for qs in sets.values():
        seen: set[Any] = set()
        for q in qs:
            if q["question_id"] in seen:
                raise InputError(f"question_id {q['question_id']!r} appears twice in setting {q['setting']!r}", path=path, line=q["_line"])
            seen.add(q["question_id"])
    return sets, {s: path for s in sets}, folder


def _llava_setting_rows(records: list[tuple[int, dict[str, Any]]], path: Path) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    by_setting: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    seen: dict[str, int] = {}
    for n, rec in records:
        for field in ("question_id", "image", "text", "category"):
            if field not in rec:
                raise InputError(f"missing field {field!r}", path=path, line=n)
        qid = str(rec["question_id"])
        if qid in seen:
            raise InputError(f"question_id {rec['question_id']!r} appears twice (first on line {seen[qid]})", path=path, line=n)
        seen[qid] = n
        by_setting.setdefault(str(rec["category"]), []).append((n, rec))
    return by_setting


def llava_questions(path: Path, records: list[tuple[int, dict[str, Any]]], labels: Any) -> list[dict[str, Any]]:
    """LLaVA's layout: each category's questions, in file order, take the labels of coco_pope_<category>.json line by line."""
    from .labels import LabelSet, read_label_sets

    labels = labels if isinstance(labels, LabelSet) else read_label_sets([labels])[0]
    rows: list[dict[str, Any]] = []
    by_setting = _llava_setting_rows(records, path)
    for setting, items in by_setting.items():
        found = labels.for_setting(setting, list(by_setting))
        if found is None:
            have = ", ".join(sorted(p.name for p in labels.files.values())) or "none"
            raise InputError(f"no label file for category {setting!r}: expected coco_pope_{setting}.json (found: {have})", path=path)
        label_file = found[1]
        truth = [question_row(q["question_id"], q["image"], q["text"], q["label"], setting, label_file, q["_line"]) for q in found[0]]
        asked = [question_row(rec["question_id"], rec["image"], rec["text"], None, setting, path, n) for n, rec in items]
        check_alignment(list(zip(asked, truth)), f"the {setting} questions", extra=_count_note(asked, truth, path, label_file, setting))
        rows += [{**q, "label": t["label"], "label_line": t["_line"], "label_file": str(label_file)} for q, t in zip(asked, truth)]
    return rows


def _count_note(asked: list, truth: list, path: Path, label_file: Path, setting: str) -> str | None:
    if len(asked) == len(truth):
        return None
    return f"{path.name} has {len(asked)} {setting} questions and {label_file.name} has {len(truth)} lines"


# Answers --------------------------------------------------------------------------------------

def answer_row(answer: Any, path: Path, line: int, *, qid: Any = None, image: Any = None, question: Any = None,
               label: Any = None, setting: str | None = None, fmt: str) -> dict[str, Any]:
    return {"answer": "" if answer is None else str(answer), "question_id": qid, "image": image, "text": question,
            "label": _label(label), "setting": setting, "_path": path, "_line": line, "format": fmt}


def load_answers(path: str | Path, fmt: str = "auto") -> list[dict[str, Any]]:
    """Answer rows from any answer format; a format that yields nothing is an error naming the formats tried."""
    if fmt not in ANSWER_FORMATS:
        raise InputError(f"unknown answers format {fmt!r}; choose one of {', '.join(ANSWER_FORMATS)}")
    path = Path(path)
    if path.is_dir():
        path = path / "records.jsonl"
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xls") or (suffix in (".tsv", ".csv") and fmt in ("auto", "vlmevalkit")):
        rows = read_sheet_records(path) if suffix in (".xlsx", ".xls") else read_records(path)
        out = vlmevalkit_answers(rows, path) if rows and "prediction" in rows[0][1] else []
        if not out:
            raise InputError(f"no answers read (a VLMEvalKit sheet needs columns index, answer, category and prediction); formats tried: {ANSWER_FORMATS_TRIED}", path=path)
        return out
    records = read_records(path)
    records = _unwrap_logs(records)
    if not records:
        raise InputError(f"no answers read; formats tried: {ANSWER_FORMATS_TRIED}", path=path)
    first = records[0][1]
    kind = fmt if fmt != "auto" else _detect(first)
    reader = {"records": run_answers, "lmms-eval": lmms_eval_answers, "pope": pope_answers, "llava": pope_answers}[kind]
    return reader(records, path)


def _detect(rec: dict[str, Any]) -> str:
    if all(k in rec for k in ("id", "input", "target", "prediction", "raw", "meta")):
        return "records"
    if "doc" in rec and ("resps" in rec or "filtered_resps" in rec):
        return "lmms-eval"
    return "pope"


def _unwrap_logs(records: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """lmms-eval's older per-task JSON ({"args": ..., "logs": [samples]}) as its samples."""
    if len(records) == 1 and isinstance(records[0][1].get("logs"), list):
        return [(k, rec) for k, rec in enumerate(records[0][1]["logs"], 1) if isinstance(rec, dict)]
    return records


def pope_answers(records: list[tuple[int, dict[str, Any]]], path: Path) -> list[dict[str, Any]]:
    """POPE's answer lines ({question, answer}, by line order) and LLaVA's ({question_id, prompt, text, ...})."""
    out = []
    for rec in answer_lines(records, path):
        question = rec.get("prompt", rec.get("question"))
        out.append(answer_row(rec["_answer"], path, rec["_line"], qid=rec.get("question_id"), image=rec.get("image"), question=question,
                              label=rec.get("label"), setting=rec.get("category") if rec.get("category") in SETTINGS else None, fmt="pope"))
    return out


def run_answers(records: list[tuple[int, dict[str, Any]]], path: Path) -> list[dict[str, Any]]:
    """The records of an `audit pope run` (or score) folder: the raw answer, the question and its setting."""
    out = []
    for n, rec in records:
        meta, given = rec.get("meta") or {}, rec.get("input") or {}
        if not isinstance(rec.get("raw"), str):
            raise InputError("record without an answer text ('raw')", path=path, line=n)
        out.append(answer_row(rec["raw"], path, n, qid=meta.get("question_id", rec.get("id")), image=given.get("image"),
                              question=given.get("prompt"), label=rec.get("target"), setting=None, fmt="records"))
    return out


def lmms_eval_answers(records: list[tuple[int, dict[str, Any]]], path: Path) -> list[dict[str, Any]]:
    """lmms-eval's --log_samples lines of its pope tasks: doc (question_id, question, answer, image_source, category),
    target, resps / filtered_resps; the answer is the filtered response, the label doc.answer or target."""
    out = []
    for n, rec in records:
        doc = rec.get("doc") if isinstance(rec.get("doc"), dict) else {}
        text = _flatten_text(rec.get("filtered_resps")) if rec.get("filtered_resps") is not None else _flatten_text(rec.get("resps"))
        if text is None:
            raise InputError("an lmms-eval sample without a response (resps / filtered_resps)", path=path, line=n)
        scored = next((v for k, v in rec.items() if k.startswith("pope_") and isinstance(v, dict)), {})
        qid = doc.get("question_id", scored.get("question_id", rec.get("doc_id")))
        label = doc.get("answer", rec.get("target", scored.get("ground_truth")))
        category = doc.get("category")
        out.append(answer_row(text, path, n, qid=qid, image=doc.get("image_source") or doc.get("image_path"), question=doc.get("question"),
                              label=label, setting=str(category) if category else None, fmt="lmms-eval"))
    return out


def vlmevalkit_answers(rows: list[tuple[int, dict[str, Any]]], path: Path) -> list[dict[str, Any]]:
    """VLMEvalKit's POPE sheet: index, question, answer (Yes/No), category (one or several, comma-joined), prediction.

    A question in several settings is one row with category 'popular,random'; it counts in each, as VLMEvalKit counts it.
    """
    out = []
    for n, rec in rows:
        for field in ("answer", "prediction"):
            if field not in rec:
                raise InputError(f"missing column {field!r}", path=path, line=n)
        settings = [c.strip() for c in str(rec.get("category") or "").split(",") if c.strip()] or [None]
        for setting in settings:
            out.append(answer_row(rec["prediction"], path, n, qid=rec.get("index", n), image=rec.get("image_path"),
                                  question=rec.get("question"), label=rec["answer"], setting=setting, fmt="vlmevalkit"))
    return out


# Pairing --------------------------------------------------------------------------------------

def questions_from_answers(answers: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """The questions of a self-contained answers file (lmms-eval, VLMEvalKit, run records): its own labels."""
    missing = [a for a in answers if a["label"] is None]
    if missing:
        raise InputError("these answers carry no labels: give the question file too (--questions)", path=path, line=missing[0]["_line"])
    return [question_row(a["question_id"], a["image"], a["text"], a["label"], setting_of(a["setting"] or path.stem), path, a["_line"]) for a in answers]


def pair(questions: list[dict[str, Any]], answers: list[dict[str, Any]], answers_path: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(question, answer) by question_id (with the setting where ids repeat across settings), else by line order."""
    if not all(a["question_id"] is not None for a in answers):
        if len(answers) != len(questions):
            check_alignment(list(zip(answers, questions)), "answers and questions")
            raise InputError(f"{len(answers)} answers for {len(questions)} questions; without question_id they pair by line order", path=answers_path)
        return list(zip(questions, answers))
    by_setting = len({q["setting"] for q in questions}) > 1 and len({str(q["question_id"]) for q in questions}) < len(questions)
    if by_setting and not all(a["setting"] for a in answers):
        raise InputError("question ids repeat across settings and the answers name no setting (category)", path=answers_path)
    key = (lambda r: (r["setting"], str(r["question_id"]))) if by_setting else (lambda r: str(r["question_id"]))
    known: dict[Any, dict[str, Any]] = {}
    for q in questions:
        if key(q) in known:
            raise InputError(f"question_id {q['question_id']!r} appears twice (first on line {known[key(q)]['_line']})", path=q["_path"], line=q["_line"])
        known[key(q)] = q
    given: dict[Any, dict[str, Any]] = {}
    for a in answers:
        k = key(a)
        if k in given:
            raise InputError(f"question_id {a['question_id']!r} is answered twice (first on line {given[k]['_line']})", path=answers_path, line=a["_line"])
        given[k] = a
    unknown = [a for k, a in given.items() if k not in known]
    if unknown:
        check_alignment([(a, known[k]) for k, a in given.items() if k in known], "answers and questions")
        raise InputError(f"question_id {unknown[0]['question_id']!r} is not in the questions file", path=answers_path, line=unknown[0]["_line"])
    pairs = [(q, given[key(q)]) for q in questions if key(q) in given]
    check_alignment([(a, q) for q, a in pairs], "answers and questions")  # a wrong label file shows first as disagreeing pairs, not as gaps
    missing = [q for q in questions if key(q) not in given]
    if missing:
        raise InputError(f"{len(missing)} questions have no answer (first: question_id {missing[0]['question_id']!r})", path=answers_path)
    return pairs


def _fields(row: dict[str, Any]) -> dict[str, str | None]:
    return {"setting": row.get("setting") if row.get("setting") in SETTINGS else None, "image": image_key(row.get("image")),
            "object": question_object(row.get("text")), "text": _norm_text(row.get("text")), "label": _label(row.get("label"))}


def _compare(a: dict[str, str | None], b: dict[str, str | None], name: str) -> tuple[Any, Any] | None:
    """The two values of one field where both sides carry it; a question's text counts through its object, or
    verbatim where neither side is a POPE template (one side in a template the other not: not comparable)."""
    if name == "object":
        if a["object"] is None and b["object"] is None:
            return (a["text"], b["text"]) if a["text"] is not None and b["text"] is not None else None
        return (a["object"], b["object"]) if a["object"] is not None and b["object"] is not None else None
    return (a[name], b[name]) if a[name] is not None and b[name] is not None else None


def _where(row: dict[str, Any]) -> str:
    return f"{row['_path']}:{row['_line']}"


def check_alignment(pairs: list[tuple[dict[str, Any], dict[str, Any]]], what: str, extra: str | None = None) -> dict[str, Any]:
    """Compare every field both sides of each pair carry; refuse any disagreement; say what was compared.

    Returns {"verified": bool, "fields": [...], "pairs": n, "message": ...}.
    """
    compared: set[str] = set()
    bad: list[tuple[dict, dict, str, Any, Any]] = []
    for left, right in pairs:
        a, b = _fields(left), _fields(right)
        for name in COMPARED:
            values = _compare(a, b, name)
            if values is None:
                continue
            compared.add(name)
            if values[0] != values[1]:
                bad.append((left, right, name, *values))
                break
    if bad or extra:
        if not bad:
            raise InputError(f"{what} do not align: {extra}")
        left, right, name, x, y = bad[0]
        raise InputError(
            f"{what} do not align: {len(bad):,} of {len(pairs):,} pairs disagree; first: {_where(left)} ({name} {_shown(name, x)}) "
            f"against {_where(right)} ({name} {_shown(name, y)})" + (f"; {extra}" if extra else "")
            + ". Check that the label file is the version the answers were made for.")
    fields = [f for f in COMPARED if f in compared]
    if not fields:
        return {"verified": False, "fields": [], "pairs": len(pairs),
                "message": f"alignment unverified: {what} share no field to compare (image, question, label), so they were paired on trust"}
    return {"verified": True, "fields": fields, "pairs": len(pairs), "message": f"alignment verified: {what} agree on {', '.join(fields)} in all {len(pairs):,} pairs"}


def _shown(name: str, value: Any) -> str:
    if name == "image" and isinstance(value, str) and value.isdigit():
        return f"id {value}"
    return repr(value)


def paired_inputs(questions: str | Path | None, answers: str | Path, labels: Any = None,
                  answers_format: str = "auto") -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], dict[str, Any]]:
    """(question, answer) pairs from any mix of formats, with the alignment check's verdict."""
    answers = Path(answers)
    rows = load_answers(answers, answers_format)
    source = answers / "records.jsonl" if answers.is_dir() else answers
    if questions is None:
        if labels is not None:
            raise InputError("--labels goes with --questions (LLaVA's llava_pope_test.jsonl)")
        qs = questions_from_answers(rows, source)
        return list(zip(qs, rows)), {"verified": True, "fields": ["label"], "pairs": len(rows),
                                     "message": f"labels read from the answers file itself ({rows[0]['format']}): {len(rows):,} answers"}
    qs = load_questions(questions, labels)
    pairs = pair(qs, rows, source)
    verdict = check_alignment([(a, q) for q, a in pairs], "answers and questions")
    if labels is not None:
        verdict["labels"] = "paired by position within each setting, checked on image and object"
    return pairs, verdict
