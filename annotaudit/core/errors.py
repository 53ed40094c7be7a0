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
