"""Run directories: a manifest beside the results, and JSONL logs that survive kill -9 and resume."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)

MANIFEST = "run.json"
TRACKED_PACKAGES = ("annotaudit", "torch", "transformers", "accelerate", "peft", "tokenizers", "scikit-learn", "pandas")


class ConfigMismatch(RuntimeError):
    """An output directory already holds a run with another configuration."""


def git_commit() -> str | None:
    """The commit of the annotaudit checkout, when it runs from one."""
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


class JsonlLog:
    """Append-only JSONL keyed by a field; a torn last line (kill -9 mid-write) is dropped on open."""

    def __init__(self, path: str | Path, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                json.loads(line)
            except json.JSONDecodeError:
                break
            good += len(line)
        if good != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(good)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)

    def read(self) -> list[dict[str, Any]]:
        return list(self)

    def done_keys(self) -> set[str]:
        return {str(rec[self.key]) for rec in self}

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())


class RunDir:
    """An output directory with a manifest; refuses to mix results of different configurations."""

    def __init__(self, path: str | Path, config: dict[str, Any], force: bool = False, outputs: Iterable[str] = ()):
        self.path = Path(path)
        self.config = json.loads(json.dumps(config, default=str))
        self.started = time.time()
        manifest_path = self.path / MANIFEST
        if manifest_path.exists():
            old = read_json(manifest_path).get("config")
            if old != self.config:
                if not force:
                    changed = sorted(k for k in set(old or {}) | set(self.config) if (old or {}).get(k) != self.config.get(k))
                    raise ConfigMismatch(
                        f"{self.path} holds a run with another configuration (changed: {', '.join(changed)}); "
                        "use another output directory, or --force to discard the old results"
                    )
                for name in list(outputs) + [MANIFEST]:
                    target = self.path / name
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        self.manifest: dict[str, Any] = read_json(manifest_path) if manifest_path.exists() else {}
        self.manifest.update(
            config=self.config,
            seed=self.config.get("seed"),
            versions=package_versions(),
            git_commit=git_commit(),
            command=sys.argv,
            host=platform.node(),
        )
        self.manifest.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.manifest.setdefault("sessions", [])
        write_json(manifest_path, self.manifest)

    def log(self, name: str, key: str = "id") -> JsonlLog:
        return JsonlLog(self.path / name, key=key)

    def write_json(self, name: str, obj: Any) -> Path:
        target = self.path / name
        write_json(target, obj)
        return target

    def finish(self, **extra: Any) -> None:
        """Record this session's timing and any extra facts (throughput, counts) in the manifest."""
        elapsed = time.time() - self.started
        self.manifest["sessions"].append({"ended": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(elapsed, 3), **extra})
        self.manifest.update(extra)
        write_json(self.path / MANIFEST, self.manifest)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr; yields a function advance(n=1)."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=os.environ.get("ANNOTAUDIT_NO_PROGRESS") == "1",
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
