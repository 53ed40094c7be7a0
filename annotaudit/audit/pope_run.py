"""Run POPE on a vision-language model: generate (the standard protocol) or score P(yes) vs P(no).

All questions of an image go into the same batch, so the backend encodes each image once for all
of them; that, not the decoding, is where the time goes.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import safe_path
from annotaudit.core.report import Report
from annotaudit.core.runs import RunDir, progress

from .pope import CANDIDATES, LANGUAGES, PARSERS, SETTINGS, TEMPLATES, metrics, parse_question, question_text, read_questions

METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
MODES = ("generate", "score")


# Inputs ----------------------------------------------------------------------------------------

def question_files(questions: str | Path, setting: str | None) -> dict[str, Path]:
    """Setting name -> question file. With 'all', QUESTIONS is a folder holding *_<setting>.json
    (e.g. coco_pope_random.json) or one of those three files."""
    path = Path(questions)
    if setting in (None, ""):
        return {path.stem: path}
    if setting not in (*SETTINGS, "all"):
        raise InputError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)} or all")
    wanted = list(SETTINGS) if setting == "all" else [setting]
    if path.is_file() and setting != "all":
        return {setting: path}
    found: dict[str, Path] = {}
    for s in wanted:
        if path.is_dir():
            hits = sorted(path.glob(f"*_{s}.json")) or sorted(path.glob(f"*_{s}.jsonl"))
            if len(hits) != 1:
                raise InputError(f"expected one *_{s}.json question file, found {len(hits)}", path=path)
            found[s] = hits[0]
        else:
            stem = path.stem
            for other in SETTINGS:
                if stem.endswith("_" + other):
                    stem = stem[: -len(other) - 1]
            found[s] = path.with_name(f"{stem}_{s}{path.suffix or '.json'}")
            if not found[s].is_file():
                raise InputError("question file not found", path=found[s])
    return found


def parse_variants(value: str | int | None) -> list[int]:
    """'1'..'4' or 'all' -> template indices (0-based)."""
    n = len(TEMPLATES["en"])
    if value in (None, ""):
        return [0]
    if str(value).lower() == "all":
        return list(range(n))
    if not str(value).isdigit() or not 1 <= int(value) <= n:
        raise InputError(f"--prompt-variant must be 1..{n} or all, not {value!r}")
    return [int(value) - 1]


def prompt_for(q: dict[str, Any], language: str, variant: int, path: str | Path = "questions") -> str:
    """The question as asked: the file's own text for the standard template in its own language,
    otherwise re-rendered from its object (needs the 'object' field or a recognised template)."""
    parsed = parse_question(q["text"])
    if variant == 0 and (parsed is None or parsed[0] == language):
        return q["text"]
    obj = q.get("object") or (parsed[1] if parsed else None)
    if not obj:
        raise InputError("cannot tell which object this question asks about, so cannot re-render it", path=path, line=q.get("_line"))
    return question_text(obj, language, variant)


def by_image(questions: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Questions grouped by image, in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for q in questions:
        groups.setdefault(q["image"], []).append(q)
    return list(groups.values())


# Answering -------------------------------------------------------------------------------------

def answer(model: Any, questions: list[dict[str, Any]], images_dir: str | Path, mode: str, language: str, variant: int, max_new_tokens: int = 32, path: str | Path = "questions") -> list[dict[str, Any]]:
    """Answer a batch of questions (all sharing few images) in one model call; one record each."""
    from annotaudit.models import GenerationConfig, Request

    requests = []
    for q in questions:
        image = safe_path(images_dir, q["image"])
        if not image.is_file():
            raise InputError(f"image {q['image']!r} not found in {images_dir}", path=path, line=q.get("_line"))
        requests.append(Request(prompt_for(q, language, variant, path), str(image)))
    records = []
    if mode == "generate":
        gens = model.generate(requests, GenerationConfig(max_new_tokens=max_new_tokens))
        for q, r, g in zip(questions, requests, gens):
            records.append(_record(q, r.prompt, PARSERS["pope"](g.text, language), g.text))
    elif mode == "score":
        yes, no = CANDIDATES[language]
        scores = model.score(requests, [[yes, no]] * len(requests))
        for q, r, (lp_yes, lp_no) in zip(questions, requests, scores):
            rec = _record(q, r.prompt, "yes" if lp_yes > lp_no else "no", yes if lp_yes > lp_no else no)
            records.append({**rec, "logp_yes": lp_yes, "logp_no": lp_no, "score": lp_yes - lp_no})
    else:
        raise InputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return records


def _record(q: dict[str, Any], prompt: str, decision: str, raw: str) -> dict[str, Any]:
    return {"question_id": q["question_id"], "image": q["image"], "text": prompt, "label": q["label"], "answer": decision, "raw": raw}


# Metrics ---------------------------------------------------------------------------------------

def generate_metrics(records: list[dict[str, Any]], language: str) -> dict[str, Any]:
    """POPE's metrics of the answers, and what the other parsers would have made of them."""
    labels = [r["label"] for r in records]
    out = metrics(labels, [r["answer"] for r in records])
    out["by_parser"] = {name: metrics(labels, [p(r["raw"], language) for r in records]) for name, p in PARSERS.items()}
    return out


def score_metrics(records: list[dict[str, Any]], calibration: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Decisions at log P(yes) > log P(no), AUROC of the score and the yes-bias; then a threshold
    fitted on a held-out share of the images, with raw and calibrated metrics on the rest."""
    from sklearn.metrics import roc_auc_score

    labels = [r["label"] for r in records]
    out = metrics(labels, [r["answer"] for r in records])
    both = len(set(labels)) == 2
    out["auroc"] = float(roc_auc_score([y == "yes" for y in labels], [r["score"] for r in records])) if both else float("nan")
    out["yes_bias"] = out["yes_ratio"] - labels.count("yes") / len(labels)
    images = sorted({r["image"] for r in records})
    held = set(random.Random(seed).sample(images, max(1, round(len(images) * calibration)))) if len(images) > 1 else set()
    fit = [r for r in records if r["image"] in held]
    rest = [r for r in records if r["image"] not in held]
    if not fit or not rest:
        return out
    threshold = best_threshold([r["score"] for r in fit], [r["label"] for r in fit])
    rest_labels = [r["label"] for r in rest]
    out["calibration"] = {
        "threshold": threshold,
        "held_out_images": len(held),
        "eval_questions": len(rest),
        "raw": metrics(rest_labels, ["yes" if r["score"] > 0 else "no" for r in rest]),
        "calibrated": metrics(rest_labels, ["yes" if r["score"] > threshold else "no" for r in rest]),
    }
    return out


def best_threshold(scores: list[float], labels: list[str]) -> float:
    """The cut (yes when score > cut) with the best accuracy; among equals, the one nearest 0."""
    values = sorted(set(scores))
    cuts = [values[0] - 1.0] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1.0]
    def acc(cut: float) -> float:
        return sum((s > cut) == (y == "yes") for s, y in zip(scores, labels)) / len(scores)
    return max(cuts, key=lambda c: (acc(c), -abs(c)))


# The run ---------------------------------------------------------------------------------------

def cell_dir(setting: str, variant: int, settings: list[str], variants: list[int]) -> str:
    parts = ([setting] if len(settings) > 1 else []) + ([f"template_{variant + 1}"] if len(variants) > 1 else [])
    return "/".join(parts)


def run_pope(
    questions: str | Path,
    images: str | Path,
    model: str | Any,
    out: str | Path,
    setting: str | None = None,
    mode: str = "generate",
    prompt_variant: str | int | None = 1,
    language: str = "en",
    batch_images: int = 2,
    max_new_tokens: int = 32,
    calibration: float = 0.2,
    seed: int = 0,
    force: bool = False,
) -> dict[str, Any]:
    """Answer every question of every setting and template, resumably; write answers, metrics and a report."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if language not in LANGUAGES:
        raise InputError(f"unknown language {language!r}; choose one of {', '.join(LANGUAGES)}")
    if not Path(images).is_dir():
        raise InputError("images folder not found", path=images)
    files = question_files(questions, setting)
    variants = parse_variants(prompt_variant)
    sets = {s: read_questions(p) for s, p in files.items()}
    model_name = model if isinstance(model, str) else model.name
    config = {
        "questions": {s: str(Path(p).resolve()) for s, p in files.items()}, "images": str(Path(images).resolve()),
        "model": model_name, "mode": mode, "prompt_variants": [v + 1 for v in variants], "language": language,
        "max_new_tokens": max_new_tokens if mode == "generate" else None, "calibration": calibration, "seed": seed,
    }
    names = list(sets)
    cells = [(s, v, cell_dir(s, v, names, variants)) for s in names for v in variants]
    outputs = sorted({c.split("/")[0] for _, _, c in cells if c}) or ["answers.jsonl", "metrics.json"]
    run = RunDir(out, config, force=force, outputs=outputs + ["summary.json", "report.md", "report.html", "report_files"])
    logs = {c: run.log(f"{c}/answers.jsonl" if c else "answers.jsonl", key="question_id") for _, _, c in cells}
    todo = {c: [q for q in sets[s] if str(q["question_id"]) not in logs[c].done_keys()] for s, _, c in cells}
    total = sum(len(t) for t in todo.values())
    if total and isinstance(model, str):
        from annotaudit.models import load_model

        model = load_model(model)
    if total and not model.accepts_images:
        raise InputError(f"model {model_name!r} does not read images; POPE needs a vision-language model")
    started, answered = time.time(), 0
    with progress(f"POPE {mode} {model_name}", total) as advance:
        for s, v, c in cells:
            groups = by_image(todo[c])
            for k in range(0, len(groups), batch_images):
                batch = [q for g in groups[k : k + batch_images] for q in g]
                logs[c].append(answer(model, batch, images, mode, language, v, max_new_tokens, files[s]))
                answered += len(batch)
                advance(len(batch))
    elapsed = time.time() - started
    results = {}
    for s, v, c in cells:
        records = _ordered(logs[c].read(), sets[s])
        m = generate_metrics(records, language) if mode == "generate" else score_metrics(records, calibration, seed)
        run.write_json(f"{c}/metrics.json" if c else "metrics.json", {**m, "setting": s, "prompt_variant": v + 1, "mode": mode, "language": language, "model": model_name})
        results[(s, v)] = m
    summary = summarise(results, names, variants)
    run.write_json("summary.json", summary)
    write_report(out, model_name, mode, language, summary, results, names, variants)
    run.finish(questions=answered, questions_per_second=round(answered / elapsed, 3) if answered and elapsed > 0 else None)
    return summary


def _ordered(records: list[dict[str, Any]], questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {str(r["question_id"]): r for r in records}
    return [by_id[str(q["question_id"])] for q in questions if str(q["question_id"]) in by_id]


def summarise(results: dict[tuple[str, int], dict[str, Any]], settings: list[str], variants: list[int]) -> dict[str, Any]:
    """Per setting: each metric's value, or its mean and std across templates."""
    keys = METRICS + ("auroc", "yes_bias")
    out: dict[str, Any] = {}
    for s in settings:
        row: dict[str, Any] = {}
        for k in keys:
            vals = [results[(s, v)][k] for v in variants if k in results[(s, v)]]
            if not vals:
                continue
            row[k] = statistics.fmean(vals)
            if len(vals) > 1:
                row[k + "_std"] = statistics.stdev(vals)
        cal = [results[(s, v)]["calibration"] for v in variants if "calibration" in results[(s, v)]]
        if cal:
            row["threshold"] = statistics.fmean(c["threshold"] for c in cal)
            for part in ("raw", "calibrated"):
                for k in ("accuracy", "f1", "yes_ratio"):
                    row[f"{part}_{k}"] = statistics.fmean(c[part][k] for c in cal)
        out[s] = row
    return out


def _pct(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{100 * value:.1f}"
    return text + (f" ± {100 * row[key + '_std']:.1f}" if key + "_std" in row else "")


def write_report(out: str | Path, model_name: str, mode: str, language: str, summary: dict[str, Any], results: dict, settings: list[str], variants: list[int]) -> None:
    """One table over the settings, like the paper's Table 3 (values in %)."""
    report = Report(f"POPE: {model_name}")
    templates = ", ".join(f"{v + 1}: “{TEMPLATES[language][v].format(obj='…')}”" for v in variants)
    report.text(f"Mode: {mode}. Language: {language}. Templates {templates}." + (" Values are mean ± std across templates." if len(variants) > 1 else ""))
    rows = []
    for s in settings:
        row = {"setting": s, **{k: _pct(summary[s], k) for k in METRICS}}
        if mode == "score":
            row["AUROC"] = _pct(summary[s], "auroc")
            row["yes-bias"] = _pct(summary[s], "yes_bias")
        rows.append(row)
    report.table(rows, caption="Accuracy, precision, recall, F1 and yes-ratio in %")
    if mode == "score" and any("threshold" in summary[s] for s in settings):
        report.heading("Calibrated threshold")
        report.text("A threshold on log P(yes) − log P(no) fitted for accuracy on a held-out share of the images; raw and calibrated decisions on the remaining images.")
        report.table([{"setting": s, "threshold": round(summary[s]["threshold"], 4), **{f"{p} {k}": _pct(summary[s], f"{p}_{k}") for p in ("raw", "calibrated") for k in ("accuracy", "f1", "yes_ratio")}} for s in settings if "threshold" in summary[s]])
    if len(variants) > 1:
        report.heading("Per template")
        report.table([{"setting": s, "template": v + 1, **{k: _pct(results[(s, v)], k) for k in METRICS}} for s in settings for v in variants])
    report.bar_chart({s: {k: summary[s][k] for k in ("accuracy", "f1", "yes_ratio")} for s in settings}, title=f"POPE {model_name}")
    report.write(out)
