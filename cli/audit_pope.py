"""`audit pope ...`: build, run and score POPE."""

from __future__ import annotations

import typer

app = typer.Typer(help="POPE: poll a VLM about objects that are and are not in the image.", no_args_is_help=True)
