"""`annotaudit models`: see which models the registry knows, and which GGUF models are cached."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from annotaudit.core.errors import InputError
from annotaudit.models import registry
from annotaudit.models.gguf_cache import CachedModel, cached_models, file_sha256, gguf_cache_dir, human_bytes

app = typer.Typer(help="List the models annotaudit knows.\n\nExample: annotaudit models list", no_args_is_help=True)


def _cached_size(entry_checkpoint: str, gguf_file: str, cached: list[CachedModel]) -> str:
    path = Path(entry_checkpoint).expanduser() / gguf_file
    if not path.is_file():
        return "-"
    if not any(c.complete for c in cached):
        return "no"
    sha = file_sha256(path)
    sizes = [f"{c.dtype} {human_bytes(c.bytes)}" for c in cached if c.complete and c.gguf_sha256 == sha]
    return ", ".join(sizes) or "no"


def _cache_table(cached: list[CachedModel]) -> Table:
    table = Table(title=f"GGUF model cache: {gguf_cache_dir()}")
    for col in ("folder", "gguf file", "dtype", "transformers", "size", "state"):
        table.add_column(col)
    for c in cached:
        table.add_row(c.folder.name, c.gguf_file, c.dtype, c.transformers, human_bytes(c.bytes), "complete" if c.complete else "incomplete (not used)")
    return table


@app.command("list")
def models_list_command(backend: str = typer.Option(None, help="Only models of this backend, e.g. causal, llava_next.")) -> None:
    """Every registered model with its backend, checkpoint and where it came from; GGUF models also say
    whether their de-quantised weights are cached, and the cache's folders are listed with their sizes.

    Example: annotaudit models list --backend instructblip
    """
    reg = registry()
    known = sorted({e.backend for e in reg.entries()})
    if backend and backend not in known:
        raise InputError(f"no model has backend {backend!r}; backends: {', '.join(known)}")
    cached = cached_models()
    table = Table(title="annotaudit models")
    for col in ("name", "backend", "modality", "template", "checkpoint", "source", "cached"):
        table.add_column(col)
    for e in reg.entries():
        if backend and e.backend != backend:
            continue
        ckpt = e.checkpoint + (f" [{e.gguf_file}]" if e.gguf_file else "")
        table.add_row(e.name, e.backend, e.modality, e.chat_template, ckpt, e.source, _cached_size(e.checkpoint, e.gguf_file, cached) if e.gguf_file else "")
    console = Console(width=200)
    console.print(table)
    if cached:
        console.print(_cache_table(cached))
        console.print(f"{human_bytes(sum(c.bytes for c in cached))} in {len(cached)} folder(s); delete a folder (or the whole {gguf_cache_dir()}) to clear it.")
    else:
        console.print(f"GGUF model cache: {gguf_cache_dir()} (empty)")
    for err in reg.plugin_errors:
        typer.secho(f"plugin failed to load: {err}", fg="red", err=True)
