"""`audit pope ...`: build, run and score POPE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from annotaudit.audit.pope.protocol import METRIC_NAMES
from annotaudit.core.errors import InputError

from .options import FORCE, MODEL, RUN_FOLDER, with_engine

if TYPE_CHECKING:
    from annotaudit.models import EngineOptions

app = typer.Typer(help="POPE: poll a VLM about objects that are and are not in the image.", no_args_is_help=True)


def _at_least_one(**options: int) -> None:
    """Counts a user gave must be positive: 0 or -1 would silently build or answer nothing."""
    for name, value in options.items():
        if value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")


def _print_table(title: str, rows: dict[str, dict], counts: tuple[str, ...] = ()) -> None:
    table = Table(title=title)
    table.add_column("setting")
    for k in METRIC_NAMES + counts:
        table.add_column(k, justify="right")
    for name, m in rows.items():
        table.add_row(name, *("" if m[k] is None else f"{100 * m[k]:.2f}" for k in METRIC_NAMES), *(f"{m[k]:,}" for k in counts))
    Console().print(table)


def _print_label_sets(result: dict) -> None:
    """One table per label set when there are several, then one line per setting with the change in F1; each set's protocol."""
    from annotaudit.audit.pope.labels import f1_changes

    sets = result.get("label_sets") or {}
    if len(sets) > 1:
        for name, figures in sets.items():
            _print_table(f"labels: {name}", figures["settings"], ("n", "excluded"))
        for line in f1_changes(sets):
            typer.echo(line)
    for name, figures in sets.items():
        typer.echo(f"labels {name}: {figures['protocol']['version_name']}")


@app.command("build")
def pope_build_command(
    out: Path = typer.Option(..., "--out", help="Question file; with --setting all, OUT's stem + _<setting> for each."),
    annotations: list[Path] = typer.Option(None, "--annotations", help="COCO instances_*.json (repeatable)."),
    captions: list[Path] = typer.Option(None, "--captions", help="COCO captions_*.json: add the captions' objects, CHAIR's way."),
    objects: Path = typer.Option(None, "--objects", help='Per-image objects JSON {"<image id>": ["object", ...]}.'),
    image_pattern: str = typer.Option("COCO_val2014_{id:012d}.jpg", help="With --objects: image id -> file name."),
    setting: str = typer.Option("all", help="random, popular, adversarial or all."),
    images: int = typer.Option(500, help="How many images."),
    per_image: int = typer.Option(3, help="Yes questions (and as many no questions) per image."),
    min_objects: int = typer.Option(3, help="Only images with at least this many objects."),
    seed: int = typer.Option(0, help="Seed of every draw: the same seed gives the same set."),
    language: str = typer.Option("en", help="en or it."),
    frequency: Path = typer.Option(None, help="A published frequency table (as coco_ground_truth_objects.json) for popular."),
    co_occur: Path = typer.Option(None, help="A published co-occurrence table (as coco_co_occur.json) for adversarial."),
) -> None:
    """Build POPE question sets from COCO instances or a per-image objects file.

    Example: audit pope build --annotations instances_val2014.json --captions captions_val2014.json --setting all --out pope/coco_pope.json
    """
    from annotaudit.audit.pope.build import build_question_files
    from annotaudit.audit.pope.protocol import read_questions

    _at_least_one(images=images, per_image=per_image, min_objects=min_objects)
    paths = build_question_files(
        out, annotations=annotations, captions=captions, objects=objects, setting=setting, images=images, per_image=per_image,
        min_objects=min_objects, seed=seed, language=language, image_pattern=image_pattern, frequency=frequency, co_occur=co_occur,
    )
    for s, path in paths.items():
        questions = read_questions(path)
        typer.echo(f"{s}: {len(questions)} questions over {len({q['image'] for q in questions})} images -> {path}")


@app.command("run")
@with_engine
def pope_run_command(
    questions: Path = typer.Option(..., "--questions", help="A POPE question file (or the hub's parquet, all categories in one); with --setting all, a folder with *_<setting>.json or one of them."),
    images: Path = typer.Option(None, "--images", help="Folder of the images the questions name (not needed for the hub's parquet, whose images are inside it)."),
    model: str = MODEL,
    out: Path = RUN_FOLDER,
    setting: str = typer.Option(None, help="random, popular, adversarial, or all (one combined table)."),
    mode: str = typer.Option("generate", help="generate (greedy, POPE's protocol) or score (log P(yes) vs log P(no))."),
    prompt_variant: str = typer.Option("1", help="Template 1-4, or all for mean ± std across the four."),
    language: str = typer.Option("en", help="en or it: Italian questions and answers."),
    batch_images: int = typer.Option(2, help="Images per batch; all of an image's questions share its batch."),
    max_new_tokens: int = typer.Option(32, help="Generate mode: answer length cap."),
    calibration: float = typer.Option(0.2, help="Score mode: share of images held out to fit the threshold."),
    seed: int = typer.Option(0, help="Seed of the held-out split."),
    force: bool = FORCE,
    engine: EngineOptions = None,
) -> None:
    """Ask a vision-language model every POPE question; resumes where a killed run stopped.

    Example: audit pope run --questions coco_pope_random.json --images val2014 --model llava-1.5-7b --out runs/pope-llava
    """
    from annotaudit.audit.pope.run import PopeConfig, run_pope

    cfg = PopeConfig(questions, images, model, setting=setting, mode=mode, prompt_variant=prompt_variant, language=language,
                     batch_images=batch_images, max_new_tokens=max_new_tokens, calibration=calibration, seed=seed)
    summary = run_pope(cfg, out, force=force, engine=engine)
    _print_table(f"POPE {mode}: {model}", summary)
    typer.echo(f"results in {out} (report.md, report.html)")


@app.command("score")
def pope_score_command(
    run: Path = typer.Option(None, "--run", help="A finished `audit pope run` folder: score its records.jsonl again, no model."),
    questions: Path = typer.Option(None, "--questions", help="Labelled questions: a POPE file, LLaVA's llava_pope_test.jsonl (with --labels) or the hub's parquet."),
    answers: Path = typer.Option(None, "--answers", help="Answers: POPE/LLaVA lines, a run folder, lmms-eval samples, a VLMEvalKit .xlsx/.tsv sheet."),
    labels: list[str] = typer.Option(None, "--labels", help="A label set, [NAME=]FOLDER or FILE (coco_pope_<setting>.json, coco_repope_<setting>.json or "
                                     "<setting>.json), scored beside the questions' own labels; repeatable. For LLaVA's question file the first gives its labels."),
    answers_format: str = typer.Option("auto", "--format", help="The answers' format: auto, pope, llava, records, lmms-eval or vlmevalkit."),
    parser: str = typer.Option("pope", help="pope (POPE's evaluate.py), strict, vlmevalkit or repope (RePOPE's rule: no yes/no is left out)."),
    language: str = typer.Option(None, help="en or it (Italian adds Sì/Non); default en, or the run's."),
    out: Path = typer.Option(None, "--out", help="Run folder to write: run.json, records.jsonl, metrics.json, report.md/html (required unless --run)."),
    model: str = typer.Option(None, "--model", help="The model that wrote the answers, recorded in run.json so compare puts its settings in one row."),
    force: bool = FORCE,
) -> None:
    """Score answers against POPE labels (POPE's way by default), or score a finished run again.

    Answers pair with labels only when every field both carry (setting, image, object, label) agrees.

    Example: audit pope score --questions coco_pope_random.json --answers answers.jsonl --out scores/

    Example: audit pope score --questions llava_pope_test.jsonl --labels pope/coco --answers llava-v1.5-13b.jsonl --out scores/

    Example: audit pope score --answers samples_pope.jsonl --out scores/   (lmms-eval logs and VLMEvalKit sheets carry their labels)

    Example: audit pope score --run runs/pope-llava --parser strict --out runs/pope-llava-strict

    Example: audit pope score --questions coco_pope_random.json --answers answers.jsonl --labels repope=RePOPE/annotations/coco_repope --out scores/
    """
    from annotaudit.audit.pope.run import score_pope

    if out is None and run is None:
        raise InputError("--out is required: the run folder that keeps the records, metrics and report")
    result = score_pope(run=run, questions=questions, answers=answers, out=out, parser=parser, language=language, force=force,
                        labels=labels or None, answers_format=answers_format, model=model)
    _print_table(f"POPE ({result['parser']} parser)", result["summary"])
    for setting, cells in result["templates"].items():
        for template, m in cells.items():
            typer.echo(json.dumps({"setting": setting, "template": int(template), **{k: m.get(k, 0) for k in ("n", "tp", "fp", "tn", "fn", "unknown", "no_answer")}}))
    if result.get("mean_f1") is not None:
        typer.echo(f"mean F1 over settings: {100 * result['mean_f1']:.2f}")
    if result.get("alignment"):
        typer.echo(result["alignment"]["message"])
    _print_label_sets(result)
    if out:
        typer.echo(f"results in {out} (records.jsonl, metrics.json, report.md, report.html)")
