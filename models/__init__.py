"""The one model registry every part of annotaudit calls: any model by name, the same interface."""

from __future__ import annotations

from .backends import BACKENDS, backend, pick_device, pick_dtype
from .base import IMAGE_TEXT, TEXT, Generation, GenerationConfig, LoadedModel, ModelEntry, Request, load_image
from .registry import ENTRY_POINT_GROUP, Registry, UnknownModel, entry_from_checkpoint, register, registry


def load_model(name: str | ModelEntry, device: str | None = None, dtype: str | None = None, trust_remote_code: bool | None = None) -> LoadedModel:
    """Load a model by registry name, `hf:<hub id or path>`, local path, or entry."""
    entry = name if isinstance(name, ModelEntry) else registry().resolve(name)
    if entry.backend not in BACKENDS:
        raise ValueError(f"model {entry.name!r} needs backend {entry.backend!r}, which is not installed; known: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[entry.backend](entry, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


__all__ = [
    "BACKENDS", "ENTRY_POINT_GROUP", "IMAGE_TEXT", "TEXT", "Generation", "GenerationConfig", "LoadedModel", "ModelEntry",
    "Registry", "Request", "UnknownModel", "backend", "entry_from_checkpoint", "load_image", "load_model", "pick_device",
    "pick_dtype", "register", "registry",
]
