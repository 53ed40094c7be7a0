"""Run directories: a manifest beside the results, and JSONL logs that survive kill -9 and resume."""

from __future__ import annotations

import fcntl
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

from .errors import InputError
from .io import read_json, write_json

console = Console(stderr=True, soft_wrap=True)  # a long path stays on one line, whole

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


def holds_other_run(out: str | Path, config: dict[str, Any]) -> bool:
    """Whether a folder holds a run made with another configuration (which --force discards); read-only."""
    manifest = Path(out) / MANIFEST
    return manifest.exists() and read_json(manifest).get("config") != json.loads(json.dumps(config, default=str))


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


LOCK = ".lock"


class RunFolderBusy(InputError):
    """Another live process is writing this run folder."""


def output_folder(path: str | Path) -> Path:
    """Create (or accept) a run folder; an existing file in its place is a clear error, not a traceback."""
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise InputError("is a file, not a folder: choose another output folder", path=parent)
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder: {exc.strerror}", path=path) from None
    return path


class RunLock:
    """One writer per run folder: an exclusive lock held for the run's lifetime.

    The kernel drops the lock when its process dies, so a lock left by a killed run is taken over
    at once; the holder's host and pid are written beside it only to name it in the error.
    """

    _held: dict[Path, RunLock] = {}  # this process's locks: a run that raised leaves its lock to the next run here

    def __init__(self, folder: str | Path):
        self.path = (output_folder(folder) / LOCK).resolve()
        if self.path in RunLock._held:
            RunLock._held.pop(self.path).release()
        while True:
            try:
                self._fh = open(self.path, "a+")
            except OSError as exc:
                raise InputError(f"cannot write in the output folder: {exc.strerror}", path=Path(folder)) from None
            try:
                fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._fh.seek(0)
                holder = self._fh.read().strip() or "another process"
                self._fh.close()
                raise RunFolderBusy(f"{folder} is being written by {holder}; wait for it to finish or use another output folder") from None
            if self.path.exists() and os.stat(self.path).st_ino == os.fstat(self._fh.fileno()).st_ino:
                break
            self._fh.close()  # the holder removed the file as we opened it: lock the new one
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"host {platform.node()} pid {os.getpid()}\n")
        self._fh.flush()
        RunLock._held[self.path] = self

    def release(self) -> None:
        """Remove the lock file, then unlock: a waiter that opened the old file sees it gone and retries."""
        fh = getattr(self, "_fh", None)
        if fh is not None and not fh.closed:
            self.path.unlink(missing_ok=True)
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
        if RunLock._held.get(getattr(self, "path", None)) is self:
            del RunLock._held[self.path]

    __del__ = release


class RunDir:
    """An output directory with a manifest; refuses to mix results of different configurations.

    Constructing it takes the folder's lock and checks the configuration; `start()` (called at once
    unless `start=False`) clears forced-out results and writes the manifest. A command that loads
    a model first defers `start()`, so a typo in the model name leaves no manifest behind.
    """

    def __init__(self, path: str | Path, config: dict[str, Any], force: bool = False, outputs: Iterable[str] = (), start: bool = True):
        self.path = Path(path)
        self.config = json.loads(json.dumps(config, default=str))
        self.started = time.time()
        self.outputs = list(outputs)
        self.lock = RunLock(self.path)
        check_config(self.path, self.config, force)
        self.manifest: dict[str, Any] = {}
        if start:
            self.start()

    def start(self) -> None:
        manifest_path = self.path / MANIFEST
        self.manifest = read_json(manifest_path) if manifest_path.exists() else {}
        if self.manifest and self.manifest.get("config") != self.config:  # forced: the old results go
            for name in self.outputs + [MANIFEST]:
                target = self.path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            self.manifest = {}
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
        self.lock.release()


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
        yield lambda n=1, note="": bar.update(task, advance=n, description=f"{description} · {note}" if note else description)
