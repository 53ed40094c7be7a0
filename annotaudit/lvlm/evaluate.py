"""VQA evaluation under the four Italian formattings: greedy answers, exact and approximate match.

Local copies of GQA-IT, MTVQA-IT and EXAMS-V-IT are read in the layouts they are published in
(see docs/lvlm.md); any other set can be given as a JSON/JSONL/CSV file of {id, image, question, answer}.
The run folder follows the runner's layout (run.json, records.jsonl, metrics.json, report), so a
finished evaluation can be scored again without the model (`rescore_eval`).
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from annotaudit.core.errors import InputError, require_minimum
from annotaudit.core.io import read_parquet_records, read_records, safe_path
from annotaudit.core.metrics import Arrays, MetricSpec, flags, item_arrays, ratio, share_of, values
from annotaudit.core.report import Report
from annotaudit.core.runner import Sample, make_record, rescore_run, run_config, run_samples

from .formatting import approx_match, exact_match, format_prompt, parse_formattings

TASKS = ("gqa-it", "mtvqa-it", "exams-v-it")
EXAMS_PROMPT = "Fornisci una risposta alla domanda presente nell'immagine."
ALIASES = {
    "id": ("id", "question_id", "qid", "sample_id", "questionId"),
    "image": ("image", "imageId", "image_id", "image_path", "file_name", "img"),
    "question": ("question", "domanda", "text"),
    "answer": ("answer", "answers", "label", "answer_key", "risposta", "fullAnswer"),
}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """JSON list, GQA-style JSON object {question id: fields}, JSONL, CSV/TSV or Parquet."""
    if path.suffix == ".parquet":
        return [rec for _, rec in read_parquet_records(path)]
    rows = [rec for _, rec in read_records(path)]
    if len(rows) == 1 and isinstance(rows[0].get("data", rows[0].get("questions")), list | dict):
        rows = [rows[0].get("data", rows[0].get("questions"))]
    if len(rows) == 1 and isinstance(rows[0], list):
        rows = rows[0]
        bad = next((k for k, r in enumerate(rows, 1) if not isinstance(r, dict)), None)
        if bad is not None:
            raise InputError("expected a JSON object", path=path, item=str(bad))
    elif len(rows) == 1 and rows[0] and all(isinstance(v, dict) for v in rows[0].values()):
        rows = [{"id": k, **v} for k, v in rows[0].items()]  # GQA: {"20968078": {"imageId": ..., "question": ..., "answer": ...}}
    return rows


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


def task_file(task: str, data: str | Path | None = None) -> Path:
    """The question file: `data` for a named task, else the task itself."""
    if task.lower() in TASKS:
        if data is None:
            raise InputError(f"--task {task} reads a local copy: give its file with --data (see docs/lvlm.md)")
        return Path(data)
    return Path(task)


def load_task(task: str, data: str | Path | None = None) -> list[dict[str, Any]]:
    """Items {id, image, question, answer, closed} of a named task (its local file in `data`) or a file."""
    path = task_file(task, data)
    name = task.lower() if task.lower() in TASKS else "file"
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
        try:
            return Image.open(io.BytesIO(image["bytes"])).convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise InputError(f"embedded image is not readable ({exc})", item=sid) from None
    return _image_path(image, images_dir, sid)


def _image_path(image: Any, images_dir: str | Path | None, sid: str) -> str:
    """The image file inside images_dir, a guessed extension included; anything resolving outside it is refused."""
    if isinstance(image, dict):
        image = image.get("path")
    root = images_dir or "."
    try:
        path = safe_path(root, str(image))
        if path.is_file():
            return str(path)
        for ext in (".jpg", ".png", ".jpeg"):
            guess = Path(str(image)).with_suffix(ext)
            if (Path(root) / guess).is_file():
                return str(safe_path(root, guess))
    except InputError as exc:
        raise InputError(exc.message, item=sid) from None
    raise InputError(f"image not found: {path}", item=sid)


def _image_name(image: Any) -> str:
    """What a record keeps of the image: its path, never embedded bytes."""
    if isinstance(image, dict):
        return str(image.get("path") or "(embedded)")
    return str(image)


def samples(items: list[dict[str, Any]], formattings: list[str]) -> list[Sample]:
    """One sample per (question, formatting), id FORMATTING:QUESTION; a question's formattings share a batch and its image."""
    return [Sample(id=f"{f}:{item['id']}", input={"prompt": format_prompt(item["question"], f, item["closed"]), "image": _image_name(item["image"])},
                   target=item["answer"], meta={"formatting": f, "question_id": item["id"]}, group=item["id"])
            for item in items for f in formattings]


def answer_scores(answer: str, target: Any) -> dict[str, bool]:
    return {"exact": exact_match(answer, target), "approx": approx_match(answer, target)}


def answer_parts(records: list[dict[str, Any]]) -> Arrays:
    """Per answer: 1 when it matches the label exactly, and when approximately."""
    scores = [answer_scores(r["prediction"], r["target"]) for r in records]
    return {"exact": flags(s["exact"] for s in scores), "approx": flags(s["approx"] for s in scores)}


METRICS = tuple(MetricSpec(name, answer_parts, ratio(name), share_of(name)) for name in ("exact", "approx"))


def summarize_formattings(records: list[dict[str, Any]], formattings: list[str]) -> dict[str, Any]:
    """Per formatting exact and approximate accuracy; mean and std of exact; the worst one rescored."""
    per: dict[str, dict[str, float]] = {}
    for f in formattings:
        chosen = [r for r in records if r["meta"]["formatting"] == f]
        if chosen:
            per[f] = {"n": len(chosen), **values(METRICS, item_arrays(METRICS, chosen))}
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


def _metric(config: dict[str, Any]):
    def metric(records: list[dict[str, Any]]) -> dict[str, Any]:
        n_questions = len({r["meta"]["question_id"] for r in records})
        return {**summarize_formattings(records, config["formattings"]), "task": config["task"], "model": config["model"], "n_questions": n_questions}

    return metric


def _report_fn(config: dict[str, Any]):
    def report(records: list[dict[str, Any]], metrics: dict[str, Any], out: Path) -> None:
        _report(metrics, records, config["task"], config["model"]).write(out)

    return report


@dataclass
class EvalConfig:
    """What `lvlm eval` asks, checked on construction. `batch_size` counts prompts: whole questions go together."""

    model: str | Path
    task: str
    images: str | Path | None
    formatting: str = "all"
    data: str | Path | None = None
    batch_size: int = 8
    max_new_tokens: int = 16
    limit: int | None = None

    def __post_init__(self) -> None:
        self.formattings  # noqa: B018  (a bad formatting is refused here)
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be at least 1 (got {self.limit})")
        require_minimum(self, ("batch_size", "max_new_tokens"), 1)

    @property
    def formattings(self) -> list[str]:
        try:
            return parse_formattings(self.formatting)
        except ValueError as exc:
            raise InputError(str(exc)) from None


def _requests(images: dict[str, Any], images_dir: str | Path | None) -> Any:
    """Requests of the samples; a question's formattings come one after another, so its image is opened once for all of them."""
    from annotaudit.models import Request

    opened: dict[str, Any] = {}

    def request(sample: Sample) -> Request:
        qid = sample.meta["question_id"]
        if qid not in opened:
            opened.clear()
            opened[qid] = _open_image(images[qid], images_dir, qid)
        return Request(sample.input["prompt"], opened[qid])

    return request


def _answering_mode(max_new_tokens: int) -> Any:
    """Greedy answers, scored against the label as they come."""
    from annotaudit.models import GenerationConfig
    from annotaudit.models.answering import Generate

    return Generate(GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False),
                    lambda reply: make_record(reply.sample, reply.generation.text.strip(), reply.generation.text,
                                              answer_scores(reply.generation.text, reply.sample.target)))


def evaluate(cfg: EvalConfig, out: str | Path, force: bool = False, device: str | None = None, engine: Any = None) -> dict[str, Any]:
    """Answer every question under each formatting (resumable), score, and write records.jsonl, metrics.json and a report.

    `engine` (EngineOptions) says how to reach a model server; its request cache defaults to <out>/cache.
    """
    from annotaudit.models.answering import Answering

    answering = Answering.for_run(str(cfg.model), out, engine, needs_images="VQA", device=device)
    formattings, images_dir = cfg.formattings, cfg.images
    path = task_file(cfg.task, cfg.data)
    items = load_task(cfg.task, cfg.data)[: cfg.limit]
    config = {"model": str(cfg.model), "task": cfg.task, "data": str(cfg.data) if cfg.data else None, "task_file": str(path),
              "images": str(images_dir) if images_dir else None,
              "formattings": formattings, "max_new_tokens": cfg.max_new_tokens, "limit": cfg.limit, "decoding": "greedy",
              **answering.config()}
    images = {item["id"]: item["image"] for item in items}
    for sid, image in images.items():  # every path checked before any model loads
        if not (isinstance(image, dict) and image.get("bytes") is not None):
            _image_path(image, images_dir, sid)
    solver = answering.solver(_answering_mode(cfg.max_new_tokens), _requests(images, images_dir), item=lambda s: s.meta["question_id"])
    return run_samples(out, config, samples(items, formattings), solver, _metric(config), kind="vqa",
                       inputs={"task": path, "images": images_dir}, report=_report_fn(config),
                       batch_size=max(1, cfg.batch_size // len(formattings)), description=f"answering ({len(formattings)} formattings)",
                       force=force)


def rescore_eval(run_dir: str | Path) -> dict[str, Any]:
    """Score a finished `lvlm eval` folder again from its records (no model): metrics.json and the report are rewritten."""
    config = run_config(run_dir, "vqa", "annotaudit lvlm score")
    return rescore_run(run_dir, _metric(config), _report_fn(config))


def _report(scores: dict[str, Any], records: list[dict[str, Any]], task: str, model: Any) -> Report:
    rep = Report(f"LVLM evaluation: {task}")
    rep.text(f"Model `{model}`, {scores['n_questions']} questions, greedy decoding. Exact match lowercases and ignores "
             "whitespace; approximate match counts the label anywhere in the output.")
    rep.run_status(scores)
    rep.heading("Accuracy per formatting")
    rep.table([{"formatting": f, "n": v["n"], "exact": v["exact"], "approx": v["approx"]} for f, v in scores["formattings"].items()])
    rep.heading("Sensitivity to the formatting (Tables 3 and 4 of the paper)")
    rep.table([{"mean exact": scores["mean_exact"], "std exact": scores["std_exact"], "worst formatting": scores["worst"],
                "worst exact": scores["worst_exact"], "worst rescored (approx)": scores["worst_approx"]}])
    rep.bar_chart({f: {"exact": v["exact"], "approx": v["approx"]} for f, v in scores["formattings"].items()}, "Accuracy by formatting")
    rep.heading("Sample outputs")
    rep.table([{"id": r["meta"]["question_id"], "formatting": r["meta"]["formatting"], "prompt": r["input"]["prompt"], "output": r["raw"],
                "answer": r["target"], "exact": exact_match(r["prediction"], r["target"])} for r in records[:20]])
    return rep
