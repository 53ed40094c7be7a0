"""`audit chair ...`: CHAIR hallucination rates of captions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .options import FORCE, MODEL, RUN_FOLDER, STRICT, with_engine

if TYPE_CHECKING:
    from annotaudit.models import EngineOptions

app = typer.Typer(help="CHAIR: how many objects in a caption are not in the image.", no_args_is_help=True)

LANGUAGE = typer.Option("en", "--language", help="Language of the captions: en or it.")
FIX = typer.Option(False, "--fix-quirks", help="Fix the reference's singularization quirks (bus -> bu ...); numbers then differ from the literature.")


def _print_metrics(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="CHAIR")
    for col in ("captions", "CHAIR_s", "CHAIR_i", "recall", "mean length", "n", "mentions", "hallucinated"):
        table.add_column(col)
    rows = [("all", metrics)] + [(f"prompt {p}", m) for p, m in metrics.get("by_prompt", {}).items()]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    for name, m in rows:
        length = "-" if m["mean_length"] is None else f"{m['mean_length']:.1f}"
        table.add_row(name, pct(m["chair_s"]), pct(m["chair_i"]), pct(m["recall"]), length, str(m["n_captions"]), str(m["n_mentions"]), str(m["n_hallucinated"]))
    Console().print(table)


@app.command("build-gt")
def chair_build_gt_command(
    instances: list[Path] = typer.Option(..., "--instances", help="COCO instances_*.json (repeatable)."),
    captions: list[Path] = typer.Option(None, "--captions", help="COCO captions_*.json whose objects join the ground truth (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Ground-truth JSON to write: image id -> list of categories."),
    fix_quirks: bool = FIX,
) -> None:
    """Build per-image ground-truth objects from COCO instances and reference captions.

    Example: audit chair build-gt --instances instances_val2014.json --captions captions_val2014.json --out gt.json
    """
    from annotaudit.audit.chair.metric import build_ground_truth, write_ground_truth

    truth = build_ground_truth(instances, captions or [], fix_quirks=fix_quirks)
    write_ground_truth(truth, out)
    typer.echo(f"{len(truth)} images, {sum(map(len, truth.values()))} objects -> {out}")


@app.command("score")
def chair_score_command(
    captions: Path = typer.Option(..., "--captions", help="Captions: JSONL, JSON list or concatenated JSON of {image_id, caption}, POPE-style {question_id, text}, "
                                  "or a finished `audit chair run` folder (or its records.jsonl)."),
    out: Path = typer.Option(..., "--out", help="Folder for run.json, records.jsonl, metrics.json, problems.jsonl and the report."),
    ground_truth: Path = typer.Option(None, "--ground-truth", help="Ground truth from build-gt (image id -> categories; .gz accepted). "
                                      "Without it, a run's records are scored against their own targets."),
    instances: list[Path] = typer.Option(None, "--instances", help="Or build ground truth from COCO instances_*.json (repeatable)."),
    captions_ref: list[Path] = typer.Option(None, "--captions-ref", help="COCO captions_*.json for the ground truth (repeatable)."),
    image_map: Path = typer.Option(None, "--image-map", help="For POPE-style captions: question file or JSON {question_id: image}."),
    language: str = typer.Option(None, "--language", help="Language of the captions: en or it (default: the run's language, else en)."),
    strict: bool = STRICT,
    fix_quirks: bool = FIX,
    force: bool = FORCE,
    model: str = typer.Option(None, "--model", help="The model that wrote the captions, recorded in run.json so compare puts its runs in one row."),
) -> None:
    """Score captions with CHAIR_s, CHAIR_i, recall and mean length.

    Example: audit chair score --captions captions.jsonl --ground-truth gt.json --model llava-1.5-7b --out chair-out

    Example: audit chair score --captions chair-llava --out chair-llava-rescored   (re-score a run without the model)
    """
    from annotaudit.audit.chair.metric import score_caption_file
    from annotaudit.core.io import Problems

    problems = Problems(strict=strict)
    metrics = score_caption_file(captions, out, ground_truth, instances or (), captions_ref or (), image_map, language, fix_quirks, problems, force, model)
    problems.show(lambda msg: typer.secho(msg, fg="yellow", err=True), out / "problems.jsonl", prefix="warning")
    _print_metrics(metrics)
    typer.echo(f"results in {out}")


@app.command("run")
@with_engine
def chair_run_command(
    model: str = MODEL,
    images: Path = typer.Option(..., "--images", help="Folder of COCO images (file names end in the image id)."),
    out: Path = RUN_FOLDER,
    image_ids: Path = typer.Option(None, "--image-ids", help="File of image ids or file names, one a line."),
    sample: int = typer.Option(None, "--sample", help="Or caption N images drawn at random (with --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample and of generation."),
    prompt: list[str] = typer.Option(None, "--prompt", help="A prompt text (repeatable)."),
    prompt_set: str = typer.Option(None, "--prompt-set", help="Named prompts, e.g. I1,I2 (also OPERA, I1-it, I2-it)."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens"),
    batch_size: int = typer.Option(4, "--batch-size", help="Captions a batch (an image's prompts stay in one batch)."),
    ground_truth: Path = typer.Option(None, "--ground-truth", help="Ground truth from build-gt."),
    instances: list[Path] = typer.Option(None, "--instances", help="Or COCO instances_*.json (repeatable)."),
    captions_ref: list[Path] = typer.Option(None, "--captions-ref", help="COCO captions_*.json for the ground truth."),
    language: str = LANGUAGE,
    fix_quirks: bool = FIX,
    force: bool = FORCE,
    engine: EngineOptions = None,
) -> None:
    """Caption images with a VLM under each prompt, then score CHAIR per prompt.

    Example: audit chair run --model llava-1.5-7b --images val2014/ --sample 500 --seed 0 --prompt-set I1,I2 --ground-truth gt.json --out chair-llava
    """
    from annotaudit.audit.chair.metric import resolve_ground_truth
    from annotaudit.audit.chair.run import ChairConfig, resolve_prompts, run_chair

    prompts = resolve_prompts(prompt_set, prompt or [])
    truth, source = resolve_ground_truth(ground_truth, instances or (), captions_ref or (), fix_quirks)
    cfg = ChairConfig(model, images, truth, prompts, image_ids=image_ids, sample=sample, seed=seed, max_new_tokens=max_new_tokens,
                      batch_size=batch_size, language=language, fix_quirks=fix_quirks, truth_source=source)
    metrics = run_chair(cfg, out, force=force, engine=engine)
    _print_metrics(metrics)
    typer.echo(f"results in {out}")


@app.command("objects")
def chair_objects_command(text: str = typer.Argument(..., help="A caption."), language: str = LANGUAGE, fix_quirks: bool = FIX) -> None:
    """Show which COCO objects CHAIR finds in a caption.

    Example: audit chair objects "Un orsacchiotto accanto a un idrante." --language it
    """
    from annotaudit.audit.chair.metric import extract_objects

    for word, category in extract_objects(text, language, fix_quirks):
        typer.echo(f"{word}\t{category}")
