"""The answering layer: from a model name to the function that answers a batch of samples.

A command that asks a model (annotate run and its judge, audit pope run, audit chair run, lvlm eval)
says only what is its own: how a sample becomes a request, and how the model's output becomes a
record (`Generate` or `Score`, each with its parser). This module does the rest, the same way for
every command: the engine options for the run folder and what of them enters run.json, loading the
model, refusing a text model where images are needed, sending a text model no image, naming the
item whose image failed to load, and summing what a model server cost per batch (`Answerer.usage`,
which `core.runner.run_samples` records).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import safe_path
from annotaudit.core.runner import EngineUsage, Sample

from .base import EngineOptions, Generation, GenerationConfig, ImageLike, LoadedModel, Request, engine_config


@dataclass(frozen=True)
class Reply:
    """What the model made of one sample, as a command's parser reads it."""

    sample: Sample
    model: str  # the loaded model's name
    prompt: str  # the prompt as the model read it ("" for a score whose continuations did not need it)
    generation: Generation | None = None  # generate mode
    logprobs: list[float] | None = None  # score mode: one per continuation


Parse = Callable[[Reply], Any]


@dataclass(frozen=True)
class Generate:
    """Generate mode: decoding settings (fixed, or made from the batch) and the parser of each generation."""

    settings: GenerationConfig | Callable[[list[Sample]], GenerationConfig]
    parse: Parse

    def answer(self, model: LoadedModel, samples: list[Sample], requests: list[Request]) -> list[Any]:
        settings = self.settings(samples) if callable(self.settings) else self.settings
        gens = model.generate(requests, settings)
        return [self.parse(Reply(s, model.name, g.prompt, generation=g)) for s, g in zip(samples, gens)]


@dataclass(frozen=True)
class Score:
    """Score mode: the log-probability of candidate continuations. `continuations` is one list for every
    sample, or a function of the sample and its prompt as the model reads it (rendered only then)."""

    continuations: list[str] | Callable[[Sample, str], list[str]]
    parse: Parse

    def answer(self, model: LoadedModel, samples: list[Sample], requests: list[Request]) -> list[Any]:
        if callable(self.continuations):
            prompts = [model.render_prompt(r.prompt, r.image is not None) for r in requests]
            conts = [self.continuations(s, p) for s, p in zip(samples, prompts)]
        else:
            prompts, conts = [""] * len(samples), [list(self.continuations)] * len(samples)
        logps = model.score(requests, conts)
        return [self.parse(Reply(s, model.name, p, logprobs=lp)) for s, p, lp in zip(samples, prompts, logps)]


Mode = Generate | Score
RequestBuilder = Callable[[Sample], Request]


def prompt_and_image(images: str | Path | None = None) -> RequestBuilder:
    """Requests of samples whose input holds a prompt and an optional image file; with `images`, the file
    lies under that folder and may not leave it."""

    def request(sample: Sample) -> Request:
        image = sample.input.get("image")
        if image is not None and images is not None:
            image = safe_path(images, image)
        return Request(sample.input["prompt"], image)

    return request


def image_error_item(err: InputError, users: Iterable[tuple[str, ImageLike | None]]) -> InputError:
    """An image error raised while a batch loads its images, naming the first record (id, image) that uses the image."""
    if err.path is None or err.item is not None:
        return err
    bad = Path(err.path).resolve()
    for item, image in users:
        if isinstance(image, str | Path) and Path(image).resolve() == bad:
            return InputError(err.message, path=err.path, line=err.line, item=item)
    return err


class Answerer:
    """Answers a batch of samples with one loaded model: one request each, one model call, one parsed reply each.

    `usage` sums what the model's server cost over the batches answered here (zero for in-process models).
    """

    def __init__(self, model: LoadedModel, mode: Mode, request: RequestBuilder | None = None, item: Callable[[Sample], str] | None = None):
        self.model, self.mode = model, mode
        self.request = request or prompt_and_image()
        self.item = item or (lambda sample: sample.id)
        self.usage = EngineUsage(engine=model.usage.engine if model.usage is not None else None)

    def __call__(self, batch: list[Sample]) -> list[Any]:
        requests = [self._request(s) for s in batch]
        counter = self.model.usage
        before = counter.counts() if counter is not None else None
        try:
            return self.mode.answer(self.model, batch, requests)
        except InputError as err:
            raise image_error_item(err, [(self.item(s), r.image) for s, r in zip(batch, requests)]) from None
        finally:
            if counter is not None:
                self.usage.add(counter.counts(), before)

    def _request(self, sample: Sample) -> Request:
        request = self.request(sample)
        if request.image is not None and not self.model.accepts_images:
            return replace(request, image=None)  # a text model reads the prompt alone
        return request


@dataclass(frozen=True)
class Answering:
    """A model (a name, or one already loaded) and how to reach it; `needs_images` names a command that
    cannot use a text model. `device`, when given, wins over the device the runner hands over."""

    model: str | LoadedModel
    engine: EngineOptions = field(default_factory=EngineOptions)
    needs_images: str | None = None
    device: str | None = None

    @classmethod
    def for_run(cls, model: str | LoadedModel, out: str | Path, engine: EngineOptions | None = None, needs_images: str | None = None,
                device: str | None = None) -> Answering:
        """The model for a run folder: the request cache defaults to <out>/cache."""
        return cls(model, (engine or EngineOptions()).for_run(out), needs_images, device)

    @property
    def name(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.name

    def config(self) -> dict[str, Any]:
        """What of the engine options enters run.json's configuration."""
        return engine_config(self.engine)

    def load(self, device: str | None = None) -> LoadedModel:
        model = self.model
        if isinstance(model, str):
            from . import load_model

            model = load_model(model, device=self.device or device, engine=self.engine)
        if self.needs_images and not model.accepts_images:
            raise InputError(f"model {self.name!r} does not read images; {self.needs_images} needs a vision-language model")
        return model

    def answerer(self, mode: Mode, request: RequestBuilder | None = None, device: str | None = None,
                 item: Callable[[Sample], str] | None = None) -> Answerer:
        """Load the model and answer with it."""
        return Answerer(self.load(device), mode, request, item)

    def solver(self, mode: Mode, request: RequestBuilder | None = None, item: Callable[[Sample], str] | None = None) -> Callable[[str | None], Answerer]:
        """For `run_samples`: the model loads only when there is work left, on the device the runner gives."""
        return lambda device: self.answerer(mode, request, device, item)
