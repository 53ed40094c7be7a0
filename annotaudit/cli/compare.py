"""`annotaudit compare`: one report across run folders, with bootstrap intervals."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import FORCE


def compare_command(
    runs: list[Path] = typer.Argument(..., help="Run folders of annotate, audit pope, audit chair, lvlm eval or classify, in any mix."),
    out: Path = typer.Option(..., "--out", help="Folder for report.html, report.md, report.tex, tables/*.csv, comparison.json and run.json."),
    label: list[str] = typer.Option(None, "--label", help="NAME=RUN_DIR: show that run as NAME (tells apart two runs of one model; repeatable)."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples for every interval and difference."),
    seed: int = typer.Option(0, "--seed", help="Seed of the resampling: the same seed gives the same intervals."),
    formats: str = typer.Option("html,md,csv,latex", "--format", help="Any of html, md, csv, latex, comma-separated."),
    force: bool = FORCE,
) -> None:
    """Compare runs in tables shaped like the studies', every figure with a 95% bootstrap interval.

    Example: annotaudit compare runs/pope-llava runs/pope-minerva runs/chair-* --out compare/ --label llava-it=runs/pope-llava-it
    """
    from annotaudit.compare import compare

    result = compare(runs, out, labels=label or [], resamples=resamples, seed=seed, formats=formats, force=force)
    typer.echo(f"{len(result['tables'])} tables, {resamples} resamples (seed {seed}) in {out}:")
    for path in result["files"]:
        typer.echo(f"  {path}")
