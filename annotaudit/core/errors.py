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


def require_minimum(config: object, names: tuple[str, ...], minimum: int) -> None:
    """Refuse the first of a configuration's `names` below `minimum`, named as the command-line option that sets it."""
    for name in names:
        value = getattr(config, name)
        if value < minimum:
            bound = f"at least {minimum}" if minimum else "0 or more"
            raise InputError(f"--{name.replace('_', '-')} must be {bound} (got {value})")


class RequestFailed(RuntimeError):
    """Requests to a model server that still failed after their retries; `errors` maps each failed
    request's position in the batch to its error text. Its items are never answered from it."""

    def __init__(self, errors: dict[int, str], total: int):
        self.errors = errors
        first = next(iter(errors.values()), "")
        super().__init__(f"{len(errors)} of {total} requests failed; first: {first}")


class RunIncomplete(RuntimeError):
    """A run finished with items that failed; they are listed in failures.jsonl and a rerun retries them."""

    def __init__(self, failed: int, path: str | Path):
        self.failed, self.path = failed, path
        super().__init__(f"{failed} item(s) failed (listed in {path}); rerun the same command to retry only them")
