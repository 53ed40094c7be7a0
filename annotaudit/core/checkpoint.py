"""Resume states that hold no pickle: tensors in safetensors, everything else in JSON.

Training resumes read only these two formats, so a file planted in a checkpoint folder can at
worst hold wrong numbers, never run code. torch and safetensors are imported on use.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

from .io import read_json, write_json

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


def save_state(folder: str | Path, optimizer: Any, scheduler: Any, trainer: dict[str, Any], params: dict[str, Any] | None = None) -> Path:
    """Optimizer, scheduler, RNG states, the trainer's own counters and (optionally) named parameters.

    Written beside, then swapped in whole, so a kill leaves one intact copy.
    """
    import numpy as np
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
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
    save_file(tensors, str(tmp / TENSORS))
    write_json(tmp / STATE, meta)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def load_state(folder: str | Path, optimizer: Any, scheduler: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Restore optimizer, scheduler and RNG states; (trainer counters, saved parameters), or None when there is no state."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / STATE).is_file():
        old = folder.with_name(folder.name + ".old")
        if not (old / STATE).is_file():
            return None
        folder = old
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
