"""The one resumable item runner behind annotate, POPE, CHAIR and VQA evaluation.

A command hands over its samples, a function that loads the model and answers a batch, and a
metric over the records. The runner owns everything else: the configuration check and --force,
which samples remain, batching, sharding over the processes of an `accelerate launch` and the
merge, crash-safe appends, progress, then metrics, problems and the report.

Every command writes the same folder:

    run.json        kind, configuration, inputs (path and fingerprint), items, seed, versions, git commit, sessions
    records.jsonl   one record per sample: id, input, target, prediction, raw, scores, meta
    metrics.json    the metric of the records
    problems.jsonl  every bad input that was skipped
    failures.jsonl  items whose model requests still failed after retries (a rerun retries them)
    report.md/html

and the records can be scored again without the model (`score_records` over `read_run_records`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, RequestFailed, RunIncomplete
from .io import JsonlLog, Problems, iter_jsonl, read_json, write_json, write_jsonl
from .runs import MANIFEST, RunDir, check_config, check_kind, console, describe_inputs, holds_other_run, progress

RECORDS, METRICS, PROBLEMS, SHARDS, FAILURES = "records.jsonl", "metrics.json", "problems.jsonl", "shards", "failures.jsonl"
REPORT_FILES = ("report.md", "report.html", "report_files")
RECORD_KEYS = ("id", "input", "target", "prediction", "raw", "scores", "meta")


@dataclass
class Sample:
    """One unit of work: what the model sees (`input`), the gold answer (`target`) and anything else (`meta`).

    Samples that share a `group` (POPE: the image) go into the same batch, so the model encodes
    what they share once.
    """

    id: str
    input: dict[str, Any]
    target: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    group: str | None = None


def make_record(sample: Sample, prediction: Any, raw: Any, scores: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    """The record every command writes for one sample."""
    return {"id": sample.id, "input": sample.input, "target": sample.target, "prediction": prediction, "raw": raw,
            "scores": scores, "meta": {**sample.meta, **meta}}


Solver = Callable[[list[Sample]], list[dict[str, Any]]]
Metric = Callable[[list[dict[str, Any]]], dict[str, Any]]
ReportFn = Callable[[list[dict[str, Any]], dict[str, Any], Path], None]


@dataclass
class Processes:
    """This process's place in an `accelerate launch` (one process when not launched)."""

    index: int = 0
    count: int = 1
    device: str | None = None
    _state: Any = None

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def wait(self) -> None:
        if self._state is not None:
            self._state.wait_for_everyone()


def processes() -> Processes:
    """accelerate's view of the launch; torch and accelerate are imported only when launched."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    import torch
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    device = str(state.device) if state.device.type != "cpu" else None
    return Processes(state.process_index, state.num_processes, device, state)


def batches(samples: list[Sample], size: int) -> Iterator[list[Sample]]:
    """`size` samples a batch; with groups, `size` whole groups a batch (groups in order of first appearance)."""
    if not samples or samples[0].group is None:
        for start in range(0, len(samples), size):
            yield samples[start : start + size]
        return
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(str(s.group), []).append(s)
    ordered = list(groups.values())
    for start in range(0, len(ordered), size):
        yield [s for g in ordered[start : start + size] for s in g]


@dataclass
class EngineUsage:
    """What a model server cost: a backend that sends requests counts them here, on its own instance."""

    engine: str | None = None  # the server and the model it serves; None for in-process models
    requests: int = 0
    cached: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "engine"}

    def add(self, now: dict[str, int], before: dict[str, int]) -> None:
        """Add what was counted between two readings of `counts()`."""
        for k, v in now.items():
            setattr(self, k, getattr(self, k) + v - before[k])


def usage_of(answer: Solver | None) -> EngineUsage:
    """The usage an answering function carries (`answer.usage`), or none counted."""
    found = getattr(answer, "usage", None)
    return found if isinstance(found, EngineUsage) else EngineUsage()


def _usage_since(usage: EngineUsage, before: dict[str, int], seconds: float) -> dict[str, Any]:
    now = usage.counts()
    used: dict[str, Any] = {k: now[k] - before[k] for k in now}
    tokens = used["prompt_tokens"] + used["completion_tokens"]
    used["requests_per_second"] = round(used["requests"] / seconds, 3) if seconds > 0 else None
    used["tokens_per_second"] = round(tokens / seconds, 1) if seconds > 0 else None
    return used


def _rates(usage: EngineUsage, before: dict[str, int], seconds: float) -> str:
    used = _usage_since(usage, before, seconds)
    if not used["requests"]:
        return ""
    return f"{used['requests_per_second']:.1f} req/s · {used['tokens_per_second']:.0f} tok/s"


def print_engine_bound(engine: str, config: dict[str, Any], samples: list[Sample]) -> None:
    """Before a run against a server: at most how many requests and tokens it will take."""
    runs = max(1, int(config.get("samples") or 1))
    max_tokens = int(config.get("max_new_tokens") or 0)
    chars = sum(len(str(s.input.get("prompt") or s.input.get("question") or "")) for s in samples)
    bound = f"at most {len(samples) * runs} generations ({len(samples)} items × {runs} samples)"
    if max_tokens:
        bound += f", ≤ {len(samples) * runs * max_tokens:,} completion tokens"
    console.print(f"[cyan]{engine}: {bound}, ~{chars // 3 * runs:,} prompt tokens (before retries; cache hits are free)")


def answer_batch(answer: Solver, batch: list[Sample]) -> tuple[list[tuple[Sample, dict[str, Any]]], dict[str, str]]:
    """Answer a batch; if some of its requests failed, answer its samples one at a time (what the first
    try got is cached) and return the samples that still fail with their error."""
    try:
        records = answer(batch)
    except RequestFailed:
        pairs, failed = [], {}
        for sample in batch:
            try:
                pairs.extend(zip([sample], answer([sample])))
            except RequestFailed as exc:
                failed[sample.id] = str(next(iter(exc.errors.values()), exc))
        return pairs, failed
    if len(records) != len(batch):
        raise RuntimeError(f"the solver returned {len(records)} records for {len(batch)} samples")
    return list(zip(batch, records)), {}


def _failure_paths(out: Path) -> list[Path]:
    return [out / FAILURES] + sorted((out / SHARDS).glob("failures.*.jsonl"))


def _merge_failures(out: Path, samples: list[Sample]) -> int:
    """One failures.jsonl in sample order, without items that have a record by now."""
    done = finished(out)
    failed: dict[str, dict[str, Any]] = {}
    for path in _failure_paths(out)[1:]:
        failed.update((str(r["id"]), r) for r in JsonlLog(path))
        path.unlink()
    rows = [failed[s.id] for s in samples if s.id in failed and s.id not in done]
    if rows:
        write_jsonl(out / FAILURES, rows)
    elif (out / FAILURES).exists():
        (out / FAILURES).unlink()
    return len(rows)


def _log_paths(out: Path) -> list[Path]:
    return [out / RECORDS] + sorted((out / SHARDS).glob("records.*.jsonl"))


def finished(out: str | Path, warn: bool = False) -> dict[str, dict[str, Any]]:
    """Records already written, from the merged file and every shard file (torn last lines repaired).

    A damaged line costs only its own record, which is answered again; `warn` names each one.
    """
    done: dict[str, dict[str, Any]] = {}
    for path in _log_paths(Path(out)):
        if path.exists():
            log = JsonlLog(path)
            for rec in log:
                done.setdefault(str(rec["id"]), rec)
            for err in log.skipped if warn else ():
                console.print(f"[yellow]{err} (skipped; its record will be made again)")
    return done


def merge(out: Path, samples: list[Sample]) -> list[dict[str, Any]]:
    """One records.jsonl in sample order from the merged file and the shards; shards removed after."""
    done = finished(out)
    records = [done[s.id] for s in samples if s.id in done]
    write_jsonl(out / RECORDS, records)
    for path in _log_paths(out)[1:]:
        path.unlink()
    if (out / SHARDS).is_dir() and not any((out / SHARDS).iterdir()):
        (out / SHARDS).rmdir()
    return records


def check_samples(samples: list[Sample], source: str = "the input") -> None:
    """Refuse an empty run and repeated ids (they would make resuming ambiguous)."""
    if not samples:
        raise InputError(f"no items to run in {source}")
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise InputError("the same id appears twice", path=source, item=s.id)
        seen.add(s.id)


def run_samples(
    out: str | Path,
    config: dict[str, Any],
    samples: list[Sample],
    solver: Callable[[str | None], Solver],
    metric: Metric,
    *,
    kind: str,
    inputs: dict[str, str | Path | None] | None = None,
    report: ReportFn | None = None,
    problems: Problems | None = None,
    batch_size: int = 8,
    description: str = "running",
    force: bool = False,
    extra_outputs: tuple[str, ...] = (),
    after: Callable[[Path, list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Answer every sample not yet in the run folder, then merge, measure and report.

    `kind`, `config` and `inputs` go to run.json (see `RunDir`), with `items` the number of samples.
    `solver(device)` loads the model (only when there is work left) and returns a function from a
    batch of samples to their records; a model server's cost is read from that function's `usage`
    (an EngineUsage, see `models.answering`) and recorded in run.json and metrics.json. `after` may revise the merged records before the metric
    (a judge pass, for example). Returns the metrics (an empty dict on processes other than the main one).
    """
    out = Path(out)
    check_samples(samples, str(config.get("data") or config.get("questions") or out))
    procs = processes()
    rundir = None
    if procs.is_main:  # the lock first: nothing is read for resuming while another process may write
        rundir = RunDir(out, config, kind=kind, inputs=inputs, items=len(samples), force=force,
                        outputs=[RECORDS, METRICS, PROBLEMS, SHARDS, FAILURES, *REPORT_FILES, *extra_outputs], start=False)
        described = rundir.inputs
    else:  # the same check, read-only, so every process stops on another run
        described = describe_inputs(inputs, out if out.is_dir() else None)
        check_config(out, config, force, kind=kind, inputs=described)
    procs.wait()
    # Batches are cut from all of this process's samples, finished or not, so a resumed run answers
    # exactly the batches an uninterrupted run would; a batch cut short by a kill is answered whole again.
    mine = [s for k, s in enumerate(samples) if k % procs.count == procs.index]
    # The lock is held and nothing is written before start(), so this read stays true for the whole run;
    # start() drops old records only when --force replaces another run, which counts as none done.
    done = {} if force and holds_other_run(out, config, kind=kind, inputs=described) else finished(out, warn=procs.is_main)
    todo = [b for b in batches(mine, batch_size) if any(s.id not in done for s in b)]
    answer = solver(procs.device) if todo else None  # the model loads before run.json is written: a typo leaves nothing behind
    usage = usage_of(answer)
    if usage.engine and procs.is_main:
        print_engine_bound(usage.engine, config, [s for b in todo for s in b if s.id not in done])
    procs.wait()
    if procs.is_main:
        rundir.start()
        (problems or Problems()).write(out / PROBLEMS)
        if problems:
            problems.show(lambda m: console.print(f"[yellow]{m}"), out / PROBLEMS)
    procs.wait()
    log = JsonlLog(out / RECORDS if procs.count == 1 else out / SHARDS / f"records.{procs.index}.jsonl")
    started, n_done, before = time.time(), 0, usage.counts()
    failed: dict[str, str] = {}
    if todo:
        label = description + (f" [{procs.index}]" if procs.count > 1 else "")
        with progress(label, sum(1 for b in todo for s in b if s.id not in done)) as advance:
            for batch in todo:
                pairs, batch_failed = answer_batch(answer, batch)
                new = [r for s, r in pairs if s.id not in done]
                log.append(new)
                failed.update((i, e) for i, e in batch_failed.items() if i not in done)
                n_done += len(new)
                advance(len(new) + sum(1 for i in batch_failed if i not in done), note=_rates(usage, before, time.time() - started))
    if failed:
        (out / SHARDS).mkdir(exist_ok=True)
        write_jsonl(out / SHARDS / f"failures.{procs.index}.jsonl", [{"id": i, "error": e} for i, e in failed.items()])
    procs.wait()
    if not procs.is_main:
        return {}
    n_failed = _merge_failures(out, samples)
    records = merge(out, samples)
    seconds = time.time() - started
    used = _usage_since(usage, before, seconds) if usage.engine or usage.counts() != before else None
    if records:
        if after is not None:
            records = after(out, records)
        result = score_records(out, records, metric, report, problems=len(problems or ()), failed=n_failed, usage=used)
    else:
        result = {"failed": n_failed}
    rundir.finish(items_this_session=n_done, processes=procs.count, failed=n_failed,
                  items_per_second=round(n_done / seconds, 4) if n_done and seconds > 0 else None, **({"usage": used} if used else {}))
    if n_failed:
        raise RunIncomplete(n_failed, out / FAILURES)
    return result


def score_records(out: str | Path, records: list[dict[str, Any]], metric: Metric, report: ReportFn | None = None,
                  problems: int | None = None, failed: int | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of records (fresh or read back from a run folder), written with the report.

    `failed` counts items left out because their requests failed; `usage` is what a model server cost this session.
    """
    out = Path(out)
    if not records:
        raise InputError("no records to score", path=out)
    result = metric(records)
    if problems is not None:
        result["problems"] = problems
    if failed:
        result["failed"] = failed
    if usage:
        result["engine_usage"] = usage
    write_json(out / METRICS, result)
    if report is not None:
        report(records, result, out)
    return result


def save_records(out: str | Path, config: dict[str, Any], records: list[dict[str, Any]], metric: Metric, report: ReportFn | None = None,
                 problems: Problems | None = None, force: bool = False, *, kind: str,
                 inputs: dict[str, str | Path | None] | None = None) -> dict[str, Any]:
    """A run folder for records made outside the runner's loop (an answers or captions file scored as it is).

    Refuses a folder that holds another run unless `force`; returns the metrics.
    """
    out = Path(out)
    rundir = RunDir(out, config, kind=kind, inputs=inputs, items=len(records), force=force, outputs=[RECORDS, METRICS, PROBLEMS, *REPORT_FILES])
    write_jsonl(out / RECORDS, records)
    if problems is not None:
        problems.write(out / PROBLEMS)
    result = score_records(out, records, metric, report, problems=len(problems) if problems is not None else None)
    rundir.finish()
    return result


def rescore_run(run_dir: str | Path, metric: Metric, report: ReportFn | None = None) -> dict[str, Any]:
    """Score a finished run folder again from its records, without the model; metrics.json and the report are rewritten."""
    problems = Path(run_dir) / PROBLEMS
    count = sum(1 for _ in iter_jsonl(problems)) if problems.is_file() else None
    failures = Path(run_dir) / FAILURES
    failed = sum(1 for _ in iter_jsonl(failures)) if failures.is_file() else None
    return score_records(run_dir, read_run_records(run_dir), metric, report, problems=count, failed=failed)


def read_run_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a finished run folder (or of a records.jsonl file)."""
    path = Path(run_dir)
    path = path / RECORDS if path.is_dir() else path
    records = list(JsonlLog(path)) if path.is_file() else []
    if not records:
        raise InputError("no records (is this a finished run folder?)", path=path)
    for rec in records[:1]:
        missing = [k for k in RECORD_KEYS if k not in rec]
        if missing:
            raise InputError(f"not an annotaudit record: no {', '.join(missing)}", path=path, line=1)
    return records


def run_manifest(run_dir: str | Path) -> dict[str, Any]:
    """A run folder's run.json."""
    manifest = Path(run_dir) / MANIFEST
    if not manifest.is_file():
        raise InputError(f"no {MANIFEST}: not a run folder", path=run_dir)
    found = read_json(manifest)
    if not isinstance(found, dict):
        raise InputError("not a run manifest (a JSON object)", path=manifest)
    return found


def run_config(run_dir: str | Path, kind: str | tuple[str, ...] | None = None, command: str = "this command") -> dict[str, Any]:
    """The configuration a run folder was made with; with `kind`, only from a folder of that kind
    (else one line naming the kind found and the command that reads it)."""
    manifest = run_manifest(run_dir)
    if kind is not None:
        check_kind(run_dir, manifest, kind, command)
    config = manifest.get("config")
    if not isinstance(config, dict):
        raise InputError("no configuration in the manifest", path=Path(run_dir) / MANIFEST)
    return config
