"""`annotate run`: a model labels every item of a dataset, measured against the human labels.

The item runner (`core.runner.run_samples`) owns resuming, sharding over processes, crash-safe
writes and the run folder. This module turns items into samples, answers a batch in generate or
score mode, lets a judge read the unanswered replies, and measures the records.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError, require_minimum
from annotaudit.core.io import Problems, write_jsonl
from annotaudit.core.runner import RECORDS, Sample, make_record, rescore_run, run_config, run_samples
from annotaudit.core.runs import console, progress
from annotaudit.core.tasks import NOANSWER, Task

from . import metrics
from .extract import extract, vote
from .readers import Item
from .tasks import get_task, read_items

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
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be at least 1 (got {self.limit})")
        if self.samples > 1 and not self.do_sample:
            raise InputError("several samples per item need sampling (drop --greedy)")
        require_minimum(self, ("max_new_tokens",), 1)
        if self.do_sample and (self.temperature <= 0 or not 0 < self.top_p <= 1):
            raise InputError(f"sampling needs --temperature above 0 and --top-p in (0, 1] (got {self.temperature} and {self.top_p}); use --greedy")


def to_samples(task: Task, items: list[Item]) -> list[Sample]:
    """One sample per item: the task's prompt and the image as input, the human label as target.

    Rendering here means a placeholder the data cannot fill stops the run before any model loads.
    """
    out = []
    for item in items:
        meta = {"language": item.meta["language"]} if item.meta.get("language") else {}
        prompt = task.render(item)
        out.append(Sample(item.id, {"prompt": prompt, "image": str(item.image) if item.image is not None else None}, item.label, meta))
    return out


def _continuation(prompt: str, word: str) -> str:
    """A label word as it would follow the assistant cue: after a space unless the cue ends in one."""
    return word if not prompt or prompt[-1].isspace() else " " + word


def generating(task: Task, cfg: RunConfig) -> Any:
    """Generate mode: sample `cfg.samples` replies per item, extract a label from each, keep the majority.

    With several samples `scores["votes"]` holds each label's share of them, which gives AUROC.
    """
    from annotaudit.models import GenerationConfig
    from annotaudit.models.answering import Generate

    def settings(batch: list[Sample]) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample, temperature=cfg.temperature, top_p=cfg.top_p,
                                num_samples=cfg.samples, seed=(cfg.seed + zlib.crc32(batch[0].id.encode())) % 2**31)

    def parse(reply: Any) -> dict[str, Any]:
        gen = reply.generation
        labels = [extract(t, task) for t in gen.texts]
        label, agreement, share = vote(labels, task)
        return make_record(reply.sample, label, list(gen.texts), {"votes": share} if cfg.samples > 1 else None,
                           model=reply.model, chat_prompt=gen.prompt, answered=label != NOANSWER, confidence=agreement,
                           judged=False, sample_labels=labels, num_tokens=gen.num_tokens)

    return Generate(settings, parse)


def scoring(task: Task) -> Any:
    """Score mode: rank each label's verbalization by log-likelihood; softmax over labels gives probabilities."""
    from annotaudit.models.answering import Score

    def parse(reply: Any) -> dict[str, Any]:
        lp = reply.logprobs
        top = max(lp)
        weights = [math.exp(x - top) for x in lp]
        probs = {lab: w / sum(weights) for lab, w in zip(task.labels, weights)}
        label = max(task.labels, key=probs.__getitem__)
        return make_record(reply.sample, label, None, {"probs": probs, "logprobs": dict(zip(task.labels, lp))},
                           model=reply.model, chat_prompt=reply.prompt, answered=True, confidence=probs[label], judged=False)

    return Score(lambda sample, prompt: [_continuation(prompt, task.verbalizers[lab]) for lab in task.labels], parse)


def answering_mode(task: Task, cfg: RunConfig) -> Any:
    return scoring(task) if cfg.mode == "score" else generating(task, cfg)


def annotate_generate(model: Any, samples: list[Sample], task: Task, cfg: RunConfig) -> list[dict[str, Any]]:
    """Records of a batch in generate mode, from a loaded model."""
    from annotaudit.models.answering import Answerer

    return Answerer(model, generating(task, cfg))(samples)


def annotate_score(model: Any, samples: list[Sample], task: Task, cfg: RunConfig) -> list[dict[str, Any]]:
    """Records of a batch in score mode, from a loaded model."""
    from annotaudit.models.answering import Answerer

    return Answerer(model, scoring(task))(samples)


def prepare(cfg: RunConfig, strict: bool = False) -> tuple[Task, list[Item], Problems]:
    """The task, its items (after --limit) and the bad records skipped while reading them."""
    task = get_task(cfg.task)
    if cfg.mode == "score" and task.multi_label:
        raise InputError(f"task {task.name!r} is multi-label; score mode ranks one label per item, use --mode generate")
    problems = Problems(strict)
    items = read_items(task, cfg.data, split=cfg.split, languages=cfg.languages, strict=strict, problems=problems)
    return task, items[: cfg.limit] if cfg.limit else items, problems


def _config(cfg: RunConfig, task: Task, answering: Any) -> dict[str, Any]:
    """run.json's config: the options and the task itself, so an edited task is refused (the data file is an input)."""
    return {**asdict(cfg), **answering.config(), "task_spec": task.describe()}


def run(cfg: RunConfig, out: str | Path, force: bool = False, strict: bool = False,
        on_problem: Callable[[InputError], None] | None = None, engine: Any = None) -> dict[str, Any]:
    """Annotate, merge, judge and measure; returns the metrics (empty on processes other than the main one).

    `on_problem` also receives each bad record that was skipped (they are shown and saved to problems.jsonl anyway).
    `engine` (EngineOptions) says how to reach a model server; its request cache defaults to <out>/cache.
    """
    from annotaudit.models.answering import Answering

    answering = Answering.for_run(cfg.model, out, engine)
    task, items, problems = prepare(cfg, strict)
    samples = to_samples(task, items)
    if on_problem is not None:
        for err in problems.errors:
            on_problem(err)

    def after(folder: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return judge(folder, records, task, cfg.judge, cfg.batch_size, engine=answering.engine) if cfg.judge else records

    return run_samples(out, _config(cfg, task, answering), samples, answering.solver(answering_mode(task, cfg)),
                       lambda records: metrics.compute(records, task), kind="annotate", inputs={"data": cfg.data}, report=_report(task),
                       problems=problems, batch_size=cfg.batch_size, force=force, description=f"{task.name} · {cfg.model} · {cfg.mode}", after=after)


def _report(task: Task) -> Callable[[list[dict[str, Any]], dict[str, Any], Path], None]:
    def write(records: list[dict[str, Any]], result: dict[str, Any], out: Path) -> None:
        from .report import run_report

        run_report(records, result, out, task)

    return write


JUDGE_PROMPT = (
    "An annotator was asked:\n{question}\n\nThe annotator replied:\n{reply}\n\n"
    "Which of these answers did the annotator give: {options}? Reply with exactly one of them."
)


def judge(out: str | Path, records: list[dict[str, Any]], task: Task, judge_name: str, batch_size: int = 8,
          engine: Any = None) -> list[dict[str, Any]]:
    """A second model reads each unanswered reply and picks a label, or "none"; picks are marked judged.

    The judge scores the options rather than generating, so it always gives one of them. Records it
    has read carry `meta.judge` and are not judged again on a rerun; records.jsonl is rewritten
    after every batch so a crash loses at most one batch of judging.
    """
    if task.multi_label:
        console.print("[yellow]judge: skipped, multi-label tasks are not judged")
        return records
    todo = [r for r in records if not r["meta"].get("answered") and "judge" not in r["meta"] and r.get("raw")]
    if not todo:
        return records
    from annotaudit.models import EngineOptions
    from annotaudit.models.answering import Answering, Score

    options = task.labels + ["none"]
    words = [task.verbalizers[lab] for lab in task.labels] + ["None"]
    listed = ", ".join(words[:-1]) + " or None"
    pick = Score(lambda sample, prompt: [_continuation(prompt, w) for w in words],
                 lambda reply: options[max(range(len(options)), key=reply.logprobs.__getitem__)])
    answer = Answering(judge_name, engine or EngineOptions()).answerer(pick)
    with progress(f"judge · {answer.model.name}", len(todo)) as advance:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            questions = [Sample(r["id"], {"prompt": JUDGE_PROMPT.format(question=r["input"]["prompt"], reply=r["raw"][0], options=listed)})
                         for r in batch]
            for rec, choice in zip(batch, answer(questions)):
                rec["meta"]["judge"] = answer.model.name
                if choice != "none":
                    rec["prediction"] = choice
                    rec["meta"].update(answered=True, judged=True)
            write_jsonl(Path(out) / RECORDS, records)
            advance(len(batch))
    return records


def recompute(out: str | Path) -> dict[str, Any]:
    """Metrics and report of a finished run folder from its records and its recorded task, without the model."""
    task = get_task(run_config(out, "annotate", "annotaudit annotate score")["task"])
    return rescore_run(out, lambda records: metrics.compute(records, task), _report(task))
