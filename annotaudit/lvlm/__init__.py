"""Build, train and evaluate LLaVA-NeXT LVLMs from any causal LLM (the Italian recipe)."""

from __future__ import annotations

from pathlib import Path

# Imported eagerly: a lazy wrapper named like its submodule (train, evaluate) is replaced by the
# submodule itself as soon as anything imports lvlm.train or lvlm.evaluate.
from .build import build_lvlm
from .evaluate import evaluate
from .train import train


def register_lvlm(name: str, path: str | Path, description: str = ""):
    """Make a trained LVLM loadable by name (audit pope, audit chair, lvlm eval) in this process."""
    from annotaudit.models import entry_from_checkpoint, register
    from annotaudit.models.base import ModelEntry

    entry = entry_from_checkpoint(str(path), name=name)
    return register(ModelEntry(**{**entry.to_dict(), "description": description or f"LVLM trained with annotaudit lvlm ({path})", "source": "lvlm"}))


__all__ = ["build_lvlm", "train", "evaluate", "register_lvlm"]
