"""`annotate run`: a model labels every item, resumably, on one process or on a shard per process.

Each process appends finished items to its own JSONL (`predictions.jsonl` when alone,
`shards/predictions.<rank>.jsonl` under `accelerate launch`); items already in any of those files
are skipped, so a rerun after kill -9 continues without duplicating or losing an item. The main
process then merges them, in dataset order, into `predictions.jsonl` and writes `metrics.json`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import JsonlLog, read_json, write_json
from annotaudit.core.runs import ConfigMismatch, RunDir, console, progress

from . import metrics as metrics_mod
from .extract import extract, vote
from .readers import Item
from .tasks import NOANSWER, Task, get_task, read_items

PREDICTIONS, METRICS, SKIPPED, SHARDS = "predictions.jsonl", "metrics.json", "skipped.jsonl", "shards"
MODES = ("generate", "score")


@dataclass
class RunConfig:
    """Everything that decides the results; a rerun with another value refuses the old directory."""

    task: str
    data: str
    model: str
    split: str | None = None
    languages: list[str] | None = None
    limit: int | None = None
    mode: str = "generate"
    samples: int = 1
    batch_size: int = 8
    seed: int = 0
    max_new_tokens: int = 1024
    temperature: float = 0.8
    top_p: float = 0.9
    do_sample: bool = True
    judge: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}; use generate or score")
        if self.samples < 1 or self.batch_size < 1:
            raise InputError("--samples and --batch-size must be at least 1")
        if self.samples > 1 and not self.do_sample:
            raise InputError("several samples per item need sampling (drop --greedy)")


def _state() -> Any:
    """accelerate's view of the launch: rank and world size (one process when not launched).

    Without CUDA, processes started by `accelerate launch --multi_gpu` (torchrun) join over gloo.
    """
    import os

    import torch
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def _check_config(out: Path, config: dict[str, Any], force: bool) -> None:
    """Read-only twin of RunDir's check, so every process refuses a changed configuration alike."""
    manifest = out / "run.json"
    if manifest.exists() and not force:
        old = read_json(manifest).get("config")
        if old != config:
            changed = sorted(k for k in set(old or {}) | set(config) if (old or {}).get(k) != config.get(k))
            raise ConfigMismatch(f"{out} holds a run with another configuration (changed: {', '.join(changed)}); "
                                 "use another output directory, or --force to discard the old results")


def _log_paths(out: Path) -> list[Path]:
    return [out / PREDICTIONS] + sorted((out / SHARDS).glob("predictions.*.jsonl"))


def _done(out: Path) -> dict[str, dict[str, Any]]:
    """Finished records from the merged file and every shard file (torn last lines repaired)."""
    done: dict[str, dict[str, Any]] = {}
    for path in _log_paths(out):
        if path.exists():
            for rec in JsonlLog(path):
                done.setdefault(str(rec["id"]), rec)
    return done


def _continuation(model: Any, prompt: str, word: str) -> str:
    """A label word as it would follow the assistant cue: after a space unless the cue ends in one."""
    return word if not prompt or prompt[-1].isspace() else " " + word


def _request(item: Item, task: Task, model: Any) -> Any:
    from annotaudit.models import Request

    return Request(task.render(item), item.image if (item.image is not None and model.accepts_images) else None)


def _record(item: Item, model: Any, prompt: str, **fields: Any) -> dict[str, Any]:
    rec = {"id": item.id, "model": model.entry.name, "prompt": prompt, "outputs": [], "label": NOANSWER, "answered": False,
           "confidence": None, "scores": None, "judged": False, "human_label": item.label}
    if item.meta.get("language"):
        rec["language"] = item.meta["language"]
    if item.image is not None:
        rec["image"] = str(item.image)
    rec.update(fields)
    return rec


def annotate_generate(model: Any, items: list[Item], task: Task, cfg: RunConfig) -> list[dict[str, Any]]:
    """Sample `cfg.samples` replies per item, extract a label from each, keep the majority."""
    from annotaudit.models import GenerationConfig

    seed = (cfg.seed + zlib.crc32(items[0].id.encode())) % 2**31
    gen_cfg = GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample, temperature=cfg.temperature,
                               top_p=cfg.top_p, num_samples=cfg.samples, seed=seed)
    gens = model.generate([_request(it, task, model) for it in items], gen_cfg)
    out = []
    for item, gen in zip(items, gens):
        labels = [extract(t, task) for t in gen.texts]
        label, agreement, share = vote(labels, task)
        out.append(_record(item, model, gen.prompt, outputs=gen.texts, sample_labels=labels, label=label,
                           answered=label != NOANSWER, confidence=agreement, scores=share if cfg.samples > 1 else None,
                           num_tokens=gen.num_tokens))
    return out


def annotate_score(model: Any, items: list[Item], task: Task, cfg: RunConfig) -> list[dict[str, Any]]:
    """Rank each label's verbalization by log-likelihood; softmax over labels gives probabilities."""
    requests = [_request(it, task, model) for it in items]
    prompts = [model.render_prompt(r.prompt, r.image is not None) for r in requests]
    conts = [[_continuation(model, p, task.verbalizers[lab]) for lab in task.labels] for p in prompts]
    logps = model.score(requests, conts)
    out = []
    for item, prompt, lp in zip(items, prompts, logps):
        top = max(lp)
        weights = [math.exp(x - top) for x in lp]
        probs = {lab: w / sum(weights) for lab, w in zip(task.labels, weights)}
        label = max(task.labels, key=probs.__getitem__)
        out.append(_record(item, model, prompt, label=label, answered=True, confidence=probs[label], scores=probs,
                           logprobs=dict(zip(task.labels, lp))))
    return out


def _load(name: str, state: Any) -> Any:
    from annotaudit.models import load_model

    device = str(state.device) if state.num_processes > 1 and state.device.type != "cpu" else None
    return load_model(name, device=device)


def _write_skipped(out: Path, problems: list[InputError]) -> None:
    rows = [{"path": str(p.path) if p.path else None, "line": p.line, "item": p.item, "message": p.message} for p in problems]
    log = JsonlLog(out / SKIPPED)
    if log.path.exists():
        log.path.unlink()
    log.append(rows)


def prepare(cfg: RunConfig, strict: bool) -> tuple[Task, list[Item], list[InputError]]:
    task = get_task(cfg.task)
    if cfg.mode == "score" and task.multi_label:
        raise InputError(f"task {task.name!r} is multi-label; score mode ranks one label per item, use --mode generate")
    problems: list[InputError] = []
    items = read_items(task, cfg.data, split=cfg.split, languages=cfg.languages, strict=strict, problems=problems)
    for item in items:  # a placeholder the data cannot fill is the data's problem, found before any model runs
        task.render(item)
    return task, items[: cfg.limit] if cfg.limit else items, problems


def run(cfg: RunConfig, out: str | Path, force: bool = False, strict: bool = False,
        on_problem: Callable[[InputError], None] | None = None) -> dict[str, Any]:
    """Annotate, merge, judge and measure; returns the metrics (empty on non-main processes)."""
    out = Path(out)
    state = _state()
    task, items, problems = prepare(cfg, strict)
    config = {**asdict(cfg), "task_spec": task.describe()}
    _check_config(out, config, force)
    state.wait_for_everyone()
    if state.is_main_process:
        rundir = RunDir(out, config, force=force, outputs=[PREDICTIONS, METRICS, SKIPPED, SHARDS])
        _write_skipped(out, problems)
        for p in problems:
            (on_problem or (lambda e: console.print(f"[yellow]skipped: {e}")))(p)
    state.wait_for_everyone()
    done = _done(out)
    mine = [it for i, it in enumerate(items) if i % state.num_processes == state.process_index and it.id not in done]
    log_path = out / PREDICTIONS if state.num_processes == 1 else out / SHARDS / f"predictions.{state.process_index}.jsonl"
    log = JsonlLog(log_path)
    fn = annotate_score if cfg.mode == "score" else annotate_generate
    n_done = 0
    if mine:
        model = _load(cfg.model, state)
        desc = f"{task.name} · {model.entry.name} · {cfg.mode}" + (f" [{state.process_index}]" if state.num_processes > 1 else "")
        with progress(desc, len(mine)) as advance:
            for start in range(0, len(mine), cfg.batch_size):
                batch = mine[start : start + cfg.batch_size]
                log.append(fn(model, batch, task, cfg))
                n_done += len(batch)
                advance(len(batch))
        del model
    state.wait_for_everyone()
    if not state.is_main_process:
        return {}
    records = merge(out, items)
    if cfg.judge:
        records = judge(out, records, task, cfg.judge, {it.id: it for it in items}, cfg.batch_size)
    result = metrics_mod.compute(records, task)
    result["skipped"] = len(problems)
    rundir.write_json(METRICS, result)
    rundir.finish(items_this_session=n_done, processes=state.num_processes, task=task.describe(),
                  items_per_second=None if not n_done else round(n_done / max(1e-9, _elapsed(rundir)), 4))
    return result


def _elapsed(rundir: RunDir) -> float:
    import time

    return time.time() - rundir.started


def merge(out: Path, items: list[Item]) -> list[dict[str, Any]]:
    """One predictions.jsonl in dataset order from the merged file and the shards; shards removed after."""
    done = _done(out)
    order = {it.id: i for i, it in enumerate(items)}
    records = sorted((r for k, r in done.items() if k in order), key=lambda r: order[str(r["id"])])
    _rewrite(out / PREDICTIONS, records)
    for path in _log_paths(out)[1:]:
        path.unlink()
    if (out / SHARDS).is_dir() and not any((out / SHARDS).iterdir()):
        (out / SHARDS).rmdir()
    return records


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    import json
    import os

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


JUDGE_PROMPT = (
    "An annotator was asked:\n{question}\n\nThe annotator replied:\n{reply}\n\n"
    "Which of these answers did the annotator give: {options}? Reply with exactly one of them."
)


def judge(out: Path, records: list[dict[str, Any]], task: Task, judge_name: str, items: dict[str, Item], batch_size: int) -> list[dict[str, Any]]:
    """A second model reads each unanswered reply and picks a label, or "none"; picks are marked judged.

    The judge scores the options rather than generating, so it always gives one of them. Items it
    has seen carry `judge` and are not judged again on a rerun.
    """
    if task.multi_label:
        console.print("[yellow]judge: skipped, multi-label tasks are not judged")
        return records
    todo = [r for r in records if not r["answered"] and r.get("judge") != judge_name and r.get("outputs")]
    if not todo:
        return records
    from annotaudit.models import Request, load_model

    model = load_model(judge_name)
    options = task.labels + ["none"]
    with progress(f"judge · {model.entry.name}", len(todo)) as advance:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            requests = [Request(JUDGE_PROMPT.format(question=task.render(items[str(r["id"])]), reply=r["outputs"][0],
                                                    options=", ".join(task.verbalizers[lab] for lab in task.labels) + " or None"))
                        for r in batch]
            prompts = [model.render_prompt(q.prompt, False) for q in requests]
            words = [task.verbalizers[lab] for lab in task.labels] + ["None"]
            logps = model.score(requests, [[_continuation(model, p, w) for w in words] for p in prompts])
            for rec, lp in zip(batch, logps):
                pick = options[max(range(len(options)), key=lp.__getitem__)]
                rec["judge"] = model.entry.name
                if pick != "none":
                    rec.update(label=pick, answered=True, judged=True)
            _rewrite(out / PREDICTIONS, records)
            advance(len(batch))
    return records


def recompute(out: str | Path) -> dict[str, Any]:
    """Metrics of an existing run directory, from its predictions and its recorded task."""
    out = Path(out)
    manifest = read_json(out / "run.json")
    task = get_task(manifest["config"]["task"])
    records = list(JsonlLog(out / PREDICTIONS))
    result = metrics_mod.compute(records, task)
    write_json(out / METRICS, result)
    return result
