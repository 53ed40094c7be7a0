"""Two-stage LLaVA-NeXT training as a short accelerate loop: stage 1 (pretrain) tunes the projector,
stage 2 (finetune) the projector and the LLM, optionally the vision tower (own lr) or LoRA adapters.

Works as is under `accelerate launch` (CPU processes with gloo, GPUs, DeepSpeed ZeRO-3 through
annotaudit/lvlm/configs/). Every checkpoint is a stock-loadable model; the newest also holds the optimizer,
scheduler and RNG state, and a rerun with the same --out resumes from it.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import AutoProcessor, LlavaNextForConditionalGeneration, get_cosine_schedule_with_warmup
from transformers.trainer_pt_utils import get_length_grouped_indices

from annotaudit.core.checkpoint import STATE, beside, files_written_into, load_state, recover, save_state, swap_in
from annotaudit.core.errors import InputError, require_minimum
from annotaudit.core.io import JsonlLog, read_json, write_json, write_jsonl, writing
from annotaudit.core.runs import ConfigMismatch, RunDir, progress
from annotaudit.core.tracking import TRACKING_OUTPUTS, accelerator_kwargs, start_tracking, stop_tracking
from annotaudit.models.registry import check_model_folder, loading

from .data import IGNORE, ConversationDataset, collate, load_conversations

STAGES = ("pretrain", "finetune")
PRECISIONS = ("auto", "bf16", "fp16", "no")
DEFAULT_LR = {"pretrain": 1e-3, "finetune": 1e-5}
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
STATE_DIR = "train_state"
FINAL_TMP = "model.tmp"  # the trained model is written here whole, then moved into the run folder
LOG, METRICS = "train_log.jsonl", "metrics.json"
OUTPUTS = ["checkpoints", FINAL_TMP, LOG, METRICS, "report.md", "report.html", "report_files", *TRACKING_OUTPUTS]


@dataclass
class TrainConfig:
    """Everything that defines a run; a rerun with the same --out must match it to resume."""

    model: str
    data: str
    images: str | None
    stage: str
    lr: float
    vision_lr: float = 2e-6
    epochs: int = 1
    batch_size: int = 1
    grad_accum: int = 1
    lora: int | None = None
    tune_vision: bool = False
    gradient_checkpointing: bool = False
    precision: str = "auto"
    max_length: int = 2048
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    save_every: int = 0
    seed: int = 0
    group_by_length: bool = False

    def __post_init__(self) -> None:
        """Refuse a value that cannot train, before any model or data is read."""
        if self.stage not in STAGES:
            raise InputError(f"--stage {self.stage!r}: use pretrain or finetune")
        if self.stage == "pretrain" and (self.lora or self.tune_vision):
            raise InputError("stage 1 (pretrain) trains only the projector: --lora and --tune-vision belong to finetune")
        require_minimum(self, ("epochs", "batch_size", "grad_accum", "max_length"), 1)
        require_minimum(self, ("lr", "vision_lr", "weight_decay", "save_every"), 0)
        if self.lora is not None and self.lora < 1:
            raise InputError(f"--lora is a rank of at least 1 (got {self.lora})")
        if not 0 <= self.warmup_ratio <= 1:
            raise InputError(f"warmup_ratio is a share of the steps, from 0 to 1 (got {self.warmup_ratio})")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision!r}: use {', '.join(PRECISIONS)}")


def _mixed_precision(choice: str) -> str:
    """'auto': what `accelerate launch` asked for, else bf16 on GPUs that have it, else full fp32."""
    if choice != "auto":
        return choice
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return os.environ["ACCELERATE_MIXED_PRECISION"]
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def set_trainable(model: LlavaNextForConditionalGeneration, stage: str, tune_vision: bool) -> None:
    """Stage 1: projector only. Stage 2: projector, image_newline and the LLM (+ vision tower if asked)."""
    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)
    if stage == "finetune":
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
        model.model.image_newline.requires_grad_(True)
        model.model.vision_tower.requires_grad_(tune_vision)


def add_lora(model: Any, rank: int, tune_vision: bool = False) -> Any:
    """LoRA on the LLM's linear layers; projector, image_newline (and a tuned tower) stay fully trainable."""
    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings():  # peft still reads the attribute transformers renamed; nothing the user can act on
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=LORA_TARGETS))
    base = peft_model.get_base_model()
    base.model.multi_modal_projector.requires_grad_(True)
    base.model.image_newline.requires_grad_(True)
    base.model.vision_tower.requires_grad_(tune_vision)
    return peft_model


def param_groups(model: torch.nn.Module, lr: float, vision_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """The vision tower gets its own learning rate; frozen parameters stay out of the optimizer."""
    vision, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (vision if ".vision_tower." in f".{name}" else rest).append(p)
    groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay}]
    if vision:
        groups.append({"params": vision, "lr": vision_lr, "weight_decay": weight_decay})
    return groups


def _merged_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A PeftModel's (already merged) state dict under the plain model's keys."""
    out = {}
    for key, value in state.items():
        if "lora_" in key:
            continue
        key = key.removeprefix("base_model.model.").replace(".base_layer.", ".")
        out[key] = value
    return out


def save_model(accelerator: Accelerator, model: Any, processor: Any, dest: Path, lora: bool) -> None:
    """Save a stock-loadable LlavaNext checkpoint (LoRA merged in); gathers ZeRO-3 shards. A failed write names `dest`."""
    unwrapped = accelerator.unwrap_model(model)
    if lora:
        unwrapped.merge_adapter()
    state = accelerator.get_state_dict(model)
    if lora:
        unwrapped.unmerge_adapter()
        state = _merged_state_dict(state)
        unwrapped = unwrapped.get_base_model()
    if accelerator.is_main_process:
        with writing(dest):
            dest.mkdir(parents=True, exist_ok=True)
            unwrapped.save_pretrained(dest, state_dict=state, save_function=accelerator.save)
            processor.save_pretrained(dest)
    accelerator.wait_for_everyone()


def _save_final(accelerator: Accelerator, model: Any, processor: Any, out: Path, lora: bool) -> None:
    """The trained model into the run folder itself: written whole beside it, then each file moved in."""
    if accelerator.is_main_process:
        with files_written_into(out, FINAL_TMP) as tmp:
            save_model(accelerator, model, processor, tmp, lora)
    else:
        save_model(accelerator, model, processor, out / FINAL_TMP, lora)  # gathers shards; only the main process writes


def _resume(accelerator: Accelerator, model: Any, optimizer: Any, scheduler: Any, state_dir: Path) -> None:
    """Trainable weights, optimizer, scheduler and RNG states from safetensors and JSON (never a pickle)."""
    mine = state_dir / f"process-{accelerator.process_index}"
    restored = load_state(mine, optimizer, scheduler)
    if restored is None:
        saved = [p for p in state_dir.glob("process-*") if re.fullmatch(r"process-\d+", p.name)]
        if saved and len(saved) != accelerator.num_processes:
            raise InputError(f"the resume state was saved by {len(saved)} processes and this run has {accelerator.num_processes}: "
                             f"launch it with {len(saved)}, or pass --force to start over", path=state_dir)
        raise InputError("the resume state is missing (deleted or never written); restore it, or pass --force to start over", path=mine / STATE)
    _, params = restored
    trainable = {n: p for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
    if set(params) != set(trainable):
        raise InputError("the resume state holds other trainable weights than this run trains", path=state_dir)
    with torch.no_grad():
        for name, param in trainable.items():
            param.copy_(params[name].to(param.device, param.dtype))


def _steps(out: Path) -> list[Path]:
    """The finished checkpoints/step-N folders, oldest first (not the .tmp or .old copies of a swap)."""
    found = [p for p in (out / "checkpoints").glob("step-*") if re.fullmatch(r"step-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _latest_state(out: Path) -> Path | None:
    found = [p / STATE_DIR for p in _steps(out) if (p / STATE_DIR / "progress.json").is_file()]
    return found[-1] if found else None


def _remove_partial_writes(out: Path) -> None:
    """What a kill or a full disk left half done: a checkpoint swap is finished or undone, a half-written model goes."""
    for folder in (out / "checkpoints").glob("step-*"):
        if folder.suffix in (".tmp", ".old"):
            recover(folder.with_suffix(""))
    shutil.rmtree(out / FINAL_TMP, ignore_errors=True)


def _check_samples(dataset: ConversationDataset, accelerator: Accelerator) -> None:
    """Encode every sample before training, on every process: each needs the lengths and the text."""
    if accelerator.is_main_process:
        with progress("checking samples", len(dataset)) as advance:
            dataset.check(advance)
    else:
        dataset.check()


def _epoch_loader(dataset: ConversationDataset, cfg: TrainConfig, epoch: int, pad_id: int, num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A fixed order per epoch (seed + epoch), so a resumed run sees the same batches.

    `group_by_length` batches samples of similar length (transformers' megabatch grouping, as
    LLaVA's scripts do), which cuts the padding each batch computes; the batches then come in random
    order rather than long to short within each megabatch (the partial batch stays last)."""
    gen = torch.Generator().manual_seed(cfg.seed + epoch)
    if not cfg.group_by_length:
        order = torch.randperm(len(dataset), generator=gen).tolist()
    else:
        grouped = get_length_grouped_indices(dataset.lengths, cfg.batch_size, generator=gen)
        full = len(grouped) // cfg.batch_size * cfg.batch_size
        batches = [grouped[i : i + cfg.batch_size] for i in range(0, full, cfg.batch_size)]
        order = [i for b in torch.randperm(len(batches), generator=gen).tolist() for i in batches[b]] + grouped[full:]
    return torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, order), batch_size=cfg.batch_size,
                                       collate_fn=functools.partial(collate, pad_id=pad_id), shuffle=False, num_workers=num_workers)


def _accelerator(cfg: TrainConfig, report_to: str, out: Path) -> Accelerator:
    """A fresh Accelerator per call, so one process (a demo, a benchmark) can train several times."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()  # keeps the process group; drops the previous run's precision and plugins
    GradientState._reset_state()
    return Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=_mixed_precision(cfg.precision),
                       **accelerator_kwargs(report_to, out))


def train(model_dir: str | Path, data_json: str | Path, images_dir: str | Path | None, out: str | Path, stage: str,
          lr: float | None = None, epochs: int = 1, batch_size: int = 1, grad_accum: int = 1, lora: int | None = None,
          tune_vision: bool = False, seed: int = 0, vision_lr: float = 2e-6, gradient_checkpointing: bool = False,
          precision: str = "auto", max_length: int = 2048, save_every: int = 0, warmup_ratio: float = 0.03,
          weight_decay: float = 0.0, force: bool = False, max_steps: int | None = None, num_workers: int = 0,
          group_by_length: bool = False, cache_images: bool = False, allow_pickle: bool = False, report_to: str = "none") -> Path:
    """Train one stage; the trained model is saved in `out` itself (loadable by path). Returns `out`.

    `max_steps` stops early (benchmarks, interrupted-run tests) without changing the schedule.
    `num_workers` processes prepare batches (images through the image processor) while the model
    trains; `cache_images` keeps each image's tensors after first use (each worker keeps its own).
    Neither changes the batches, and so neither changes the results. `allow_pickle` loads a model
    that has only pickle weights (the user's explicit opt-in). `report_to` (none, tensorboard, wandb)
    also sends each step's loss, learning rate and throughput to a dashboard; TensorBoard's files go in `out`/tensorboard.
    """
    cfg = TrainConfig(str(model_dir), str(data_json), str(images_dir) if images_dir else None, stage,
                      DEFAULT_LR.get(stage, 0.0) if lr is None else lr, vision_lr, epochs, batch_size, grad_accum, lora,
                      tune_vision, gradient_checkpointing, precision, max_length, warmup_ratio, weight_decay, save_every, seed,
                      group_by_length)
    check_model_folder(cfg.model, "--model", allow_pickle)
    out = Path(out)
    accelerator = _accelerator(cfg, report_to, out)
    records = load_conversations(cfg.data)
    run = None
    if accelerator.is_main_process:
        run = RunDir(out, asdict(cfg), kind="lvlm-train", inputs={"data": cfg.data, "images": cfg.images, "model": cfg.model},
                     force=force, outputs=OUTPUTS, start=False)
        _remove_partial_writes(out)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    with loading(cfg.model, "--model", allow_pickle):
        processor = AutoProcessor.from_pretrained(cfg.model)
    dataset = ConversationDataset(records, processor, cfg.images, cfg.max_length, cache_images=cache_images)
    _check_samples(dataset, accelerator)
    with loading(cfg.model, "--model", allow_pickle):
        model = LlavaNextForConditionalGeneration.from_pretrained(cfg.model, dtype=torch.float32, use_safetensors=None if allow_pickle else True)
    set_trainable(model, cfg.stage, cfg.tune_vision)
    if cfg.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # the newer name of the same switch
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        model = add_lora(model, cfg.lora, cfg.tune_vision)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.vision_lr, cfg.weight_decay))
    model, optimizer = accelerator.prepare(model, optimizer)
    pad_id = processor.tokenizer.pad_token_id
    per_epoch = math.ceil(len(accelerator.prepare(_epoch_loader(dataset, cfg, 0, pad_id))) / cfg.grad_accum)
    total = per_epoch * cfg.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total), total)

    if run is not None:  # inputs and model loaded: only now does the folder take this configuration
        run.start()
    accelerator.wait_for_everyone()
    start_tracking(accelerator, report_to, "lvlm-train", out, asdict(cfg))
    step, start_epoch, skip = 0, 0, 0
    latest = _latest_state(out)
    if latest is not None:
        _resume(accelerator, model, optimizer, scheduler, latest)
        done = read_json(latest / "progress.json")
        step, start_epoch, skip = done["step"], done["epoch"], done["batch"]
    log = JsonlLog(out / LOG, key="step")
    if accelerator.is_main_process:  # steps logged after the checkpoint we resume from are trained again
        write_jsonl(log.path, [r for r in log if r["step"] <= step])
    samples = tokens = 0
    started = time.time()
    model.train()
    with progress(f"training ({cfg.stage})", total) as advance:
        advance(step)
        for epoch in range(start_epoch, cfg.epochs):
            loader = accelerator.prepare(_epoch_loader(dataset, cfg, epoch, pad_id, num_workers))
            batches = accelerator.skip_first_batches(loader, skip) if skip else loader
            batch_no, skip = skip, 0
            for batch in batches:
                with accelerator.accumulate(model):
                    loss = model(**batch).loss
                    accelerator.backward(loss)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad()
                batch_no += 1
                samples += batch["input_ids"].shape[0]
                tokens += int(batch["attention_mask"].sum())
                if not accelerator.sync_gradients:
                    continue
                step += 1
                advance()
                mean_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
                if accelerator.is_main_process:
                    log.append([{"step": step, "epoch": epoch, "loss": round(mean_loss, 6), "lr": scheduler.get_last_lr()[0]}])
                accelerator.log({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0], "train/epoch": epoch,
                                 "train/samples_per_s": samples * accelerator.num_processes / max(time.time() - started, 1e-9)}, step=step)
                end_of_epoch = batch_no == len(loader)
                if (cfg.save_every and step % cfg.save_every == 0) or end_of_epoch:
                    _checkpoint(accelerator, model, optimizer, scheduler, processor, out, step, epoch + end_of_epoch,
                                0 if end_of_epoch else batch_no, bool(cfg.lora))
                if max_steps is not None and step >= max_steps:
                    return _finish(accelerator, run, out, step, samples, tokens, started, complete=False)
    _save_final(accelerator, model, processor, out, bool(cfg.lora))
    return _finish(accelerator, run, out, step, samples, tokens, started, complete=True)


def _checkpoint(accelerator: Accelerator, model: Any, optimizer: Any, scheduler: Any, processor: Any, out: Path, step: int, epoch: int,
                batch: int, lora: bool) -> None:
    """checkpoints/step-N: a loadable model plus the state to resume; older resume states are pruned.

    Every process writes into step-N.tmp, which replaces step-N only once all is written, so a full
    disk or a kill leaves the previous checkpoint to resume from, never a half-written one.
    """
    dest = out / "checkpoints" / f"step-{step}"
    tmp = beside(dest, "tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        save_model(accelerator, model, processor, tmp, lora)
        trainable = {n: p for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
        save_state(tmp / STATE_DIR / f"process-{accelerator.process_index}", optimizer, scheduler, {"step": step}, trainable)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            write_json(tmp / STATE_DIR / "progress.json", {"step": step, "epoch": epoch, "batch": batch})
            with writing(dest):
                swap_in(tmp, dest)
    except BaseException:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if accelerator.is_main_process:
        for old in _steps(out):
            if old != dest:
                shutil.rmtree(old / STATE_DIR, ignore_errors=True)
    accelerator.wait_for_everyone()


def _finish(accelerator: Accelerator, run: RunDir | None, out: Path, step: int, samples: int, tokens: int, started: float, complete: bool) -> Path:
    seconds = max(time.time() - started, 1e-9)
    totals = torch.tensor([samples, tokens], device=accelerator.device)
    samples, tokens = (int(v) for v in accelerator.reduce(totals, reduction="sum").tolist())
    if run is not None:
        run.finish(steps=step, complete=complete, num_processes=accelerator.num_processes, samples=samples, tokens=tokens,
                   samples_per_s=round(samples / seconds, 3), tokens_per_s=round(tokens / seconds, 1),
                   mixed_precision=accelerator.mixed_precision)
        steps = JsonlLog(out / LOG, key="step").read()
        if steps:
            metrics = loss_metrics(steps, complete)
            write_json(out / METRICS, metrics)
            _report(steps, metrics, run.config).write(out)
    accelerator.log({"run/samples_per_s": samples / seconds, "run/tokens_per_s": tokens / seconds}, step=step)
    stop_tracking(accelerator)
    accelerator.wait_for_everyone()
    return out


def loss_metrics(steps: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    """Final and best training loss of the logged optimizer steps (the last epoch's mean smooths batch noise)."""
    best = min(steps, key=lambda r: r["loss"])
    last_epoch = [r["loss"] for r in steps if r["epoch"] == steps[-1]["epoch"]]
    return {"steps": steps[-1]["step"], "complete": complete, "first_loss": steps[0]["loss"], "final_loss": steps[-1]["loss"],
            "final_epoch_mean_loss": round(sum(last_epoch) / len(last_epoch), 6), "best_loss": best["loss"], "best_step": best["step"]}


def _report(steps: list[dict[str, Any]], metrics: dict[str, Any], config: dict[str, Any]) -> Any:
    """The loss curve as a chart and a table of at most 25 evenly spaced steps."""
    import matplotlib.pyplot as plt

    from annotaudit.core.report import Report

    rep = Report(f"LVLM training: {config['stage']}")
    rep.text(f"Model `{config['model']}` trained on `{config['data']}`: {metrics['steps']} optimizer steps"
             f"{'' if metrics['complete'] else ' (stopped early)'}, lr {config['lr']}, batch {config['batch_size']} "
             f"x {config['grad_accum']} accumulation per process.")
    rep.table([{k: metrics[k] for k in ("first_loss", "final_loss", "final_epoch_mean_loss", "best_loss", "best_step")}], floatfmt=".4f")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    rep.figure(fig, "Training loss per step")
    every = max(1, math.ceil(len(steps) / 25))
    shown = steps[::every] + ([steps[-1]] if (len(steps) - 1) % every else [])
    rep.heading("Loss curve")
    rep.table([{"step": r["step"], "epoch": r["epoch"], "loss": r["loss"], "lr": r["lr"]} for r in shown], floatfmt=".4g")
    return rep


__all__ = ["ConfigMismatch", "IGNORE", "TrainConfig", "train", "loss_metrics", "save_model", "set_trainable", "add_lora", "param_groups"]
