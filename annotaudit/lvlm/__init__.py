"""Build, train and evaluate LLaVA-NeXT LVLMs from any causal LLM (the Italian recipe).

Nothing heavy loads with the package: `compare` reads `lvlm eval` folders without torch. The
functions load on first use, under names unlike their submodules' (`train_lvlm`, not `train`),
because importing the submodule `lvlm.train` would replace a package attribute of that name.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

# public name -> (submodule, function)
LAZY = {"build_lvlm": ("build", "build_lvlm"), "train_lvlm": ("train", "train"), "evaluate_lvlm": ("evaluate", "evaluate"),
        "rescore_lvlm": ("evaluate", "rescore_eval"), "EvalConfig": ("evaluate", "EvalConfig")}


def __getattr__(name: str) -> Any:
    if name not in LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = LAZY[name]
    return getattr(import_module(f"{__name__}.{module}"), attribute)


def register_lvlm(name: str, path: str | Path, description: str = ""):
    """Make a trained LVLM loadable by name (audit pope, audit chair, lvlm eval) in this process."""
    from annotaudit.models import entry_from_checkpoint, register
    from annotaudit.models.base import ModelEntry

    entry = entry_from_checkpoint(str(path), name=name)
    return register(ModelEntry(**{**entry.to_dict(), "description": description or f"LVLM trained with annotaudit lvlm ({path})", "source": "lvlm"}))


__all__ = ["EvalConfig", "build_lvlm", "train_lvlm", "evaluate_lvlm", "rescore_lvlm", "register_lvlm"]
