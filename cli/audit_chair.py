"""`audit chair ...`: CHAIR hallucination rates of captions."""

from __future__ import annotations

import typer

app = typer.Typer(help="CHAIR: how many objects in a caption are not in the image.", no_args_is_help=True)
