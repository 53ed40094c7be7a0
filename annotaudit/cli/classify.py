"""`annotaudit classify ...`: MMBT trained on human labels against LLM labels."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from .options import ALLOW_PICKLE, FORCE, REPORT_TO

app = typer.Typer(help="Train MMBT on human labels and on LLM labels, and compare.", no_args_is_help=True)

TASK_HELP = "hateful_memes, mmimdb (drama/comedy as two labels), mmimdb_genres (23 genres), xnli, or a .yaml/.toml task file."
DATA_HELP = ("Dataset: Hateful Memes (<split>.jsonl + img/), MM-IMDB (split.json + dataset/), a folder with xnli.dev.tsv and "
             "xnli.test.tsv, or for a task file with the generic dataset a folder of <split>.jsonl/.csv or one file with a 'split' field.")
NOANSWER_HELP = "What to do with items an LLM left unanswered: 'drop' them from training (default), or give them this label instead."


def _config(text_encoder: str, image_encoder: str, num_image_embeds: int, epochs: int, batch_size: int, lr: float, seed: int,
            patience: int, freeze_text_epochs: int, freeze_image_epochs: int, max_length: int, cpu: bool, allow_pickle: bool = False,
            report_to: str = "none"):
    from annotaudit.classifiers.train import ClassifierTrainConfig

    return ClassifierTrainConfig(text_encoder=text_encoder, image_encoder=image_encoder, num_image_embeds=num_image_embeds,
                                 max_length=max_length, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                                 freeze_text_epochs=freeze_text_epochs, freeze_image_epochs=freeze_image_epochs, seed=seed, cpu=cpu,
                                 allow_pickle=allow_pickle, report_to=report_to)


def _split_names(value: str | None) -> list[str] | None:
    names = [s.strip() for s in value.split(",")] if value else None
    if names is not None and len(names) != 3:
        raise typer.BadParameter("--splits takes three names: train,dev,test")
    return names


# Options shared by train and compare.
TEXT_ENCODER = typer.Option("bert-base-uncased", help="BERT-family text encoder: hub id or local path.")
IMAGE_ENCODER = typer.Option("microsoft/resnet-152", help="ResNet image encoder: hub id or local path.")
NUM_IMAGE_EMBEDS = typer.Option(3, help="Image tokens the feature map is pooled to (1-9).")
EPOCHS = typer.Option(10, help="Most epochs (early stopping may end sooner).")
BATCH_SIZE = typer.Option(16, help="Items per optimizer step (per process).")
LR = typer.Option(5e-5, help="AdamW peak learning rate (linear warmup over 10% of steps, then linear decay).")
SEED = typer.Option(0, help="Seed (compare: the first of --seeds consecutive seeds).")
PATIENCE = typer.Option(3, help="Stop after this many epochs without a better dev metric.")
FREEZE_TEXT = typer.Option(0, help="Epochs the text encoder stays frozen at the start.")
FREEZE_IMAGE = typer.Option(1, help="Epochs the image encoder stays frozen at the start (its features are cached meanwhile).")
MAX_LENGTH = typer.Option(128, help="Longest input in tokens, image tokens included.")
SPLITS = typer.Option(None, help="train,dev,test split names (default the task's: Hateful Memes train,dev_seen,test_unseen; others train,dev,test).")
LANGUAGES = typer.Option("en", help="XNLI languages, comma-separated.")
CPU = typer.Option(False, help="Train on the CPU even when a GPU is present.")


@app.command("train")
def classify_train_command(
    task: str = typer.Option(..., help=TASK_HELP),
    data: Path = typer.Option(..., help=DATA_HELP),
    labels: str = typer.Option("human", help="'human', or an annotate run dir whose records.jsonl gives the training labels."),
    out: Path = typer.Option(..., help="Output dir: model/ (safetensors), checkpoint/, history.jsonl, records.jsonl (test), metrics.json, report.md/html, run.json."),
    noanswer: str = typer.Option("drop", help=NOANSWER_HELP),
    text_encoder: str = TEXT_ENCODER, image_encoder: str = IMAGE_ENCODER, num_image_embeds: int = NUM_IMAGE_EMBEDS,
    epochs: int = EPOCHS, batch_size: int = BATCH_SIZE, lr: float = LR, seed: int = SEED, patience: int = PATIENCE,
    freeze_text_epochs: int = FREEZE_TEXT, freeze_image_epochs: int = FREEZE_IMAGE, max_length: int = MAX_LENGTH,
    splits: str = SPLITS, languages: str = LANGUAGES, cpu: bool = CPU, force: bool = FORCE, allow_pickle: bool = ALLOW_PICKLE,
    report_to: str = REPORT_TO,
) -> None:
    """Train MMBT on human labels or on an annotate run's labels; evaluate on the human test split. Rerun to resume.

    Example: annotaudit classify train --task hateful_memes --data data/hateful_memes --labels runs/hm-instructblip --out cls/hm-llm
    """
    from annotaudit.classifiers.train import classify_train

    cfg = _config(text_encoder, image_encoder, num_image_embeds, epochs, batch_size, lr, seed, patience, freeze_text_epochs,
                  freeze_image_epochs, max_length, cpu, allow_pickle, report_to)
    result = classify_train(task, data, out, cfg, labels=labels, noanswer=noanswer, splits=_split_names(splits), languages=languages, force=force)
    shown = ", ".join(f"{m}={result[m]:.3f}" for m in ("auroc", "accuracy", "micro_f1", "macro_f1") if m in result)
    Console(soft_wrap=True).print(f"test: {shown} (best epoch {result['best_epoch']}); wrote {out / 'metrics.json'} and {out / 'report.md'}")


@app.command("compare")
def classify_compare_command(
    task: str = typer.Option(..., help=TASK_HELP),
    data: Path = typer.Option(..., help=DATA_HELP),
    runs: list[str] = typer.Option(..., help="Annotate run dirs; repeat --runs, or separate with commas."),
    seeds: int = typer.Option(3, help="Trainings per label source, with seeds --seed, --seed+1, ..."),
    out: Path = typer.Option(..., help="Output dir: report.md, report.html, metrics.json, one training dir per source and seed."),
    noanswer: str = typer.Option("drop", help=NOANSWER_HELP),
    text_encoder: str = TEXT_ENCODER, image_encoder: str = IMAGE_ENCODER, num_image_embeds: int = NUM_IMAGE_EMBEDS,
    epochs: int = EPOCHS, batch_size: int = BATCH_SIZE, lr: float = LR, seed: int = SEED, patience: int = PATIENCE,
    freeze_text_epochs: int = FREEZE_TEXT, freeze_image_epochs: int = FREEZE_IMAGE, max_length: int = MAX_LENGTH,
    splits: str = SPLITS, languages: str = LANGUAGES, cpu: bool = CPU, force: bool = FORCE, allow_pickle: bool = ALLOW_PICKLE,
) -> None:
    """Train on human labels and on each LLM run with the same seeds, test all on human labels, and report.

    Example: annotaudit classify compare --task mmimdb --data data/mmimdb --runs runs/mm-flan-t5 --runs runs/mm-vicuna --seeds 3 --out cls/mm
    """
    from annotaudit.classifiers.label_sources import classify_compare

    run_dirs = [r.strip() for value in runs for r in value.split(",") if r.strip()]
    cfg = _config(text_encoder, image_encoder, num_image_embeds, epochs, batch_size, lr, seed, patience, freeze_text_epochs,
                  freeze_image_epochs, max_length, cpu, allow_pickle)
    metrics = classify_compare(task, data, run_dirs, out, seeds, cfg, noanswer=noanswer, splits=_split_names(splits), languages=languages, force=force)
    console = Console(soft_wrap=True)
    for name, res in metrics["results"].items():
        shown = ", ".join(f"{m}={res[m]['mean']:.3f}±{res[m]['std']:.3f}" for m in metrics["metrics"] if m in res)
        console.print(f"{name}: {shown}")
    console.print(f"wrote {out / 'report.md'}, {out / 'report.html'} and {out / 'metrics.json'}")


@app.command("predict")
def classify_predict_command(
    model: Path = typer.Option(..., help="A `classify train` output dir, or its model/ folder."),
    data: Path = typer.Option(..., help="A .jsonl/.csv of {id, text, [image]}, or a dataset with --task (and --split)."),
    out: Path = typer.Option(..., help="Output dir: records.jsonl (prediction, scores: each class's probability), metrics.json, run.json."),
    task: str = typer.Option(None, help="Read --data as this task's dataset (see train)."),
    split: str = typer.Option(None, help="The split to label when --task is given (default the task's test split)."),
    languages: str = LANGUAGES,
    batch_size: int = BATCH_SIZE,
    force: bool = FORCE,
) -> None:
    """Reload a trained classifier (safetensors) and label new items. Rerun to resume.

    Example: annotaudit classify predict --model cls/hm-llm --data new_memes.jsonl --out cls/hm-llm-new
    """
    from annotaudit.classifiers.predict import classify_predict

    metrics = classify_predict(model, data, out, task=task, split=split, languages=languages, batch_size=batch_size, force=force)
    Console(soft_wrap=True).print(f"labelled {metrics['n']} items; wrote {out / 'records.jsonl'} and {out / 'metrics.json'}")
