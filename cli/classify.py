"""`annotaudit classify ...`: MMBT trained on human labels against LLM labels."""

from __future__ import annotations

import typer

app = typer.Typer(help="Train MMBT on human labels and on LLM labels, and compare.", no_args_is_help=True)
