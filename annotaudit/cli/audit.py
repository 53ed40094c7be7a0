"""`audit ...`: hallucination audits of vision-language models."""

from __future__ import annotations

import typer

from . import audit_chair, audit_pope

app = typer.Typer(help="Audit how much a vision-language model hallucinates: POPE and CHAIR.", no_args_is_help=True)
app.add_typer(audit_pope.app, name="pope")
app.add_typer(audit_chair.app, name="chair")
