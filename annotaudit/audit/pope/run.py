"""Run POPE on a vision-language model: generate (the standard protocol) or score P(yes) vs P(no).

Every setting and template goes through the one item runner into one records.jsonl. All questions
of an image (within a setting and template) share a batch, so the backend encodes each image once
for all of them; that, not the decoding, is where the time goes.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError, require_minimum
from annotaudit.core.io import safe_path
from annotaudit.core.runner import RECORDS, Sample, make_record, read_run_records, run_config, run_samples, save_records, score_records
from annotaudit.core.vocab import LANGUAGES, SETTINGS

from .formats import is_parquet, parquet_question_sets, setting_of
from .protocol import (
    CANDIDATES,
    METRIC_NAMES,
    PARSERS,
    TEMPLATES,
    get_parser,
    metrics,
    parse_question,
    question_text,
    read_questions,
)

MODES = ("generate", "score")


# Inputs ----------------------------------------------------------------------------------------

def question_files(questions: str | Path, setting: str | None) -> dict[str, Path]:
    """Setting name -> question file. With 'all', QUESTIONS is a folder holding *_<setting>.json
    (e.g. coco_pope_random.json) or one of those three files."""
    path = Path(questions)
    if setting in (None, ""):
        return {setting_of(path.stem): path}
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


def pope_samples(sets: dict[str, list[dict[str, Any]]], files: dict[str, Path], images: str | Path, language: str, variants: list[int]) -> list[Sample]:
    """One sample per setting, template and question; an image's questions in a setting and template form a group.

    Every image is checked before any model loads, so a missing one names its question's file and line.
    """
    several = len(sets) * len(variants) > 1
    samples = []
    for s, questions in sets.items():
        checked: set[str] = set()
        for q in questions:
            if q["image"] not in checked:
                try:
                    found = safe_path(images, q["image"]).is_file()
                except InputError as err:
                    raise InputError(err.message, path=files[s], line=q.get("_line")) from None
                if not found:
                    raise InputError(f"image {q['image']!r} not found in {images}", path=files[s], line=q.get("_line"))
                checked.add(q["image"])
        for v in variants:
            for q in questions:
                qid = q["question_id"]
                samples.append(Sample(
                    id=f"{s}/{v + 1}/{qid}" if several else str(qid),
                    input={"prompt": prompt_for(q, language, v, files[s]), "image": q["image"]},
                    target=q["label"],
                    meta={"setting": s, "template": v + 1, "question_id": qid},
                    group=f"{s}/{v + 1}/{q['image']}",
                ))
    return samples


# Answering -------------------------------------------------------------------------------------

def pope_mode(mode: str, language: str, max_new_tokens: int = 32) -> Any:
    """How a question is answered: generate (POPE's protocol, the reply read by POPE's parser) or score
    P(yes) vs P(no), one record each.

    prediction: POPE's yes/no; raw: the model's text (score mode: the likelier of the two answers);
    scores (score mode): logp_yes, logp_no and score = their difference.
    """
    from annotaudit.models import GenerationConfig
    from annotaudit.models.answering import Generate, Score

    if mode == "generate":
        return Generate(GenerationConfig(max_new_tokens=max_new_tokens),
                        lambda reply: make_record(reply.sample, PARSERS["pope"](reply.generation.text, language), reply.generation.text))
    yes, no = CANDIDATES[language]

    def scored(reply: Any) -> dict[str, Any]:
        lp_yes, lp_no = reply.logprobs
        return make_record(reply.sample, "yes" if lp_yes > lp_no else "no", yes if lp_yes > lp_no else no,
                           {"logp_yes": lp_yes, "logp_no": lp_no, "score": lp_yes - lp_no})

    return Score([yes, no], scored)


# Metrics ---------------------------------------------------------------------------------------

def generate_metrics(records: list[dict[str, Any]], language: str) -> dict[str, Any]:
    """Metrics of the records' predictions, and what each parser would have made of the raw answers."""
    labels = [r["target"] for r in records]
    out = metrics(labels, [r["prediction"] for r in records])
    out["by_parser"] = {name: metrics(labels, [p(r["raw"], language) for r in records]) for name, p in PARSERS.items()}
    return out


def score_metrics(records: list[dict[str, Any]], calibration: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Decisions at log P(yes) > log P(no), AUROC of the score and the yes-bias; then a threshold
    fitted on a held-out share of the images, with raw and calibrated metrics on the rest."""
    from sklearn.metrics import roc_auc_score

    labels = [r["target"] for r in records]
    out = metrics(labels, [r["prediction"] for r in records])
    both = len(set(labels)) == 2
    out["auroc"] = float(roc_auc_score([y == "yes" for y in labels], [r["scores"]["score"] for r in records])) if both else float("nan")
    out["yes_bias"] = out["yes_ratio"] - labels.count("yes") / len(labels)
    images = sorted({r["input"]["image"] for r in records})
    held = set(random.Random(seed).sample(images, max(1, round(len(images) * calibration)))) if len(images) > 1 else set()
    fit = [r for r in records if r["input"]["image"] in held]
    rest = [r for r in records if r["input"]["image"] not in held]
    if not fit or not rest:
        return out
    threshold = best_threshold([r["scores"]["score"] for r in fit], [r["target"] for r in fit])
    rest_labels = [r["target"] for r in rest]
    out["calibration"] = {
        "threshold": threshold,
        "held_out_images": len(held),
        "eval_questions": len(rest),
        "raw": metrics(rest_labels, ["yes" if r["scores"]["score"] > 0 else "no" for r in rest]),
        "calibrated": metrics(rest_labels, ["yes" if r["scores"]["score"] > threshold else "no" for r in rest]),
    }
    return out


def best_threshold(scores: list[float], labels: list[str]) -> float:
    """The cut (yes when score > cut) with the best accuracy; among equals, the one nearest 0."""
    values = sorted(set(scores))
    cuts = [values[0] - 1.0] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1.0]
    def acc(cut: float) -> float:
        return sum((s > cut) == (y == "yes") for s, y in zip(scores, labels)) / len(scores)
    return max(cuts, key=lambda c: (acc(c), -abs(c)))


def pope_metrics(records: list[dict[str, Any]], mode: str = "generate", language: str = "en", calibration: float = 0.2,
                 seed: int = 0, parser: str = "pope", model: str | None = None) -> dict[str, Any]:
    """metrics.json of a POPE run: `templates` (setting -> template -> metrics) and `summary`
    (setting -> each metric, or its mean and std across templates)."""
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        cells.setdefault((str(r["meta"]["setting"]), int(r["meta"]["template"])), []).append(r)
    settings = list(dict.fromkeys(s for s, _ in cells))
    templates = list(dict.fromkeys(t for _, t in cells))
    results = {c: generate_metrics(rs, language) if mode == "generate" else score_metrics(rs, calibration, seed) for c, rs in cells.items()}
    return {
        "model": model, "mode": mode, "language": language, "parser": parser,
        "summary": summarise(results, settings, templates),
        "templates": {s: {str(t): results[(s, t)] for t in templates if (s, t) in results} for s in settings},
    }


def summarise(results: dict[tuple[str, int], dict[str, Any]], settings: list[str], templates: list[int]) -> dict[str, Any]:
    """Per setting: each metric's value, or its mean and std across templates."""
    keys = METRIC_NAMES + ("auroc", "yes_bias")
    out: dict[str, Any] = {}
    for s in settings:
        cells = [results[(s, t)] for t in templates if (s, t) in results]
        row: dict[str, Any] = {}
        for k in keys:
            vals = [c[k] for c in cells if k in c]
            if not vals:
                continue
            row[k] = statistics.fmean(vals)
            if len(vals) > 1:
                row[k + "_std"] = statistics.stdev(vals)
        cal = [c["calibration"] for c in cells if "calibration" in c]
        if cal:
            row["threshold"] = statistics.fmean(c["threshold"] for c in cal)
            for part in ("raw", "calibrated"):
                for k in ("accuracy", "f1", "yes_ratio"):
                    row[f"{part}_{k}"] = statistics.fmean(c[part][k] for c in cal)
        out[s] = row
    return out


# The run ---------------------------------------------------------------------------------------

@dataclass
class PopeConfig:
    """What `audit pope run` asks, checked on construction. `model` is a name, or a model already loaded."""

    questions: str | Path
    images: str | Path | None
    model: str | Any
    setting: str | None = None
    mode: str = "generate"
    prompt_variant: str | int | None = 1
    language: str = "en"
    batch_images: int = 2
    max_new_tokens: int = 32
    calibration: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.language not in LANGUAGES:
            raise InputError(f"unknown language {self.language!r}; choose one of {', '.join(LANGUAGES)}")
        require_minimum(self, ("batch_images", "max_new_tokens"), 1)
        if not 0 < self.calibration < 1:
            raise InputError(f"--calibration is the share of images held out to fit the threshold, between 0 and 1 (got {self.calibration})")
        parse_variants(self.prompt_variant)


def run_pope(cfg: PopeConfig, out: str | Path, force: bool = False, engine: Any = None) -> dict[str, Any]:
    """Answer every question of every setting and template, resumably, into one run folder.

    Returns the summary (setting -> metrics); metrics.json holds it with the per-template metrics.
    `engine` (EngineOptions) says how to reach a model server; its request cache defaults to <out>/cache.
    """
    from annotaudit.models.answering import Answering, prompt_and_image

    from .labels import label_set_metrics, question_label_set

    answering = Answering.for_run(cfg.model, out, engine, needs_images="POPE")
    mode, language, calibration, seed = cfg.mode, cfg.language, cfg.calibration, cfg.seed
    variants = parse_variants(cfg.prompt_variant)
    if is_parquet(cfg.questions):  # the hub's copy: questions of every category and the images inside it
        sets, files, images = parquet_question_sets(cfg.questions, cfg.setting, cfg.images)
    else:
        images = cfg.images
        if images is None or not Path(images).is_dir():
            raise InputError("images folder not found", path=images or "--images")
        files = question_files(cfg.questions, cfg.setting)
        sets = {s: read_questions(p) for s, p in files.items()}
    samples = pope_samples(sets, files, images, language, variants)
    model_name = answering.name
    config = {
        "questions": {s: str(Path(p).resolve()) for s, p in files.items()}, "images": str(Path(images).resolve()),
        "model": model_name, "mode": mode, "prompt_variants": [v + 1 for v in variants], "language": language, "parser": "pope",
        "max_new_tokens": cfg.max_new_tokens if mode == "generate" else None, "calibration": calibration, "seed": seed,
        **answering.config(),
    }
    result = run_samples(
        out, config, samples, answering.solver(pope_mode(mode, language, cfg.max_new_tokens), prompt_and_image(images)),
        lambda records: {**pope_metrics(records, mode, language, calibration, seed, "pope", model_name),
                         **label_set_metrics(records, [question_label_set(sets, files)], "pope", mode, language)},
        kind="pope", inputs={**{f"questions_{s}": p for s, p in files.items()}, "images": images}, report=write_pope_report,
        batch_size=cfg.batch_images, description=f"POPE {mode} {model_name}", force=force,
    )
    return result.get("summary", {})


# Scoring without a model -----------------------------------------------------------------------

def reparse(records: list[dict[str, Any]], parser: str, language: str) -> list[dict[str, Any]]:
    """Generate-mode records with each prediction re-read from the raw answer by another parser."""
    parse = get_parser(parser)
    return [{**r, "prediction": parse(r["raw"], language)} for r in records]


def answer_file_records(questions: str | Path | None, answers: str | Path, parser: str = "pope", language: str = "en",
                        labels: str | Path | None = None, answers_format: str = "auto") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records (the run schema) of an answers file paired with its labels, and the alignment check's verdict.

    Any format of audit.pope.formats; a POPE question file's setting is its stem, LLaVA's and the hub's their category.
    """
    from .formats import paired_inputs

    parse = get_parser(parser)
    pairs, verdict = paired_inputs(questions, answers, labels, answers_format)
    several = len({q["setting"] for q, _ in pairs}) > 1
    records = []
    for q, a in pairs:
        qid, setting = q["question_id"], str(q["setting"])
        meta = {"setting": setting, "template": 1, "question_id": qid, "answer_line": a["_line"]}
        if "label_line" in q:
            meta.update(label_file=q["label_file"], label_line=q["label_line"])
        sample = Sample(id=f"{setting}/1/{qid}" if several else str(qid), input={"prompt": q["text"] or a["text"], "image": q["image"]},
                        target=q["label"], meta=meta)
        records.append(make_record(sample, parse(a["answer"], language), a["answer"]))
    return records, verdict


def mean_f1(summary: dict[str, dict[str, Any]]) -> float | None:
    """The mean F1 over the POPE settings present (LLaVA's published figure); None with fewer than two."""
    values = [row["f1"] for s, row in summary.items() if s in SETTINGS and "f1" in row]
    return statistics.fmean(values) if len(values) > 1 else None


def score_pope(
    run: str | Path | None = None,
    questions: str | Path | None = None,
    answers: str | Path | None = None,
    out: str | Path | None = None,
    parser: str = "pope",
    language: str | None = None,
    force: bool = False,
    labels: Any = None,
    answers_format: str = "auto",
    model: str | None = None,
) -> dict[str, Any]:
    """Metrics of a finished run folder (`run`) or of an answers file against its labels, without a model.

    The labels come from `questions` (a POPE, LLaVA or hub parquet question file; LLaVA's needs the `labels`
    folder of coco_pope_<setting>.json) or, when `questions` is None, from the answers file itself (lmms-eval
    logs, VLMEvalKit sheets). Answers pair with labels only after every shared field agrees (audit.pope.formats).

    With `out`, a run folder like `audit pope run`'s (run.json, records.jsonl, metrics.json, report);
    `out` may be `run` itself, which rewrites its metrics and report (with the run's own parser).
    `labels` (a path or NAME=PATH, or a list of them) are label sets scored side by side (audit.pope.labels); for
    LLaVA's question file the first also gives its labels. `model` names the model the answers came from.
    Returns the metrics (as in metrics.json).
    """
    from .formats import carries_labels
    from .labels import label_set_metrics, own_label_set, read_label_sets, run_label_set

    get_parser(parser)
    sets, primary = read_label_sets(labels), None
    if (run is None) == (answers is None):
        raise InputError("give either a run folder (--run), or an answers file (--answers) with its labels (--questions, --labels)")
    verdict = None
    if run is not None:
        source = run_config(run, "pope", "annotaudit audit pope score --run")
        records = read_run_records(run)
        mode, calibration, seed = source.get("mode", "generate"), source.get("calibration", 0.2), source.get("seed", 0)
        if language not in (None, source.get("language", "en")):
            raise InputError(f"the run was asked in {source.get('language')!r}, not {language!r}", path=run)
        language = source.get("language", "en")
        changed = mode == "generate" and parser != source.get("parser", "pope")
        if changed:
            records = reparse(records, parser, language)
        else:
            parser = source.get("parser", "pope")
        inputs = {"records": Path(run) / RECORDS}
        model = model or source.get("model")
        config = {"run": str(Path(run).resolve()), "model": model, "mode": mode, "language": language, "parser": parser,
                  "calibration": calibration, "seed": seed}
        own = run_label_set(source, records, Path(run))
    else:
        language = language or "en"
        if language not in LANGUAGES:
            raise InputError(f"unknown language {language!r}; choose one of {', '.join(LANGUAGES)}")
        primary = sets.pop(0) if questions is not None and sets and not carries_labels(questions) else None
        records, verdict = answer_file_records(questions, answers, parser, language, primary, answers_format)
        mode, calibration, seed, changed = "generate", 0.2, 0, False
        own = primary or own_label_set(records, Path(questions or answers))
        inputs = {"questions": questions, "answers": answers}
        config = {**{k: str(Path(v).resolve()) if v is not None else None for k, v in inputs.items()},
                  "answers_format": answers_format, "model": model, "mode": mode, "language": language, "parser": parser,
                  "calibration": calibration, "seed": seed}
        model = model or Path(answers).name
    given = [s for s in (primary, *sets) if s is not None]
    if given:
        config["labels"] = {s.name: {str(k): str(f.resolve()) for k, f in s.files.items()} for s in given}
        inputs.update({f"labels/{s.name}/{k}": f for s in given for k, f in s.files.items()})

    def metric(recs: list[dict[str, Any]]) -> dict[str, Any]:
        result = pope_metrics(recs, mode, language, calibration, seed, parser, model)
        if mean_f1(result["summary"]) is not None:
            result["mean_f1"] = mean_f1(result["summary"])
        if verdict is not None:
            result["alignment"] = verdict
        return {**result, **label_set_metrics(recs, [own, *sets], parser, mode, language)}

    if out is None:
        return metric(records)
    out = Path(out)
    if run is not None and out.resolve() == Path(run).resolve():
        if changed:
            raise InputError(f"re-scoring in place keeps the run's parser ({source.get('parser', 'pope')}); write to another folder", path=run)
        return score_records(out, records, metric, write_pope_report)
    return save_records(out, config, records, metric, write_pope_report, force=force, kind="pope", inputs=inputs)


# Report ----------------------------------------------------------------------------------------

def _pct(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{100 * value:.1f}"
    return text + (f" ± {100 * row[key + '_std']:.1f}" if key + "_std" in row else "")


def write_pope_report(records: list[dict[str, Any]], result: dict[str, Any], out: str | Path) -> None:
    """One table over the settings, like the paper's Table 3 (values in %), then the per-template table."""
    from annotaudit.core.report import Report

    name, mode, language = result.get("model") or "answers", result["mode"], result["language"]
    summary, per_template = result["summary"], result["templates"]
    settings = list(summary)
    templates = list(dict.fromkeys(int(t) for s in settings for t in per_template[s]))
    report = Report(f"POPE: {name}")
    text = ", ".join(f"{t}: “{TEMPLATES[language][t - 1].format(obj='…')}”" for t in templates)
    report.text(f"Mode: {mode}. Language: {language}. Parser: {result.get('parser', 'pope')}. Templates {text}."
                + (" Values are mean ± std across templates." if len(templates) > 1 else ""))
    report.run_status(result)
    rows = []
    for s in settings:
        row = {"setting": s, **{k: _pct(summary[s], k) for k in METRIC_NAMES}}
        if mode == "score":
            row["AUROC"] = _pct(summary[s], "auroc")
            row["yes-bias"] = _pct(summary[s], "yes_bias")
        rows.append(row)
    report.table(rows, caption="Accuracy, precision, recall, F1 and yes-ratio in %")
    if result.get("mean_f1") is not None:
        report.text(f"Mean F1 over the settings: {100 * result['mean_f1']:.2f} (the figure LLaVA publishes).")
    if result.get("alignment"):
        report.text(f"Answers and labels: {result['alignment']['message']}.")
    if result.get("label_sets"):
        from .labels import report_label_sets

        report_label_sets(report, result["label_sets"])
    if mode == "score" and any("threshold" in summary[s] for s in settings):
        report.heading("Calibrated threshold")
        report.text("A threshold on log P(yes) − log P(no) fitted for accuracy on a held-out share of the images; raw and calibrated decisions on the remaining images.")
        report.table([{"setting": s, "threshold": round(summary[s]["threshold"], 4), **{f"{p} {k}": _pct(summary[s], f"{p}_{k}") for p in ("raw", "calibrated") for k in ("accuracy", "f1", "yes_ratio")}} for s in settings if "threshold" in summary[s]])
    if len(templates) > 1:
        report.heading("Per template")
        report.table([{"setting": s, "template": t, **{k: _pct(m, k) for k in METRIC_NAMES}} for s in settings for t, m in per_template[s].items()])
    report.bar_chart({s: {k: summary[s][k] for k in ("accuracy", "f1", "yes_ratio")} for s in settings}, title=f"POPE {name}")
    report.write(out)
