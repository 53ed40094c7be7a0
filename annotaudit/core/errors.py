"""Errors that point a user at the exact place of bad input."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input, located by file and line or by item id, so the user can go and fix it."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None, item: str | None = None):
        self.message, self.path, self.line, self.item = message, path, line, item
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        if item is not None:
            where += f"item {item}: "
        super().__init__(where + message)


def safe_path(root: str | Path, relative: str | Path) -> Path:
    """Join a dataset-relative path to its root, refusing any path that escapes the root."""
    base = Path(root).resolve()
    candidate = (base / relative).resolve()
    if candidate != base and base not in candidate.parents:
        raise InputError(f"path {str(relative)!r} escapes the dataset root {base}")
    return candidate


def iter_jsonl(path: str | Path, on_error=None):
    """Yield (line number, object) from a JSON Lines file (BOM and CRLF tolerated, blank lines skipped).

    A malformed or non-object line becomes an InputError naming file and line: raised, or handed
    to `on_error` and skipped, so a reader can report bad lines and keep going.
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    with open(path, encoding="utf-8-sig", newline=None) as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                problem = None if isinstance(rec, dict) else "expected a JSON object"
            except json.JSONDecodeError as exc:
                problem = f"malformed JSON: {exc.msg} (column {exc.colno})"
            if problem is None:
                yield n, rec
                continue
            err = InputError(problem, path=path, line=n)
            if on_error is None:
                raise err
            on_error(err)
