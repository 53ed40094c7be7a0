"""`annotate ...`: label a dataset zero-shot with an LLM or VLM (issue: annotate)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Label a dataset zero-shot with an LLM or a VLM and measure it against human labels.", no_args_is_help=True)
