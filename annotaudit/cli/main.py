"""The `annotaudit` app and the `annotate` / `audit` shortcuts."""

from __future__ import annotations

import csv
import errno
import os
import re
import sys
import zlib

import typer

from annotaudit.core.errors import InputError, RequestFailed, RunIncomplete
from annotaudit.core.runs import ConfigMismatch
from annotaudit.models import UnknownModel

from . import annotate, audit, classify, compare, demo, lvlm, models

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
app.command("compare")(compare.compare_command)

USER_ERRORS = (InputError, ConfigMismatch, UnknownModel, FileNotFoundError)
# What the system says about a file a user pointed at; any other OSError is a bug and keeps its traceback.
FILE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EEXIST: "a file is in the way (a folder was expected here)",
    errno.EISDIR: "is a folder, not a file",
    errno.ENAMETOOLONG: "file name too long",
}


def user_error(exc: BaseException) -> str | None:
    """One line for an expected failure (bad input, a full or read-only disk, a corrupt file), else None."""
    if isinstance(exc, USER_ERRORS):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in FILE_ERRNOS:
        where = exc.filename2 if exc.errno == errno.EISDIR and exc.filename2 else exc.filename
        return f"{where}: {FILE_ERRNOS[exc.errno]}" if where else FILE_ERRNOS[exc.errno]
    if type(exc).__name__ == "UnidentifiedImageError" or (isinstance(exc, OSError) and "image file is truncated" in str(exc)):
        return f"not a readable image: {exc}"
    if isinstance(exc, zlib.error | EOFError) or type(exc).__name__ == "BadGzipFile":
        return f"a compressed file is corrupt or cut short: {exc}"
    if isinstance(exc, csv.Error):
        return f"malformed CSV: {exc}"
    if isinstance(exc, re.error) or type(exc).__module__.startswith("regex"):
        return f"bad regular expression: {exc}"
    return None


def quiet_libraries() -> None:
    """transformers' info and warning lines and its own progress bars stay out of the command's output
    (TRANSFORMERS_VERBOSITY=warning brings its warnings back); annotaudit reports its own problems."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _run(typer_app: typer.Typer) -> None:
    """Run an app; a user's mistake prints one clear line instead of a traceback (ANNOTAUDIT_DEBUG=1 shows it)."""
    quiet_libraries()
    try:
        typer_app()
    except (RunIncomplete, RequestFailed) as exc:  # a model server failed some requests; a rerun retries only those
        typer.secho(f"incomplete: {exc}", fg="yellow", err=True)
        sys.exit(3)
    except Exception as exc:
        message = user_error(exc)
        if message is None or os.environ.get("ANNOTAUDIT_DEBUG") == "1":
            raise
        typer.secho(f"error: {message}", fg="red", err=True)
        sys.exit(2)


def main() -> None:
    _run(app)


def annotate_main() -> None:
    _run(annotate.app)


def audit_main() -> None:
    _run(audit.app)


if __name__ == "__main__":
    main()
