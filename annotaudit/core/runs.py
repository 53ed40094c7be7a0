"""Run directories: a manifest beside the results, and JSONL logs that survive kill -9 and resume."""

from __future__ import annotations

import hashlib
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

from .io import read_json, write_json

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


def check_config(out: str | Path, config: dict[str, Any], force: bool = False) -> None:
    """Refuse a folder that holds a run with another configuration, unless forced (read-only, safe on every process)."""
    manifest = Path(out) / MANIFEST
    config = json.loads(json.dumps(config, default=str))
    if force or not manifest.exists():
        return
    old = read_json(manifest).get("config")
    if old != config:
        old = old if isinstance(old, dict) else {}
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        raise ConfigMismatch(f"{out} holds a run with another configuration (changed: {', '.join(changed)}); "
                             "use another output directory, or --force to discard the old results")


def fingerprint(path: str | Path | None) -> str | None:
    """What a run depends on in an input: a file's SHA-256, or a folder's file names and sizes."""
    if path is None:
        return None
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return "sha256:" + digest.hexdigest()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{f.relative_to(path)}\0{f.stat().st_size}\n".encode())
        return "files:" + digest.hexdigest()
    return None


class RunDir:
    """An output directory with a manifest; refuses to mix results of different configurations."""

    def __init__(self, path: str | Path, config: dict[str, Any], force: bool = False, outputs: Iterable[str] = ()):
        self.path = Path(path)
        self.config = json.loads(json.dumps(config, default=str))
        self.started = time.time()
        manifest_path = self.path / MANIFEST
        check_config(self.path, self.config, force)
        self.manifest: dict[str, Any] = read_json(manifest_path) if manifest_path.exists() else {}
        if self.manifest and self.manifest.get("config") != self.config:  # forced: the old results go
            for name in list(outputs) + [MANIFEST]:
                target = self.path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            self.manifest = {}
        self.path.mkdir(parents=True, exist_ok=True)
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
