"""The `annotaudit` app and the `annotate` / `audit` shortcuts."""

from __future__ import annotations

import sys

import typer

from annotaudit.core.errors import InputError
from annotaudit.core.runs import ConfigMismatch
from annotaudit.models import UnknownModel

from . import annotate, audit, classify, demo, lvlm, models

app = typer.Typer(
    help="annotaudit: can an LLM replace your annotators, how much does your VLM hallucinate, and Italian LVLMs.\n\n"
    "Example: annotaudit demo --out demo-out",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(annotate.app, name="annotate")
app.add_typer(audit.app, name="audit")
app.add_typer(lvlm.app, name="lvlm")
app.add_typer(classify.app, name="classify")
app.add_typer(models.app, name="models")
app.command("demo")(demo.demo_command)

USER_ERRORS = (InputError, ConfigMismatch, UnknownModel, FileNotFoundError)


def _run(typer_app: typer.Typer) -> None:
    """Run an app; a user's mistake prints one clear line instead of a traceback."""
    try:
        typer_app()
    except USER_ERRORS as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)


def main() -> None:
    _run(app)


def annotate_main() -> None:
    _run(annotate.app)


def audit_main() -> None:
    _run(audit.app)


if __name__ == "__main__":
    main()
