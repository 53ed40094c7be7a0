"""VQA evaluation under the four Italian formattings: greedy answers, exact and approximate match.

Local copies of GQA-IT, MTVQA-IT and EXAMS-V-IT are read in the layouts they are published in
(see docs/lvlm.md); any other set can be given as a JSON/JSONL file of {id, image, question, answer}.
"""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path
from typing import Any

from PIL import Image

from annotaudit.core.errors import InputError
from annotaudit.core.io import iter_jsonl, safe_path
from annotaudit.core.report import Report
from annotaudit.core.runs import RunDir, progress

from .formatting import approx_match, exact_match, format_prompt, parse_formattings

TASKS = ("gqa-it", "mtvqa-it", "exams-v-it")
EXAMS_PROMPT = "Fornisci una risposta alla domanda presente nell'immagine."
ALIASES = {
    "id": ("id", "question_id", "qid", "sample_id", "questionId"),
    "image": ("image", "imageId", "image_id", "image_path", "file_name", "img"),
    "question": ("question", "domanda", "text"),
    "answer": ("answer", "answers", "label", "answer_key", "risposta", "fullAnswer"),
}
OUTPUTS = ["predictions.jsonl", "scores.json", "report.md", "report.html", "report_files"]


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """JSON list, GQA-style JSON dict {question id: fields}, JSONL, Parquet or CSV."""
    if not path.is_file():
        raise FileNotFoundError(f"task file not found: {path}")
    if path.suffix in (".parquet", ".csv"):
        import pandas as pd

        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        return frame.to_dict(orient="records")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [rec for _, rec in iter_jsonl(path)]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    if isinstance(data, dict):
        data = data.get("data", data.get("questions", data))
    if isinstance(data, dict):  # GQA: {"20968078": {"imageId": ..., "question": ..., "answer": ...}}
        return [{"id": k, **v} for k, v in data.items()]
    return list(data)


def _field(row: dict[str, Any], name: str) -> Any:
    for key in ALIASES[name]:
        if row.get(key) is not None:
            return row[key]
    return None


def _expand_qa_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MTVQA keeps several question-answer pairs per image: one item each."""
    out = []
    for n, row in enumerate(rows):
        pairs = row.get("qa_pairs") or row.get("qas")
        if not pairs:
            out.append(row)
            continue
        base = _field(row, "id") or _field(row, "image") or n
        for k, qa in enumerate(pairs):
            out.append({**{key: v for key, v in row.items() if key not in ("qa_pairs", "qas")}, **qa, "id": f"{base}-{k}"})
    return out


def load_task(task: str, data: str | Path | None = None) -> list[dict[str, Any]]:
    """Items {id, image, question, answer, closed} of a named task (its local file in `data`) or a file."""
    name = task.lower()
    if name in TASKS:
        if data is None:
            raise InputError(f"--task {task} reads a local copy: give its file with --data (see docs/lvlm.md)")
        path = Path(data)
    else:
        path, name = Path(task), "file"
    rows = _expand_qa_pairs(_read_rows(path))
    if name == "exams-v-it":
        rows = [r for r in rows if str(r.get("language", "italian")).lower() in ("italian", "it", "ita")]
    items, seen = [], set()
    for n, row in enumerate(rows):
        item = _item(row, n, name, path)
        if item["id"] in seen:
            raise InputError("duplicate id", path=path, item=item["id"])
        seen.add(item["id"])
        items.append(item)
    if not items:
        raise InputError("no questions found", path=path)
    return items


def _item(row: dict[str, Any], n: int, task: str, path: Path) -> dict[str, Any]:
    sid = str(_field(row, "id") if _field(row, "id") is not None else n)
    image, question, answer = _field(row, "image"), _field(row, "question"), _field(row, "answer")
    if task == "exams-v-it":
        question = EXAMS_PROMPT
    closed = task == "exams-v-it" or bool(row.get("options") or row.get("choices")) or row.get("type") == "closed"
    for what, value in (("image", image), ("question", question), ("answer", answer)):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InputError(f"missing {what} (fields tried: {', '.join(ALIASES[what])})", path=path, item=sid)
    if isinstance(answer, list) and answer and isinstance(answer[0], dict):
        answer = [a.get("answer", "") for a in answer]
    if task == "gqa-it" and isinstance(image, str) and not Path(image).suffix:
        image += ".jpg"
    return {"id": sid, "image": image, "question": str(question), "answer": answer if isinstance(answer, list) else str(answer), "closed": closed}


def _open_image(image: Any, images_dir: str | Path | None, sid: str) -> Any:
    """A path under images_dir (extension guessed if missing), or embedded bytes (HF Parquet)."""
    if isinstance(image, dict) and image.get("bytes") is not None:
        return Image.open(io.BytesIO(image["bytes"])).convert("RGB")
    if isinstance(image, dict):
        image = image.get("path")
    path = safe_path(images_dir or ".", str(image))
    if not path.is_file():
        for ext in (".jpg", ".png", ".jpeg"):
            if path.with_suffix(ext).is_file():
                return str(path.with_suffix(ext))
        raise InputError(f"image not found: {path}", item=sid)
    return str(path)


def summarize(records: list[dict[str, Any]], formattings: list[str]) -> dict[str, Any]:
    """Per formatting exact and approximate accuracy; mean and std of exact; the worst one rescored."""
    per: dict[str, dict[str, float]] = {}
    for f in formattings:
        rows = [r for r in records if r["formatting"] == f]
        if rows:
            per[f] = {"n": len(rows), "exact": sum(r["exact"] for r in rows) / len(rows), "approx": sum(r["approx"] for r in rows) / len(rows)}
    exact = [v["exact"] for v in per.values()]
    worst = min(per, key=lambda f: per[f]["exact"]) if per else None
    return {
        "formattings": per,
        "mean_exact": statistics.fmean(exact) if exact else float("nan"),
        "std_exact": statistics.pstdev(exact) if exact else float("nan"),
        "worst": worst,
        "worst_exact": per[worst]["exact"] if worst else float("nan"),
        "worst_approx": per[worst]["approx"] if worst else float("nan"),
    }


def evaluate(model: str | Path, task: str, images_dir: str | Path | None, out: str | Path, formatting: str = "all",
             data: str | Path | None = None, batch_size: int = 8, max_new_tokens: int = 16, limit: int | None = None,
             force: bool = False, device: str | None = None) -> dict[str, Any]:
    """Answer every question under each formatting (resumable), score, and write scores.json and a report."""
    from annotaudit.models import GenerationConfig, Request, load_model

    try:
        formattings = parse_formattings(formatting)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    items = load_task(task, data)[:limit]
    config = {"model": str(model), "task": task, "data": str(data) if data else None, "images": str(images_dir) if images_dir else None,
              "formattings": formattings, "max_new_tokens": max_new_tokens, "limit": limit, "decoding": "greedy"}
    run = RunDir(out, config, force=force, outputs=OUTPUTS)
    log = run.log("predictions.jsonl", key="key")
    done = log.done_keys()
    todo = [(item, f) for item in items for f in formattings if f"{f}:{item['id']}" not in done]
    if todo:
        lm = load_model(str(model), device=device)
        if not lm.accepts_images:
            raise InputError(f"model {model} does not take images")
        gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False)
        with progress(f"answering ({len(formattings)} formattings)", len(todo)) as advance:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                opened: dict[str, Any] = {}
                requests = []
                for item, f in batch:
                    if item["id"] not in opened:
                        opened[item["id"]] = _open_image(item["image"], images_dir, item["id"])
                    requests.append(Request(format_prompt(item["question"], f, item["closed"]), opened[item["id"]]))
                outs = lm.generate(requests, gen)
                log.append([_record(item, f, req.prompt, o.text) for (item, f), req, o in zip(batch, requests, outs)])
                advance(len(batch))
    wanted = {f"{f}:{item['id']}" for item in items for f in formattings}
    records = [r for r in log.read() if r["key"] in wanted]
    scores = {**summarize(records, formattings), "task": task, "model": str(model), "n_questions": len(items)}
    run.write_json("scores.json", scores)
    _report(scores, records, task, model).write(out)
    run.finish(n_predictions=len(records))
    return scores


def _record(item: dict[str, Any], f: str, prompt: str, output: str) -> dict[str, Any]:
    return {"key": f"{f}:{item['id']}", "id": item["id"], "formatting": f, "prompt": prompt, "output": output,
            "answer": item["answer"], "exact": exact_match(output, item["answer"]), "approx": approx_match(output, item["answer"])}


def _report(scores: dict[str, Any], records: list[dict[str, Any]], task: str, model: Any) -> Report:
    rep = Report(f"LVLM evaluation: {task}")
    rep.text(f"Model `{model}`, {scores['n_questions']} questions, greedy decoding. Exact match lowercases and ignores "
             "whitespace; approximate match counts the label anywhere in the output.")
    rep.heading("Accuracy per formatting")
    rep.table([{"formatting": f, "n": v["n"], "exact": v["exact"], "approx": v["approx"]} for f, v in scores["formattings"].items()])
    rep.heading("Sensitivity to the formatting (Tables 3 and 4 of the paper)")
    rep.table([{"mean exact": scores["mean_exact"], "std exact": scores["std_exact"], "worst formatting": scores["worst"],
                "worst exact": scores["worst_exact"], "worst rescored (approx)": scores["worst_approx"]}])
    rep.bar_chart({f: {"exact": v["exact"], "approx": v["approx"]} for f, v in scores["formattings"].items()}, "Accuracy by formatting")
    rep.heading("Sample outputs")
    rep.table([{k: r[k] for k in ("id", "formatting", "prompt", "output", "answer", "exact")} for r in records[:20]])
    return rep
