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
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .errors import InputError
from .io import DigestCache, folder_files, read_json, write_json

console = Console(stderr=True, soft_wrap=True)  # a long path stays on one line, whole

MANIFEST = "run.json"
LAYOUT = ("kind", "config", "inputs", "items", "seed", "versions", "git_commit", "command", "host", "created", "sessions")
TRACKED_PACKAGES = ("annotaudit", "torch", "transformers", "accelerate", "peft", "tokenizers", "scikit-learn", "pandas")


class ConfigMismatch(RuntimeError):
    """An output directory already holds a run with another kind, configuration or inputs."""


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


@dataclass(frozen=True)
class RunKind:
    """The command that writes a kind of run folder and those that read it back (named when a folder is of the wrong kind)."""

    writes: str
    reads: tuple[str, ...] = ()

    def readers(self) -> str:
        return " or ".join(f"`annotaudit {c}`" for c in self.reads) if self.reads else "no command (its files are the result)"


# Every kind of run folder run.json names; a new kind is one line here.
RUN_KINDS: dict[str, RunKind] = {
    "annotate": RunKind("annotate run", ("annotate score", "annotate report", "classify train --labels", "compare")),
    "pope": RunKind("audit pope run", ("audit pope score --run", "compare")),
    "chair": RunKind("audit chair run", ("audit chair score --captions", "compare")),
    "vqa": RunKind("lvlm eval", ("lvlm score", "compare")),
    "classify": RunKind("classify train", ("classify predict --model", "compare")),
    "classify-predict": RunKind("classify predict"),
    "classify-compare": RunKind("classify compare", ("compare",)),
    "lvlm-build": RunKind("lvlm build", ("lvlm train --model",)),
    "lvlm-train": RunKind("lvlm train", ("lvlm eval --model", "audit pope run --model", "audit chair run --model")),
    "verdict": RunKind("annotate verdict", ("compare",)),
    "compare": RunKind("compare"),
    "demo": RunKind("demo"),
}


def _plain(value: Any) -> Any:
    """A value as run.json stores it (paths and other objects as text), so a fresh value compares equal to a read one."""
    return json.loads(json.dumps(value, default=str))


def _check_kind(kind: str) -> None:
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}; add it to annotaudit.core.runs.RUN_KINDS")


def describe_inputs(inputs: Mapping[str, str | Path | None] | None, cache_dir: str | Path | None = None) -> dict[str, dict[str, str | None]]:
    """run.json's `inputs`: each given file or folder by its absolute path and fingerprint (inputs not given are left out).

    `cache_dir` (the run folder, once it exists) keeps the files' hashes for the next run.
    """
    return {name: {"path": str(Path(path).resolve()), "fingerprint": fingerprint(path, cache_dir)}
            for name, path in (inputs or {}).items() if path is not None}


def _identity(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": manifest.get("kind"), "config": manifest.get("config"), "inputs": manifest.get("inputs", {})}


def _rerun_hint(manifest: Mapping[str, Any]) -> str:
    command = manifest.get("command")
    if isinstance(command, list) and command:
        return "rerun its command with --force to rewrite it: " + " ".join(["annotaudit", *map(str, command[1:])])
    return "rerun the command that wrote it with --force to rewrite it"


def check_kind(run_dir: str | Path, manifest: Mapping[str, Any], wanted: str | Iterable[str], command: str) -> str:
    """The folder's kind when `command` reads it; else one line naming the kind found and what reads it."""
    wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    where = Path(run_dir) / MANIFEST
    found = manifest.get("kind")
    if found is None:
        raise InputError(f"written before run folders recorded their kind, so `{command}` cannot tell what it holds; {_rerun_hint(manifest)}", path=where)
    if found not in wanted:
        known = RUN_KINDS.get(found)
        read_by = f" (read by {known.readers()})" if known else ""
        raise InputError(f"a {found!r} run folder{read_by}; `{command}` reads {' or '.join(repr(k) for k in wanted)} run folders", path=where)
    return str(found)


def check_config(out: str | Path, config: dict[str, Any], force: bool = False, *, kind: str,
                 inputs: dict[str, dict[str, str | None]] | None = None) -> None:
    """Refuse a folder that holds another run (another kind, configuration or inputs), unless forced (read-only, safe on every process).

    `inputs` is `describe_inputs(...)`: a changed input counts as another run, as a changed option does.
    """
    manifest_path = Path(out) / MANIFEST
    if force or not manifest_path.exists():
        return
    old = read_json(manifest_path)
    old = old if isinstance(old, dict) else {}
    new = {"kind": kind, "config": _plain(config), "inputs": inputs or {}}
    if _identity(old) == new:
        return
    if old.get("kind") is None:
        raise ConfigMismatch(f"{out} holds a run written before run folders recorded their kind; use another output directory, "
                             "or --force to discard the old results")
    if old.get("kind") != kind:
        raise ConfigMismatch(f"{out} holds a {old.get('kind')!r} run, not a {kind!r} run; use another output directory, "
                             "or --force to discard the old results")
    changed = [*_changed(old.get("config"), new["config"]), *(f"input {k}" for k in _changed(old.get("inputs"), new["inputs"]))]
    raise ConfigMismatch(f"{out} holds a run with another configuration (changed: {', '.join(changed)}); "
                         "use another output directory, or --force to discard the old results")


def _changed(old: Any, new: dict[str, Any]) -> list[str]:
    old = old if isinstance(old, dict) else {}
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def holds_other_run(out: str | Path, config: dict[str, Any], *, kind: str, inputs: dict[str, dict[str, str | None]] | None = None) -> bool:
    """Whether a folder holds another run (which --force discards); read-only. `inputs` as `describe_inputs` gives them."""
    manifest = Path(out) / MANIFEST
    if not manifest.exists():
        return False
    old = read_json(manifest)
    return _identity(old if isinstance(old, dict) else {}) != {"kind": kind, "config": _plain(config), "inputs": inputs or {}}


def fingerprint(path: str | Path | None, cache_dir: str | Path | None = None) -> str | None:
    """What a run depends on in an input: the SHA-256 of a file's bytes, or of a folder's file names and bytes.

    Every file is read in full the first time, images and the files found inside a --data folder
    included, so an edit that keeps a file's size is seen. With `cache_dir` (the run folder: RunDir
    passes its own) each file's hash is kept there in `.fingerprints.json` by path, size, mtime and
    ctime, so a rerun reads only the files that changed and costs one stat for each other file; a
    folder's files under `cache_dir` itself are left out. None for no path, or one that is neither
    a file nor a folder (a hub id).
    """
    if path is None:
        return None
    path = Path(path)
    if not (path.is_file() or path.is_dir()):
        return None
    cache = DigestCache(cache_dir)
    if path.is_file():
        found = "sha256:" + cache.digest(path)
    else:
        digest = hashlib.sha256()
        seen = set()
        for name, full, st in folder_files(path, skip=cache_dir):
            digest.update(f"{name}\0{cache.digest(full, st)}\n".encode())
            seen.add(full)
        cache.forget_under(path, seen)
        found = "sha256-files:" + digest.hexdigest()
    cache.save()
    return found


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
    """A run folder with its manifest, run.json; refuses to mix the results of different runs.

    A command that writes a run folder makes one, runs, then calls `finish()`:

        run = RunDir(out, {"epsilon": 0.15, "seed": 0}, kind="verdict",
                     inputs={"humans": humans_path, "llm": llm_run_dir}, items=len(items), force=force,
                     outputs=["metrics.json", "report.md", "report.html"])
        ...  # write the results into run.path
        run.finish(seconds_scoring=1.2)

    run.json then holds, in this order:

        kind      one of RUN_KINDS (add a line there for a new kind)
        config    the options that decide the results (progress and logging options stay out)
        inputs    {name: {path, fingerprint}} of each file or folder the results depend on (None paths left out)
        items     how many items the run is meant to produce (None when not known up front)
        seed, versions, git_commit, command, host, created, sessions (one entry per finish())

    A folder that holds a run of another kind, configuration or inputs is refused (ConfigMismatch)
    unless `force`, which deletes `outputs` and the manifest when `start()` runs. Constructing a
    RunDir takes the folder's lock and checks the folder; `start()` (called at once unless
    `start=False`) clears forced-out results and writes the manifest. A command that loads a model
    first defers `start()`, so a typo in the model name leaves no manifest behind.
    """

    def __init__(self, path: str | Path, config: dict[str, Any], *, kind: str, inputs: Mapping[str, str | Path | None] | None = None,
                 items: int | None = None, force: bool = False, outputs: Iterable[str] = (), start: bool = True):
        _check_kind(kind)
        self.path = Path(path)
        self.kind, self.config, self.items = kind, _plain(config), items
        self.started = time.time()
        self.outputs = list(outputs)
        self.lock = RunLock(self.path)
        self.inputs = describe_inputs(inputs, self.path)
        check_config(self.path, self.config, force, kind=kind, inputs=self.inputs)
        self.manifest: dict[str, Any] = {}
        if start:
            self.start()

    def holds_other_run(self) -> bool:
        """Whether the folder holds another run, which `start()` will discard (only reachable with force)."""
        return holds_other_run(self.path, self.config, kind=self.kind, inputs=self.inputs)

    def start(self) -> None:
        manifest_path = self.path / MANIFEST
        old = read_json(manifest_path) if manifest_path.exists() else {}
        if old and self.holds_other_run():  # forced: the old results go
            for name in self.outputs + [MANIFEST]:
                target = self.path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            old = {}
        self.manifest = {
            "kind": self.kind, "config": self.config, "inputs": self.inputs, "items": self.items, "seed": self.config.get("seed"),
            "versions": package_versions(), "git_commit": git_commit(), "command": sys.argv, "host": platform.node(),
            "created": old.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")), "sessions": old.get("sessions", []),
        }
        self.manifest.update({k: v for k, v in old.items() if k not in self.manifest})  # facts earlier sessions recorded
        write_json(manifest_path, self.manifest)

    def finish(self, **extra: Any) -> None:
        """Record this session's timing and any extra facts (throughput, counts) in the manifest; the layout's own keys stay as they are."""
        elapsed = time.time() - self.started
        self.manifest["sessions"].append({"ended": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(elapsed, 3), **extra})
        clashes = sorted(set(extra) & set(LAYOUT))
        if clashes:
            raise ValueError(f"finish() facts may not replace run.json's own keys: {', '.join(clashes)}")
        self.manifest.update(extra)
        write_json(self.path / MANIFEST, self.manifest)
        self.lock.release()


def draws_frames() -> bool:
    """Whether progress may be redrawn in place: stderr is a terminal and ANNOTAUDIT_NO_PROGRESS is not set."""
    return os.environ.get("ANNOTAUDIT_NO_PROGRESS") != "1" and console.is_terminal


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr; yields a function advance(n=1). A log file (stderr not a terminal)
    gets one line when the stage ends instead of redrawn frames."""
    if os.environ.get("ANNOTAUDIT_NO_PROGRESS") == "1":
        yield lambda n=1, note="": None
        return
    if not draws_frames():
        with _stage_line(description, total) as advance:
            yield advance
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1, note="": bar.update(task, advance=n, description=f"{description} · {note}" if note else description)


@contextmanager
def _stage_line(description: str, total: int | None) -> Iterator[Any]:
    """`description: done/total in Ns`, printed once when the stage ends (or is cut short)."""
    done, notes, started = 0, [""], time.perf_counter()

    def advance(n: int = 1, note: str = "") -> None:
        nonlocal done
        done += n
        notes[0] = note or notes[0]

    try:
        yield advance
    finally:
        shown = f"{description} · {notes[0]}" if notes[0] else description
        count = f"{done}/{total}" if total is not None else str(done)
        console.print(f"{shown}: {count} in {time.perf_counter() - started:.1f}s", markup=False, highlight=False)
