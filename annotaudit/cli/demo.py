"""`annotaudit demo`: the main job, end to end on a CPU with nothing to download."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_command(out: Path = typer.Option(Path("demo-out"), "--out", help="Where the demo writes its results and report."),
                 quick: bool = typer.Option(False, help="A shorter run, for CI."),
                 seed: int = typer.Option(0, help="Seed of the world, the training and the bootstrap.")) -> None:
    """Run the embedded end-to-end demo.

    Example: annotaudit demo --out demo-out
    """
    from annotaudit.demo.pipeline import run_demo

    run_demo(out, quick=quick, seed=seed)
