"""Training and evaluation over accelerate: the same loop on a CPU, one GPU or many.

AdamW with linear warmup and decay, early stopping on the task's dev metric, the best model saved as
safetensors, and a checkpoint (model, optimizer, scheduler, trainer state) after every epoch, so a
killed run resumes from its last finished epoch. Each epoch reseeds from (seed, epoch), so a resumed
run follows the same path as one that was never stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model

from annotaudit.core.checkpoint import load_state, recover, save_state
from annotaudit.core.errors import InputError, require_minimum
from annotaudit.core.io import JsonlLog, read_json, write_json, write_jsonl
from annotaudit.core.report import Report
from annotaudit.core.runner import METRICS, RECORDS, REPORT_FILES, make_record
from annotaudit.core.runs import RunDir, console, progress
from annotaudit.core.tasks import Task
from annotaudit.core.tracking import TRACKING_OUTPUTS, accelerator_kwargs, check_report_to, start_tracking, stop_tracking
from annotaudit.models.base import load_image

from .data import Example, as_task, load_splits, read_llm_labels, relabel, to_sample
from .metrics import decide, target_array, task_metrics
from .mmbt import MMBT, POOL_SHAPES, WEIGHTS_FILE, MMBTConfig, SequenceBuilder, load_encoders, save_classifier, uses_segments

HISTORY = "history.jsonl"
OUTPUTS = ["model", "model.tmp", "model.old", "checkpoint", "checkpoint.tmp", "checkpoint.old", HISTORY, METRICS, RECORDS, *REPORT_FILES,
           *TRACKING_OUTPUTS]


@dataclass
class ClassifierTrainConfig:
    """Encoders and training flags; the defaults follow the study (BERT-base, ResNet-152, 3 image tokens)."""

    text_encoder: str = "bert-base-uncased"
    image_encoder: str = "microsoft/resnet-152"
    num_image_embeds: int = 3
    max_length: int = 128
    epochs: int = 10
    batch_size: int = 16
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    patience: int = 3
    freeze_text_epochs: int = 0
    freeze_image_epochs: int = 1
    seed: int = 0
    cpu: bool = False
    allow_pickle: bool = False  # load encoders that have only pickle weights (the user's explicit opt-in)
    report_to: str = "none"  # also log each epoch to a dashboard: none, tensorboard (<out>/tensorboard) or wandb

    def __post_init__(self) -> None:
        """Refuse a value that cannot train, before any encoder or data is read."""
        if self.num_image_embeds not in POOL_SHAPES:
            raise InputError(f"--num-image-embeds must be from {min(POOL_SHAPES)} to {max(POOL_SHAPES)} (got {self.num_image_embeds})")
        require_minimum(self, ("max_length", "epochs", "batch_size", "patience"), 1)
        require_minimum(self, ("lr", "weight_decay", "freeze_text_epochs", "freeze_image_epochs"), 0)
        if not 0 <= self.warmup_ratio <= 1:
            raise InputError(f"warmup_ratio is a share of the steps, from 0 to 1 (got {self.warmup_ratio})")
        check_report_to(self.report_to)


class Batcher:
    """Turns examples into model inputs; caches pooled image features while the image encoder is frozen."""

    def __init__(self, task: Task, builder: SequenceBuilder, processor: Any, device: torch.device):
        self.task, self.builder, self.processor, self.device = task, builder, processor, device
        self.encoded: dict[str, dict[str, Any]] = {}
        self.features: dict[str, torch.Tensor] = {}

    def encode(self, ex: Example) -> dict[str, Any]:
        if ex.id not in self.encoded:
            self.encoded[ex.id] = self.builder.encode(ex.text, ex.image is not None, ex.text_pair)
        return self.encoded[ex.id]

    def pixels(self, examples: list[Example]) -> torch.Tensor:
        images = []
        for ex in examples:
            try:
                images.append(load_image(ex.image))
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read image {ex.image}: {exc}", item=ex.id) from None
        return self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)

    def cached_features(self, model: MMBT, examples: list[Example]) -> torch.Tensor:
        todo = [ex for ex in examples if str(ex.image) not in self.features]
        if todo:
            with torch.no_grad():
                feats = model.image_features(self.pixels(todo))
            for ex, f in zip(todo, feats):
                self.features[str(ex.image)] = f
        return torch.stack([self.features[str(ex.image)] for ex in examples])

    def inputs(self, model: MMBT, examples: list[Example], frozen_image: bool, with_labels: bool = True) -> dict[str, torch.Tensor]:
        batch = {k: v.to(self.device) for k, v in self.builder.collate([self.encode(ex) for ex in examples]).items()}
        with_image = [ex for ex in examples if ex.image is not None]
        if with_image:
            if frozen_image:
                batch["image_feats"] = self.cached_features(model, with_image)
            else:
                batch["pixel_values"] = self.pixels(with_image)
        if with_labels:
            batch["labels"] = torch.as_tensor(target_array(self.task, [ex.target for ex in examples])).to(self.device)
        return batch


def positive_weights(task: Task, examples: list[Example]) -> torch.Tensor:
    """Negatives over positives per class, as BCE's pos_weight; a class never seen gets weight 1."""
    y = target_array(task, [ex.target for ex in examples]).astype(np.float64)
    pos = y.sum(axis=0)
    neg = len(y) - pos
    return torch.tensor(np.where(pos > 0, neg / np.maximum(pos, 1), 1.0), dtype=torch.float32)


@torch.no_grad()
def predict_probs(model: MMBT, batcher: Batcher, examples: list[Example], batch_size: int, frozen_image: bool = True) -> np.ndarray:
    """Class probabilities for examples, in order; features cached when the image encoder is frozen."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        logits = model(**batcher.inputs(model, chunk, frozen_image, with_labels=False))["logits"]
        out.append(model.probabilities(logits).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, len(model.config.labels)))


# checkpoints -------------------------------------------------------------------------------


def save_checkpoint(folder: Path, model: MMBT, optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any]) -> None:
    """Everything to resume (weights, optimizer, scheduler, RNG states), as safetensors plus JSON, written whole."""
    save_state(folder, optimizer, scheduler, state, model.state_dict())


def load_checkpoint(folder: Path, model: MMBT, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any] | None:
    """Restore the last checkpoint into model, optimizer and scheduler; the trainer state, or None."""
    restored = load_state(folder, optimizer, scheduler)
    if restored is None:
        return None
    trainer, params = restored
    missing, unexpected = model.load_state_dict(params, strict=False)
    if missing or unexpected:
        raise InputError(f"the checkpoint holds other weights than this model has (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                         "--force starts the run over", path=folder)
    return trainer


# training ----------------------------------------------------------------------------------


def _score(task: Task, metrics: dict[str, float]) -> list[float]:
    """The primary dev metric, ties broken by the others (AUROC saturates long before accuracy does)."""
    names = [task.primary] + [m for m in task.metrics if m != task.primary]
    return [-math.inf if metrics.get(m) is None or metrics[m] != metrics[m] else metrics[m] for m in names]


def _batches(n: int, batch_size: int, seed: int, epoch: int, process: int, processes: int) -> list[list[int]]:
    """This process's share of a (seed, epoch)-shuffled order; every process gets the same count."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if processes > 1:
        batches = batches[: max(processes, len(batches) - len(batches) % processes)]
        batches = [batches[i % len(batches)] for i in range(len(batches) + (-len(batches)) % processes)]
    return batches[process::processes]


def train_classifier(task: Task, train: list[Example], dev: list[Example], test: list[Example], cfg: ClassifierTrainConfig,
                     out: str | Path, force: bool = False, extra_config: dict[str, Any] | None = None,
                     inputs: dict[str, str | Path | None] | None = None) -> dict[str, Any]:
    """Train MMBT, stop early on dev, evaluate the best model on test; returns (and writes) metrics.json.

    `inputs` (name -> file or folder) are fingerprinted into run.json, so an edited one is refused unless `force`.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from transformers import get_linear_schedule_with_warmup

    out = Path(out)
    config = {"task": task.name, **asdict(cfg), **(extra_config or {})}
    config.pop("cpu")
    config.pop("allow_pickle")
    config.pop("report_to")  # where it logs, not what it trains: a resumed run may report elsewhere
    run = RunDir(out, config, kind="classify", inputs=inputs, items=len(test), force=force, outputs=OUTPUTS, start=False)
    for folder in ("model", "checkpoint"):  # a swap a kill interrupted: the intact copy goes back in place
        recover(out / folder)
    if (out / METRICS).is_file() and not run.holds_other_run():
        return read_json(out / METRICS)
    accelerator = Accelerator(cpu=cfg.cpu, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
                              **accelerator_kwargs(cfg.report_to, out))
    set_seed(cfg.seed)
    has_images = any(ex.image is not None for ex in train + dev + test)
    text_model, tokenizer, image_model, processor = load_encoders(cfg.text_encoder, cfg.image_encoder if has_images else None, cfg.allow_pickle)
    mcfg = MMBTConfig(list(task.classes), task.classes_multi_label, cfg.num_image_embeds, cfg.max_length, task=task.name,
                      text_encoder=cfg.text_encoder, image_encoder=cfg.image_encoder if has_images else None)
    model = MMBT(text_model, image_model, mcfg)
    if task.classes_multi_label:
        model.pos_weight.copy_(positive_weights(task, train))
    builder = SequenceBuilder(tokenizer, cfg.num_image_embeds, cfg.max_length, uses_segments(text_model))
    batcher = Batcher(task, builder, processor, accelerator.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(_batches(len(train), cfg.batch_size, cfg.seed, 0, accelerator.process_index, accelerator.num_processes))
    total = max(1, steps_per_epoch * cfg.epochs)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    run.start()  # inputs and encoders loaded: only now does the folder take this configuration
    start_tracking(accelerator, cfg.report_to, "classify", out, config)
    state = load_checkpoint(out / "checkpoint", model, optimizer, scheduler) or {"epoch": 0, "best": None, "best_epoch": None, "bad_epochs": 0, "best_dev": {}}
    if state["epoch"]:
        console.print(f"resuming {out} after epoch {state['epoch']}")
    model, optimizer = accelerator.prepare(model, optimizer)
    core: MMBT = accelerator.unwrap_model(model)
    history = JsonlLog(run.path / HISTORY, key="epoch")
    if accelerator.is_main_process:  # epochs logged after the checkpoint we resume from are trained again
        write_jsonl(history.path, [h for h in history if h["epoch"] <= state["epoch"]])
    started, seen = time.time(), 0
    for epoch in range(state["epoch"], cfg.epochs):
        if state["bad_epochs"] >= cfg.patience:
            break
        set_seed(cfg.seed * 100_003 + epoch)
        frozen_image = epoch < cfg.freeze_image_epochs
        if not frozen_image:
            batcher.features.clear()  # the image encoder changes from here on
        core.freeze(text=epoch < cfg.freeze_text_epochs, image=frozen_image)
        model.train()
        losses = []
        batches = _batches(len(train), cfg.batch_size, cfg.seed, epoch, accelerator.process_index, accelerator.num_processes)
        with progress(f"epoch {epoch + 1}/{cfg.epochs}", len(batches)) as advance:
            for idx in batches:
                inputs = batcher.inputs(core, [train[i] for i in idx], frozen_image)
                loss = model(**inputs)["loss"]
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                losses.append(float(loss.detach()))
                seen += len(idx)
                advance(1)
        dev_metrics = task_metrics(task, predict_probs(core, batcher, dev, cfg.batch_size, frozen_image), [ex.target for ex in dev])
        score = _score(task, dev_metrics)
        improved = state["best"] is None or score > state["best"]
        if improved:
            state.update(best=score, best_epoch=epoch + 1, bad_epochs=0, best_dev=dev_metrics)
            if accelerator.is_main_process:
                save_classifier(core, out / "model", tokenizer, processor)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        if accelerator.is_main_process:
            history.append([{"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None, **{f"dev_{k}": v for k, v in dev_metrics.items()}}])
            save_checkpoint(out / "checkpoint", core, optimizer, scheduler, state)
        accelerator.log(_epoch_figures(losses, scheduler.get_last_lr()[0], seen / max(time.time() - started, 1e-9), dev_metrics), step=epoch + 1)
        accelerator.wait_for_everyone()
        console.print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, dev {task.primary} {dev_metrics[task.primary]:.4f}{' (best)' if improved else ''}")
    return _finish(task, core, batcher, test, cfg, out, run, state, accelerator, seen / max(time.time() - started, 1e-9), len(train), len(dev))


def _finish(task: Task, model: MMBT, batcher: Batcher, test: list[Example], cfg: ClassifierTrainConfig, out: Path, run: RunDir,
            state: dict[str, Any], accelerator: Any, throughput: float, n_train: int, n_dev: int) -> dict[str, Any]:
    """Reload the best model, score the test split; write metrics.json, records.jsonl and the report."""
    load_model(model, str(out / "model" / WEIGHTS_FILE), strict=False)
    batcher.features.clear()  # features of the best model, cached for this pass
    probs = predict_probs(model, batcher, test, cfg.batch_size, frozen_image=True)
    metrics = task_metrics(task, probs, [ex.target for ex in test])
    history = JsonlLog(out / HISTORY).read()
    losses = [h["train_loss"] for h in history if h.get("train_loss") is not None]
    result = {**metrics, "task": task.name, "primary": task.primary, "n_train": n_train, "n_dev": n_dev, "n_test": len(test),
              "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "dev": state["best_dev"], "seed": cfg.seed,
              "final_loss": losses[-1] if losses else None, "best_loss": min(losses) if losses else None}
    if accelerator.is_main_process:
        records = [make_record(to_sample(ex), plain_label(p), None, dict(zip(task.classes, map(float, row))))
                   for ex, p, row in zip(test, decide(task, probs), probs)]
        write_jsonl(out / RECORDS, records)
        write_json(out / METRICS, result)
        train_report(task, result, history).write(out)
        run.finish(train_items_per_s=round(throughput, 2), best_epoch=state["best_epoch"])
    accelerator.log({f"test/{k}": v for k, v in metrics.items() if isinstance(v, int | float) and v == v}, step=state["epoch"])
    stop_tracking(accelerator)
    return result


def _epoch_figures(losses: list[float], lr: float, items_per_s: float, dev: dict[str, Any]) -> dict[str, float]:
    """One epoch as a dashboard sees it: history.jsonl's loss and dev metrics, with the learning rate and throughput."""
    figures = {"train/loss": float(np.mean(losses)) if losses else None, "train/lr": lr, "train/items_per_s": items_per_s,
               **{f"dev/{k}": v for k, v in dev.items()}}
    return {k: v for k, v in figures.items() if isinstance(v, int | float) and v == v}


def plain_label(label: str | tuple[str, ...]) -> str | list[str]:
    """A label as JSON writes it: a string, or a list for multi-label tasks."""
    return list(label) if isinstance(label, tuple) else label


def train_report(task: Task, result: dict[str, Any], history: list[dict[str, Any]]) -> Report:
    """Test and dev metrics of the best model, and each epoch's loss and dev metrics."""
    report = Report(f"MMBT on {task.name}")
    report.text(f"{result['n_train']} training, {result['n_dev']} dev and {result['n_test']} test items; the best epoch by dev "
                f"{task.primary} is {result['best_epoch']} of {result['epochs_run']} run (seed {result['seed']}).")
    names = [m for m in task.metrics if m in result] + [m for m in ("accuracy", "macro_f1", "micro_f1", "auroc") if m in result and m not in task.metrics]
    report.heading("Metrics of the best model").table(
        [{"split": "test", **{m: result[m] for m in names}}, {"split": "dev", **{m: result["dev"].get(m) for m in names}}])
    report.heading("Epochs").table(history, caption=f"training loss: final {result['final_loss']}, lowest {result['best_loss']}")
    return report


def classify_train(task: str | Path | Task, data: str | Path, out: str | Path, cfg: ClassifierTrainConfig | None = None,
                   labels: str | Path = "human", noanswer: str = "drop", splits: list[str] | None = None, languages: str = "en",
                   force: bool = False) -> dict[str, Any]:
    """`classify train`: read the splits, swap in an annotate run's labels unless `labels` is "human", train and test.

    run.json's inputs hold fingerprints of the data, the task file (built-in tasks change only with
    annotaudit's version, which run.json records) and the labels' records, so an edited input is refused unless `force`.
    """
    spec = as_task(task)
    train, dev, test = load_splits(spec, data, splits, languages)
    extra: dict[str, Any] = {"data": str(data), "labels": str(labels), "noanswer": noanswer, "splits": list(splits or spec.splits)}
    inputs: dict[str, str | Path | None] = {"data": data, "task": task if isinstance(task, str | Path) and Path(task).is_file() else None}
    if str(labels) != "human":
        llm = read_llm_labels(spec, labels)
        train, counts = relabel(train, llm, noanswer, spec)
        inputs["labels"] = llm.path
        console.print(f"LLM labels: {counts['kept']} training items kept, {counts['noanswer']} NOANSWER, {counts['missing']} not in the run")
    return train_classifier(spec, train, dev, test, cfg or ClassifierTrainConfig(), out, force=force, extra_config=extra, inputs=inputs)
