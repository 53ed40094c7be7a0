"""`annotaudit lvlm ...`: build, train and evaluate LLaVA-NeXT LVLMs from any causal LLM."""

from __future__ import annotations

import typer

app = typer.Typer(help="Build, train and evaluate LLaVA-NeXT vision-language models from any causal LLM.", no_args_is_help=True)
