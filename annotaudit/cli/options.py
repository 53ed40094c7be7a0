"""Options that several commands share, defined once so their names and help read the same everywhere."""

from __future__ import annotations

from pathlib import Path

import typer

MODEL: str = typer.Option(..., "--model", help="Registry name, hf:<hub id or path>, or a local model folder (see `annotaudit models list`).")
RUN_FOLDER: Path = typer.Option(
    ..., "--out", help="Run folder: run.json, records.jsonl, metrics.json, problems.jsonl, report.md/html (a rerun resumes it)."
)
FORCE: bool = typer.Option(False, "--force", help="Discard an earlier run in --out made with other settings or other input files.")
STRICT: bool = typer.Option(False, "--strict", help="Stop at the first bad input line instead of reporting and skipping it.")
