"""`audit pope ...`: build, run and score POPE."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from annotaudit.core.errors import InputError

app = typer.Typer(help="POPE: poll a VLM about objects that are and are not in the image.", no_args_is_help=True)

_METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def _print_table(title: str, rows: dict[str, dict]) -> None:
    table = Table(title=title)
    table.add_column("setting")
    for k in _METRICS:
        table.add_column(k, justify="right")
    for name, m in rows.items():
        table.add_row(name, *(f"{100 * m[k]:.2f}" for k in _METRICS))
    Console().print(table)


@app.command("build")
def build(
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
    from annotaudit.audit.pope import LANGUAGES, SETTINGS
    from annotaudit.audit.pope_build import _load_json, objects_from_coco, objects_from_json, output_paths, write_questions
    from annotaudit.audit.pope_build import build as build_sets

    if bool(annotations) == bool(objects):
        raise InputError("give either --annotations (COCO instances) or --objects, not both or neither")
    if captions and not annotations:
        raise InputError("--captions goes with --annotations")
    if language not in LANGUAGES:
        raise InputError(f"unknown language {language!r}; choose one of {', '.join(LANGUAGES)}")
    settings = list(SETTINGS) if setting == "all" else [setting]
    if any(s not in SETTINGS for s in settings):
        raise InputError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)} or all")
    if objects:
        objs, files = objects_from_json(objects), None
    else:
        objs, files = objects_from_coco(annotations, captions)
    sets = build_sets(
        objs, settings, n_images=images, per_image=per_image, min_objects=min_objects, seed=seed, language=language,
        file_names=files, image_pattern=image_pattern,
        frequency_table=_load_json(frequency) if frequency else None, co_occur_table=_load_json(co_occur) if co_occur else None,
    )
    for s, path in output_paths(out, settings).items():
        write_questions(path, sets[s])
        n_img = len({q["image"] for q in sets[s]})
        typer.echo(f"{s}: {len(sets[s])} questions over {n_img} images -> {path}")


@app.command("run")
def run(
    questions: Path = typer.Option(..., "--questions", help="A POPE question file; with --setting all, a folder with *_<setting>.json or one of them."),
    images: Path = typer.Option(..., "--images", help="Folder of the images the questions name."),
    model: str = typer.Option(..., "--model", help="Registry name, hf:<id or path>, or a local model folder."),
    out: Path = typer.Option(..., "--out", help="Run folder: answers.jsonl, metrics.json, report.md/html, run.json."),
    setting: str = typer.Option(None, help="random, popular, adversarial, or all (one combined table)."),
    mode: str = typer.Option("generate", help="generate (greedy, POPE's protocol) or score (log P(yes) vs log P(no))."),
    prompt_variant: str = typer.Option("1", help="Template 1-4, or all for mean ± std across the four."),
    language: str = typer.Option("en", help="en or it: Italian questions and answers."),
    batch_images: int = typer.Option(2, help="Images per batch; all of an image's questions share its batch."),
    max_new_tokens: int = typer.Option(32, help="Generate mode: answer length cap."),
    calibration: float = typer.Option(0.2, help="Score mode: share of images held out to fit the threshold."),
    seed: int = typer.Option(0, help="Seed of the held-out split."),
    force: bool = typer.Option(False, help="Discard an old run with another configuration in OUT."),
) -> None:
    """Ask a vision-language model every POPE question; resumes where a killed run stopped.

    Example: audit pope run --questions coco_pope_random.json --images val2014 --model llava-1.5-7b --out runs/pope-llava
    """
    from annotaudit.audit.pope_run import run_pope

    summary = run_pope(
        questions, images, model, out, setting=setting, mode=mode, prompt_variant=prompt_variant, language=language,
        batch_images=batch_images, max_new_tokens=max_new_tokens, calibration=calibration, seed=seed, force=force,
    )
    _print_table(f"POPE {mode}: {model}", summary)
    typer.echo(f"results in {out} (report.md, report.html)")


@app.command("score")
def score(
    questions: Path = typer.Option(..., "--questions", help="The POPE question file (labels)."),
    answers: Path = typer.Option(..., "--answers", help="JSONL answers carrying 'answer' or 'text'."),
    parser: str = typer.Option("pope", help="pope (POPE's evaluate.py), strict or vlmevalkit."),
    language: str = typer.Option("en", help="en or it (Italian adds Sì/Non)."),
    out: Path = typer.Option(None, "--out", help="Folder for metrics.json."),
) -> None:
    """Score answers against POPE labels, POPE's way by default.

    Example: audit pope score --questions coco_pope_random.json --answers answers.jsonl --out scores/
    """
    from annotaudit.audit.pope import score_answers
    from annotaudit.core.io import write_json

    result = score_answers(questions, answers, parser, language)
    _print_table(f"POPE ({parser} parser)", {questions.stem: result})
    typer.echo(json.dumps({k: result[k] for k in ("n", "tp", "fp", "tn", "fn", "unknown")}))
    if out:
        write_json(Path(out) / "metrics.json", result)
        typer.echo(f"metrics in {Path(out) / 'metrics.json'}")
