"""Backend names to the classes that load models, each class imported only when a model needs it.

A backend is a `LoadedModel` class named by a lazy "module:Class" target, so resolving a name,
listing models or loading a model behind a server never imports torch. The built-in backends are
listed below; a plugin package adds its own through an entry point,

    [project.entry-points."annotaudit.backends"]
    my-backend = "my_package.backend:MyModel"

and code already running can register a class with the `backend("name")` decorator.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import TypeVar

from annotaudit.core.errors import InputError

from .base import LoadedModel

BACKEND_ENTRY_POINT_GROUP = "annotaudit.backends"

BUILTIN_BACKENDS: dict[str, str] = {
    "causal": "annotaudit.models.backends:CausalLM",
    "gguf": "annotaudit.models.backends:GGUFLM",
    "seq2seq": "annotaudit.models.backends:Seq2SeqLM",
    "llava": "annotaudit.models.backends:LlavaModel",
    "llava_next": "annotaudit.models.backends:LlavaNextModel",
    "instructblip": "annotaudit.models.backends:InstructBlipModel",
    "openai": "annotaudit.models.openai_backend:OpenAIModel",
    "vllm": "annotaudit.models.vllm_backend:VLLMModel",
}

ModelClass = TypeVar("ModelClass", bound=type[LoadedModel])


class Backends(Mapping[str, type[LoadedModel]]):
    """Backend names to classes. `in`, `len` and iteration read only names; `[name]` imports the class.

    Built-ins first, then plugins' entry points (read on first use); a plugin may not take a name that is
    already registered, and its problem is kept in `plugin_errors`. The decorator replaces, as code asks.
    """

    def __init__(self, targets: Mapping[str, str] = BUILTIN_BACKENDS):
        self._targets: dict[str, str | type[LoadedModel]] = dict(targets)
        self._sources = dict.fromkeys(targets, "built-in")
        self.plugin_errors: list[str] = []
        self._plugins_read = False

    def add(self, name: str, target: str | type[LoadedModel], source: str) -> None:
        self._targets[name] = target
        self._sources[name] = source

    def load_plugins(self) -> None:
        """Read the names and targets that plugins declare; their modules load only when a model needs them."""
        if self._plugins_read:
            return
        self._plugins_read = True
        for ep in metadata.entry_points(group=BACKEND_ENTRY_POINT_GROUP):
            source = f"plugin:{ep.dist.name if ep.dist else ep.value}"
            if ep.name in self._targets:
                self.plugin_errors.append(f"{source} ({ep.value}): backend {ep.name!r} is already registered ({self._sources[ep.name]})")
            else:
                self.add(ep.name, f"{ep.module}:{ep.attr}", source)

    def target(self, name: str) -> str:
        """Where a backend's class lives, as "module:Class"."""
        self.load_plugins()
        found = self._targets[name]
        return found if isinstance(found, str) else f"{found.__module__}:{found.__qualname__}"

    def source(self, name: str) -> str:
        self.load_plugins()
        return self._sources[name]

    def __getitem__(self, name: str) -> type[LoadedModel]:
        self.load_plugins()
        found = self._targets[name]
        if isinstance(found, str):
            try:
                found = pkgutil.resolve_name(found)
            except (ImportError, AttributeError, ValueError) as exc:
                raise InputError(f"backend {name!r} ({self._targets[name]}, {self._sources[name]}) cannot be imported: {exc}") from exc
            if not (isinstance(found, type) and issubclass(found, LoadedModel)):
                raise InputError(f"backend {name!r} ({self._targets[name]}, {self._sources[name]}) is not a LoadedModel class")
            self._targets[name] = found
        return found

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        self.load_plugins()
        return iter(list(self._targets))

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._targets)


BACKENDS = Backends()


def backend(name: str) -> Callable[[ModelClass], ModelClass]:
    """Register a backend class under a name from running code (a package declares an entry point instead)."""

    def deco(cls: ModelClass) -> ModelClass:
        BACKENDS.add(name, cls, source=f"backend() in {cls.__module__}")
        return cls

    return deco
