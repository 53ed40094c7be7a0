"""The one model registry every part of annotaudit calls: any model by name, the same interface.

Each backend's module (and with it torch and transformers, or httpx) loads when a model needs it
(see `backend_registry`), so commands that only read files start fast and server models never import torch.
"""

from __future__ import annotations

from typing import Any

from annotaudit.core.errors import InputError

from .backend_registry import BACKEND_ENTRY_POINT_GROUP, BACKENDS, backend
from .base import IMAGE_TEXT, TEXT, EngineOptions, Generation, GenerationConfig, LoadedModel, ModelEntry, Request, load_image
from .registry import ENTRY_POINT_GROUP, Registry, UnknownModel, entry_from_checkpoint, register, registry

_BACKEND_NAMES = ("pick_device", "pick_dtype")


def __getattr__(name: str) -> Any:
    if name in _BACKEND_NAMES:
        from . import backends

        return getattr(backends, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(name: str | ModelEntry, device: str | None = None, dtype: str | None = None, trust_remote_code: bool | None = None,
               allow_pickle: bool = False, engine: EngineOptions | None = None) -> LoadedModel:
    """Load a model by registry name, `hf:<hub id or path>`, local path, or entry.

    Weights come from safetensors (or GGUF); `allow_pickle` lets a checkpoint that has only pickle
    weights load, for users who trust it. `engine` says how to reach a model server (`openai:` models);
    in-process backends ignore it.
    """
    from dataclasses import replace

    entry = name if isinstance(name, ModelEntry) else registry().resolve(name)
    if allow_pickle or (engine is not None and engine.allow_pickle):
        entry = replace(entry, allow_pickle=True)
    if entry.backend not in BACKENDS:
        raise InputError(f"model {entry.name!r} needs backend {entry.backend!r}, which is not installed; known: {', '.join(sorted(BACKENDS))}")
    cls = BACKENDS[entry.backend]
    extra = {"engine": engine} if getattr(cls, "takes_engine_options", False) else {}
    return cls(entry, device=device, dtype=dtype, trust_remote_code=trust_remote_code, **extra)


__all__ = [
    "BACKENDS", "BACKEND_ENTRY_POINT_GROUP", "ENTRY_POINT_GROUP", "IMAGE_TEXT", "TEXT", "EngineOptions", "Generation", "GenerationConfig", "LoadedModel", "ModelEntry",
    "Registry", "Request", "UnknownModel", "backend", "entry_from_checkpoint", "load_image", "load_model", "pick_device",
    "pick_dtype", "register", "registry",
]
