"""`annotaudit models`: see which models the registry knows."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from annotaudit.core.errors import InputError
from annotaudit.models import registry

app = typer.Typer(help="List the models annotaudit knows.\n\nExample: annotaudit models list", no_args_is_help=True)


@app.command("list")
def models_list_command(backend: str = typer.Option(None, help="Only models of this backend, e.g. causal, llava_next.")) -> None:
    """Every registered model with its backend, checkpoint and where it came from.

    Example: annotaudit models list --backend instructblip
    """
    reg = registry()
    known = sorted({e.backend for e in reg.entries()})
    if backend and backend not in known:
        raise InputError(f"no model has backend {backend!r}; backends: {', '.join(known)}")
    table = Table(title="annotaudit models")
    for col in ("name", "backend", "modality", "template", "checkpoint", "source"):
        table.add_column(col)
    for e in reg.entries():
        if backend and e.backend != backend:
            continue
        ckpt = e.checkpoint + (f" [{e.gguf_file}]" if e.gguf_file else "")
        table.add_row(e.name, e.backend, e.modality, e.chat_template, ckpt, e.source)
    Console(width=200).print(table)
    for err in reg.plugin_errors:
        typer.secho(f"plugin failed to load: {err}", fg="red", err=True)
