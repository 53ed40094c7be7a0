"""Resume states that hold no pickle: tensors in safetensors, everything else in JSON.

Training resumes read only these two formats, so a file planted in a checkpoint folder can at
worst hold wrong numbers, never run code. torch and safetensors are imported on use.

Every checkpoint folder is written whole beside its place (`<name>.tmp`) and then swapped in, the
previous copy renamed to `<name>.old` for the moment of the swap. A failed write removes the
partial copy, so a full disk leaves the previous checkpoint; a kill during the swap leaves one
intact copy, which `recover` puts back in place before anything reads or writes the folder again.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import read_json, write_json, writing

TENSORS, STATE = "state.safetensors", "state.json"


def _flatten_optimizer(state: dict[int, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors, scalars = {}, {}
    for pid, values in state.items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, scalars


def beside(folder: Path, suffix: str) -> Path:
    return folder.with_name(f"{folder.name}.{suffix}")


def recover(folder: str | Path) -> Path:
    """Finish or undo a swap a kill interrupted: the intact copy ends up at `folder`; no .tmp or .old is left."""
    folder = Path(folder)
    tmp, old = beside(folder, "tmp"), beside(folder, "old")
    if not folder.exists() and old.is_dir():
        old.rename(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _sync_tree(folder: Path) -> None:
    """fsync every file under a folder, so the swap never publishes data still only in memory."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def swap_in(tmp: Path, folder: Path) -> Path:
    """Put a fully written `tmp` in the place of `folder`; the previous copy is removed once the new one is there."""
    _sync_tree(tmp)
    old = beside(folder, "old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


@contextlib.contextmanager
def folder_written_whole(folder: str | Path) -> Iterator[Path]:
    """Yield `<folder>.tmp` to write into; on success it replaces `folder`, on any failure it is removed.

    A write failure inside (a full disk, safetensors included) becomes one line naming the folder,
    or the file where the system names it.
    """
    folder = Path(folder)
    tmp = beside(folder, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with writing(folder):
            tmp.mkdir(parents=True)
            yield tmp
            swap_in(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def files_written_into(folder: str | Path, staging: str = "model.tmp") -> Iterator[Path]:
    """Yield a staging folder inside `folder`; once the block has written it all, each file moves into `folder`.

    For a model saved into a run folder beside run.json and the logs: a failed write (a full disk)
    removes the staged files and leaves the earlier ones; the error is one line naming the file.
    """
    folder = Path(folder)
    tmp = folder / staging
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with writing(folder):
            tmp.mkdir(parents=True)
            yield tmp
            _sync_tree(tmp)
            for path in sorted(tmp.iterdir()):
                target = folder / path.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(path, target)
            tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_state(folder: str | Path, optimizer: Any, scheduler: Any, trainer: dict[str, Any], params: dict[str, Any] | None = None) -> Path:
    """Optimizer, scheduler, RNG states, the trainer's own counters and (optionally) named parameters, written whole."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    opt = optimizer.state_dict()
    tensors, scalars = _flatten_optimizer(opt["state"])
    tensors["rng.torch"] = torch.get_rng_state()
    for name, value in (params or {}).items():
        tensors[f"param.{name}"] = value.detach().cpu().contiguous()
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = {
        "param_groups": opt["param_groups"], "optimizer_scalars": scalars, "scheduler": scheduler.state_dict(), "trainer": trainer,
        "rng": {"numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]], "python": [py_state[0], list(py_state[1]), py_state[2]]},
    }
    with folder_written_whole(folder) as tmp:
        with writing(tmp / TENSORS):
            save_file(tensors, str(tmp / TENSORS))
        write_json(tmp / STATE, meta)
    return Path(folder)


def load_state(folder: str | Path, optimizer: Any, scheduler: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Restore optimizer, scheduler and RNG states; (trainer counters, saved parameters), or None when there is no state."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    folder = recover(folder)
    if not (folder / STATE).is_file():
        return None
    if not (folder / TENSORS).is_file():
        raise InputError(f"the resume state is incomplete: {TENSORS} is missing beside {STATE}; --force starts the run over", path=folder)
    meta = read_json(folder / STATE)
    tensors = load_file(str(folder / TENSORS))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            pid, name = key[len("optimizer."):].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta["optimizer_scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    kind, keys, *rest = meta["rng"]["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = meta["rng"]["python"]
    random.setstate((version, tuple(internal), gauss))
    params = {key[len("param."):]: value for key, value in tensors.items() if key.startswith("param.")}
    return meta["trainer"], params
