"""`annotaudit lvlm ...`: build, train and evaluate LLaVA-NeXT LVLMs from any causal LLM."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .options import ALLOW_PICKLE, FORCE, MODEL, REPORT_TO, RUN_FOLDER, with_engine

if TYPE_CHECKING:
    from annotaudit.models import EngineOptions

app = typer.Typer(help="Build, train and evaluate LLaVA-NeXT vision-language models from any causal LLM.", no_args_is_help=True)


@app.command("build")
def lvlm_build_command(
    vision: str = typer.Option(..., "--vision", help="CLIP vision tower: local path or hub id."),
    llm: str = typer.Option(..., "--llm", help="Causal LLM: local path or hub id."),
    out: Path = typer.Option(..., "--out", help="Where to write the LLaVA-NeXT checkpoint."),
    template: str = typer.Option("auto", help="auto (the LLM's own, else mistral), own, mistral, vicuna_v1.1, or a .jinja file."),
    pinpoints: str = typer.Option(None, help="anyres grid as HxW pairs, e.g. 336x672,672x336,672x672,1008x336,336x1008 (default: these, scaled to the tower)."),
    dtype: str = typer.Option("auto", help="Weights dtype: auto (the LLM's), float32, bfloat16."),
    force: bool = typer.Option(False, help="Overwrite a folder that holds another build or run."),
    allow_pickle: bool = ALLOW_PICKLE,
) -> None:
    """Compose a LlavaNextForConditionalGeneration from a CLIP tower and an LLM (run.json beside it records the inputs).

    Example: annotaudit lvlm build --vision openai/clip-vit-large-patch14-336 --llm sapienzanlp/Minerva-7B-base-v1.0 --out minerva-llava --template mistral
    """
    from annotaudit.lvlm.build import build_lvlm, parse_pinpoints

    path = build_lvlm(vision, llm, out, template=template, pinpoints=parse_pinpoints(pinpoints), dtype=dtype, force=force, allow_pickle=allow_pickle)
    typer.echo(f"wrote {path}")


@app.command("train")
def lvlm_train_command(
    model: Path = typer.Option(..., "--model", help="An LVLM from `lvlm build` or an earlier stage."),
    data: Path = typer.Option(..., "--data", help="LLaVA conversation JSON (or JSONL)."),
    images: Path = typer.Option(None, "--images", help="Folder the 'image' fields are relative to."),
    stage: str = typer.Option(..., "--stage", help="pretrain (projector only) or finetune (projector + LLM)."),
    out: Path = typer.Option(..., "--out", help="Run folder: the trained model, run.json, train_log.jsonl, metrics.json, report.md/html, checkpoints/."),
    lr: float = typer.Option(None, help="Learning rate (default 1e-3 pretrain, 1e-5 finetune)."),
    vision_lr: float = typer.Option(2e-6, help="Learning rate of the vision tower with --tune-vision."),
    epochs: int = typer.Option(1),
    batch_size: int = typer.Option(1, help="Per-process batch size."),
    grad_accum: int = typer.Option(1, help="Gradient accumulation steps."),
    lora: int = typer.Option(None, help="LoRA rank on the LLM instead of full finetuning."),
    tune_vision: bool = typer.Option(False, "--tune-vision", help="Also train the vision tower (finetune only)."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing"),
    precision: str = typer.Option("auto", help="auto (bf16 where supported), bf16, fp16 or no."),
    max_length: int = typer.Option(2048, help="Longest sample in tokens; text is cut, image tokens never."),
    save_every: int = typer.Option(0, help="Also checkpoint every N optimizer steps (always at each epoch end)."),
    seed: int = typer.Option(0),
    num_workers: int = typer.Option(0, help="Processes preparing batches while the model trains (results do not change)."),
    group_by_length: bool = typer.Option(False, "--group-by-length", help="Batch samples of similar length (less padding)."),
    cache_images: bool = typer.Option(False, "--cache-images", help="Keep each image's tensors in memory after first use (small image sets, several epochs)."),
    report_to: str = REPORT_TO,
    force: bool = FORCE,
    allow_pickle: bool = ALLOW_PICKLE,
) -> None:
    """Train one stage; rerun the same command to resume. Works under `accelerate launch`.

    The loss curve goes to train_log.jsonl and report.html, final and best loss to metrics.json.

    Example: annotaudit lvlm train --model minerva-llava --data blip_laion_cc_sbu_558k_it.json --images images/ --stage pretrain --out stage1 --batch-size 32
    """
    from annotaudit.lvlm.train import train

    path = train(model, data, images, out, stage, lr=lr, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, lora=lora,
                     tune_vision=tune_vision, seed=seed, vision_lr=vision_lr, gradient_checkpointing=gradient_checkpointing,
                     precision=precision, max_length=max_length, save_every=save_every, force=force,
                     num_workers=num_workers, group_by_length=group_by_length, cache_images=cache_images, allow_pickle=allow_pickle,
                     report_to=report_to)
    typer.echo(f"trained model in {path}; loss curve in {path / 'report.html'}")


@app.command("eval")
@with_engine
def lvlm_eval_command(
    model: str = MODEL,
    task: str = typer.Option(..., "--task", help="gqa-it, mtvqa-it, exams-v-it, or a JSON/JSONL file of {id, image, question, answer}."),
    images: Path = typer.Option(None, "--images", help="Folder the images are relative to."),
    out: Path = RUN_FOLDER,
    data: Path = typer.Option(None, "--data", help="The local question file of a named task."),
    formatting: str = typer.Option("all", help="all, or some of post, pre-swap, post-swap, pre (comma-separated)."),
    batch_size: int = typer.Option(8, help="Prompts per batch (a question's formattings always go together)."),
    max_new_tokens: int = typer.Option(16),
    limit: int = typer.Option(None, help="Only the first N questions."),
    device: str = typer.Option(None, help="cuda, mps or cpu (default: the best there is)."),
    force: bool = FORCE,
    engine: EngineOptions = None,
) -> None:
    """Greedy VQA under the four Italian formattings: exact and approximate match, mean, std, worst.

    Example: annotaudit lvlm eval --model stage2 --task gqa-it --data gqa-it/testdev_balanced_questions.json --images gqa/images --out eval-gqa
    """
    from annotaudit.lvlm.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(model, task, images, formatting=formatting, data=data, batch_size=batch_size, max_new_tokens=max_new_tokens, limit=limit)
    s = evaluate(cfg, out, force=force, device=device, engine=engine)
    _print_scores(s)
    typer.echo(f"report: {out / 'report.html'}")


@app.command("score")
def lvlm_score_command(run: Path = typer.Option(..., "--run", help="A finished `lvlm eval` run folder.")) -> None:
    """Score a finished evaluation again from its records.jsonl, without the model (rewrites metrics.json and the report).

    Example: annotaudit lvlm score --run eval-gqa
    """
    from annotaudit.lvlm.evaluate import rescore_eval

    _print_scores(rescore_eval(run))
    typer.echo(f"report: {run / 'report.html'}")


def _print_scores(s: dict) -> None:
    for f, v in s["formattings"].items():
        typer.echo(f"{f:10s} exact {v['exact']:.3f}  approx {v['approx']:.3f}")
    typer.echo(f"mean {s['mean_exact']:.3f} ± {s['std_exact']:.3f}; worst {s['worst']}: exact {s['worst_exact']:.3f} -> approx {s['worst_approx']:.3f}")
