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
    adjust: str = typer.Option("holm", "--adjust", help="Adjustment of the paired differences' p-values over the report: holm (family-wise error) or bh (false discovery rate)."),
    allow_unfinished: bool = typer.Option(False, "--allow-unfinished", help="Compare runs that are unfinished or edited since they were scored, marked (unfinished) in every table."),
    force: bool = FORCE,
) -> None:
    """Compare runs in tables shaped like the studies', every figure with a 95% interval, its n and clusters; paired differences adjusted for multiplicity.

    Example: annotaudit compare runs/pope-llava runs/pope-minerva runs/chair-* --out compare/ --label llava-it=runs/pope-llava-it
    """
    from annotaudit.compare import compare, partial_overlaps

    result = compare(runs, out, labels=label or [], resamples=resamples, seed=seed, formats=formats, force=force, adjustment=adjust,
                     allow_unfinished=allow_unfinished)
    typer.echo(f"{len(result['tables'])} tables, {resamples} resamples (seed {seed}), {result['comparisons']} paired differences "
               f"adjusted by {adjust} in {out}:")
    for path in result["files"]:
        typer.echo(f"  {path}")
    for line in partial_overlaps(result):
        typer.echo(line)
