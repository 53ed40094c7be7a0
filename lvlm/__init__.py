"""Build, train and evaluate LLaVA-NeXT LVLMs from any causal LLM (the Italian recipe)."""

from __future__ import annotations

from pathlib import Path


def build_lvlm(*args, **kwargs) -> Path:
    from .build import build_lvlm as _build

    return _build(*args, **kwargs)


def train(*args, **kwargs) -> Path:
    from .train import train as _train

    return _train(*args, **kwargs)


def evaluate(*args, **kwargs) -> dict:
    from .evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def register_lvlm(name: str, path: str | Path, description: str = ""):
    """Make a trained LVLM loadable by name (audit pope, audit chair, lvlm eval) in this process."""
    from models import entry_from_checkpoint, register
    from models.base import ModelEntry

    entry = entry_from_checkpoint(str(path), name=name)
    return register(ModelEntry(**{**entry.to_dict(), "description": description or f"LVLM trained with annotaudit lvlm ({path})", "source": "lvlm"}))


__all__ = ["build_lvlm", "train", "evaluate", "register_lvlm"]
