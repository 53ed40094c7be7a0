"""The vocabulary every part of annotaudit shares: entries, requests, generations, loaded models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from annotaudit.core.errors import InputError

if TYPE_CHECKING:
    from annotaudit.core.runner import EngineUsage

TEXT = "text"
IMAGE_TEXT = "image+text"


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about a model: enough to load it and to prompt it right."""

    name: str
    backend: str
    checkpoint: str
    chat_template: str = "own"  # "own", or a built-in template name (see models.templates)
    dtype: str = "auto"
    modality: str = TEXT
    trust_remote_code: bool = False
    allow_pickle: bool = False  # load pytorch_model.bin (pickle) weights when a checkpoint has no safetensors
    gguf_file: str | None = None
    tokenizer_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "built-in"
    base_url: str | None = None  # an OpenAI-compatible server (backend "openai")
    api_key_env: str | None = None  # the environment variable that holds its key (default OPENAI_API_KEY); never the key itself
    served_name: str | None = None  # the model name the server knows (default: checkpoint)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationConfig:
    """Decoding settings. Greedy by default; `num_samples` > 1 needs sampling."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_samples: int = 1
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError("num_samples must be at least 1")
        if self.num_samples > 1 and not self.do_sample:
            raise ValueError("several samples per input need do_sample=True")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EngineOptions:
    """How to reach a model server, and whether to trust pickle weights. None of these change results,
    so none enter a run's configuration except `base_url`; in-process backends read only `allow_pickle`."""

    base_url: str | None = None
    concurrency: int = 8
    timeout: float = 120.0
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute (prompt estimate + max tokens)
    cache_dir: str | None = None  # request cache; None: no cache
    retries: int = 5
    backoff: float = 1.0  # first retry waits about this long (seconds), doubling, with jitter
    allow_pickle: bool = False  # in-process backends: load pickle-only weights (the user's explicit opt-in)

    def for_run(self, out: str | Path) -> EngineOptions:
        """These options for a run folder: the request cache defaults to <run folder>/cache."""
        return replace(self, cache_dir=self.cache_dir or str(Path(out) / "cache"))


def engine_config(engine: EngineOptions | None) -> dict[str, Any]:
    """What of the engine options enters a run's configuration: only a base URL (it names the server)."""
    return {"base_url": engine.base_url} if engine is not None and engine.base_url else {}


ImageLike = Image.Image | str | Path


@dataclass
class Request:
    """One model input: a user message and an optional image (PIL image or file path)."""

    prompt: str
    image: ImageLike | None = None


@dataclass
class Generation:
    """The outputs for one request: `num_samples` texts and how many tokens each one took."""

    texts: list[str]
    num_tokens: list[int]
    prompt: str = ""  # the prompt as the model saw it, chat template applied
    token_ids: list[list[int]] = field(default_factory=list)  # generated ids, end-of-sequence included

    @property
    def text(self) -> str:
        return self.texts[0]


class LoadedModel(ABC):
    """A model ready to answer. Every backend implements these two calls.

    A backend that sends requests to a server counts what they cost in its own `usage`; in-process models have none.
    """

    entry: ModelEntry
    usage: EngineUsage | None = None

    @abstractmethod
    def generate(self, requests: list[Request], config: GenerationConfig | None = None) -> list[Generation]:
        """Generate for a batch of requests; batched with left padding."""

    @abstractmethod
    def score(self, requests: list[Request], continuations: list[list[str]]) -> list[list[float]]:
        """Log-probability of each candidate continuation given its request (summed over tokens)."""

    @abstractmethod
    def render_prompt(self, prompt: str, has_image: bool) -> str:
        """The prompt with the chat template applied, as the model will read it."""

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def accepts_images(self) -> bool:
        return self.entry.modality == IMAGE_TEXT


def load_image(image: ImageLike) -> Image.Image:
    """Open an image as RGB; a missing, empty, truncated or undecodable file is an InputError naming it."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    path = Path(image)
    if not path.is_file():
        raise InputError("image not found", path=path)
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = "an empty file" if path.stat().st_size == 0 else str(exc).replace(str(path), "").replace("''", "").strip(" :")
        raise InputError(f"not a readable image ({reason})", path=path) from None
