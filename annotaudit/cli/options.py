"""Options that several commands share, defined once so their names and help read the same everywhere."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

MODEL: str = typer.Option(..., "--model", help="Registry name, hf:<hub id or path>, or a local model folder (see `annotaudit models list`).")
RUN_FOLDER: Path = typer.Option(
    ..., "--out", help="Run folder: run.json, records.jsonl, metrics.json, problems.jsonl, report.md/html (a rerun resumes it)."
)
FORCE: bool = typer.Option(False, "--force", help="Discard an earlier run in --out made with other settings or other input files.")
STRICT: bool = typer.Option(False, "--strict", help="Stop at the first bad input line instead of reporting and skipping it.")

# How to reach a model server (openai:<model>); only --base-url enters the run configuration.
BASE_URL: str = typer.Option(None, "--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (default: the entry's, else $OPENAI_BASE_URL).")
CONCURRENCY: int = typer.Option(8, "--concurrency", help="Requests in flight to a model server (set --batch-size at least as high).")
TIMEOUT: float = typer.Option(120.0, "--timeout", help="Seconds a model server request may take before it is retried.")
RPM: int = typer.Option(None, "--rpm", help="At most this many requests per minute to a model server.")
TPM: int = typer.Option(None, "--tpm", help="At most this many tokens per minute to a model server (prompt estimate + max tokens).")
CACHE_DIR: Path = typer.Option(None, "--cache-dir", help="Request cache folder, shareable between runs (default: <run folder>/cache).")
RETRIES: int = typer.Option(5, "--retries", help="Retries of a failed server request (429, 5xx, timeouts, dropped connections).")
ALLOW_PICKLE: bool = typer.Option(False, "--allow-pickle", help="Load a checkpoint that has only pickle weights (pytorch_model.bin). "
                                   "Unpickling can run code: only for checkpoints you trust.")
REPORT_TO: str = typer.Option("none", "--report-to", help="Also log loss, learning rate, throughput and evaluation figures to a dashboard: "
                              "none, tensorboard (event files in <out>/tensorboard) or wandb. Not part of the run's configuration.")


ENGINE_OPTIONS = {"base_url": (str, BASE_URL), "concurrency": (int, CONCURRENCY), "timeout": (float, TIMEOUT), "rpm": (int, RPM),
                  "tpm": (int, TPM), "cache_dir": (Path, CACHE_DIR), "retries": (int, RETRIES), "allow_pickle": (bool, ALLOW_PICKLE)}


def engine_options(base_url: str | None, concurrency: int, timeout: float, rpm: int | None, tpm: int | None, cache_dir: Path | None,
                   retries: int, allow_pickle: bool = False):
    """The EngineOptions of the shared options above."""
    from annotaudit.models.base import EngineOptions

    if concurrency < 1 or timeout <= 0 or retries < 0 or (rpm is not None and rpm < 1) or (tpm is not None and tpm < 1):
        raise typer.BadParameter("--concurrency, --rpm and --tpm must be at least 1, --timeout above 0, --retries not negative")
    return EngineOptions(base_url=base_url, concurrency=concurrency, timeout=timeout, rpm=rpm, tpm=tpm,
                         cache_dir=str(cache_dir) if cache_dir else None, retries=retries, allow_pickle=allow_pickle)


def with_engine(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command that asks a model: typer sees the engine options after the command's own, and the command
    receives them as one `engine` (EngineOptions) instead."""
    own = [p for name, p in inspect.signature(command).parameters.items() if name != "engine"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
             for name, (kind, option) in ENGINE_OPTIONS.items()]

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        engine = engine_options(**{name: kwargs.pop(name) for name in ENGINE_OPTIONS})
        return command(*args, engine=engine, **kwargs)

    own_hints = types.SimpleNamespace(__annotations__={k: v for k, v in command.__annotations__.items() if k != "engine"})
    hints = typing.get_type_hints(own_hints, globalns=command.__globals__)  # `engine`'s type need not be importable here
    run.__signature__ = inspect.Signature(own + added)  # type: ignore[attr-defined]
    run.__annotations__ = {**hints, **{name: kind for name, (kind, _) in ENGINE_OPTIONS.items()}}
    del run.__wrapped__  # typer reads the signature above, not the command's own
    return run
