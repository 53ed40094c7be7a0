"""Backends over transformers. Each turns requests into a prompt prefix (ids or embeddings) and
shares one generate and one score path; vision backends encode each distinct image once.
Their names are listed in `backend_registry.BUILTIN_BACKENDS`, which imports this module on first use."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from annotaudit.core.runs import draws_frames

from . import gguf_cache
from .backend_registry import BACKENDS, backend  # noqa: F401  (plugins import the decorator from here too)
from .base import Generation, GenerationConfig, LoadedModel, ModelEntry, Request, load_image
from .registry import loading
from .templates import render_builtin, render_own


def pick_device(device: str | None = None) -> torch.device:
    """cuda, then mps, then cpu, unless the user says otherwise."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' means bf16 on GPUs that have it, fp16 on other accelerators, fp32 on the CPU."""
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def _image_key(image: Any) -> Any:
    return str(image) if not hasattr(image, "size") else id(image)


class HFModel(LoadedModel):
    """Shared machinery; subclasses say how to load and how to build the prompt prefix."""

    is_encoder_decoder = False

    def __init__(self, entry: ModelEntry, device: str | None = None, dtype: str | None = None, trust_remote_code: bool | None = None):
        self.entry = entry
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype or entry.dtype, self.device)
        self.trust_remote_code = entry.trust_remote_code if trust_remote_code is None else trust_remote_code
        self.model, self.processor = self._load_checked()
        self.model.eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"

    # loading -------------------------------------------------------------------------------

    def _load_checked(self) -> tuple[Any, Any]:
        """Load, turning a missing folder, pickle-only weights or a failed load into one clear line."""
        with loading(self.entry.checkpoint, allow_pickle=self.entry.allow_pickle, needs_config=not self.entry.gguf_file):
            return self._load()

    def _load_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"dtype": self.dtype, "trust_remote_code": self.trust_remote_code}
        if not self.entry.gguf_file:
            kw["use_safetensors"] = not self.entry.allow_pickle or None
        if self.device.type != "cpu":
            kw["device_map"] = str(self.device)
        return kw

    def _load(self) -> tuple[Any, Any]:
        raise NotImplementedError

    # prompts -------------------------------------------------------------------------------

    def render_prompt(self, prompt: str, has_image: bool) -> str:
        template = self.entry.chat_template
        if template == "own":
            holder = self.processor if has_image else self.tokenizer
            if getattr(holder, "chat_template", None):
                return render_own(holder, prompt, has_image)
            template = "raw"
        return render_builtin(template, prompt, self._image_token() if has_image else None)

    def _image_token(self) -> str | None:
        return getattr(self.processor, "image_token", None) or "<image>"

    def _adds_bos(self, text: str) -> bool:
        bos = self.tokenizer.bos_token
        return not (bos and text.startswith(bos))

    # prefix: what the language model reads before the answer ----------------------------------

    def _prefix(self, requests: Sequence[Request], prompts: list[str]) -> dict[str, torch.Tensor]:
        """Left-padded ids and mask (and, for vision models, embeddings) of the rendered prompts."""
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=self._adds_bos(prompts[0]))
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    def _embed_rows(self, prefix: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings for token rows that start with the prefix (vision models add images)."""
        return self.model.get_input_embeddings()(ids)

    def _lm(self) -> Any:
        """The module that reads prefix embeddings and predicts tokens."""
        return self.model

    # generation ----------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, requests: list[Request], config: GenerationConfig | None = None) -> list[Generation]:
        config = config or GenerationConfig()
        results: list[Generation | None] = [None] * len(requests)
        for group in self._groups(requests):
            batch = [requests[i] for i in group]
            prompts = [self.render_prompt(r.prompt, r.image is not None) for r in batch]
            prefix = self._prefix(batch, prompts)
            if config.seed is not None:
                torch.manual_seed(config.seed)
            out = self._generate_ids(prefix, self._gen_kwargs(config))
            k = config.num_samples
            for j, i in enumerate(group):
                rows = out[j * k : (j + 1) * k]
                counts = [self._count_tokens(r) for r in rows]
                results[i] = Generation(
                    texts=[self.tokenizer.decode(r, skip_special_tokens=True).strip() for r in rows],
                    num_tokens=counts,
                    prompt=prompts[j],
                    token_ids=[r[:n].tolist() for r, n in zip(rows, counts)],
                )
        return results  # type: ignore[return-value]

    def _groups(self, requests: Sequence[Request]) -> list[list[int]]:
        """Text-only and image requests go through the model separately."""
        with_image = [i for i, r in enumerate(requests) if r.image is not None]
        without = [i for i, r in enumerate(requests) if r.image is None]
        return [g for g in (without, with_image) if g]

    def _gen_kwargs(self, config: GenerationConfig) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "do_sample": config.do_sample,
            "num_return_sequences": config.num_samples,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if config.do_sample:
            kw.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw

    def _generate_ids(self, prefix: dict[str, torch.Tensor], kw: dict[str, Any]) -> torch.Tensor:
        """New tokens only, one row per sample."""
        out = self.model.generate(input_ids=prefix["input_ids"], attention_mask=prefix["attention_mask"], **kw)
        return out[:, prefix["input_ids"].shape[1] :]

    def _count_tokens(self, row: torch.Tensor) -> int:
        """Generated tokens up to and including the first end-of-sequence (generate pads only after it)."""
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        for n, tok in enumerate(row.tolist()):
            if tok in eos_ids:
                return n + 1
        return len(row)

    # scoring -------------------------------------------------------------------------------

    @torch.inference_mode()
    def score(self, requests: list[Request], continuations: list[list[str]]) -> list[list[float]]:
        if len(requests) != len(continuations):
            raise ValueError("one list of continuations per request")
        results: list[list[float]] = [[] for _ in requests]
        for group in self._groups(requests):
            batch = [requests[i] for i in group]
            prompts = [self.render_prompt(r.prompt, r.image is not None) for r in batch]
            prefix = self._prefix(batch, prompts)
            scores = self._score_prefix(prefix, [continuations[i] for i in group])
            for j, i in enumerate(group):
                results[i] = scores[j]
        return results

    def _continuation_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"continuation {text!r} has no tokens")
        return ids

    def _score_prefix(self, prefix: dict[str, torch.Tensor], continuations: list[list[str]]) -> list[list[float]]:
        """Decoder-only: append each continuation to its (unpadded) prefix, right-pad, read log-probs."""
        rows, owners, spans = [], [], []
        for b, conts in enumerate(continuations):
            ids = prefix["input_ids"][b][prefix["attention_mask"][b].bool()].tolist()
            for c in conts:
                cont = self._continuation_ids(c)
                rows.append(ids + cont)
                owners.append(b)
                spans.append((len(ids), len(cont)))
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids_t = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        embeds = self._embed_rows({**prefix, "owners": torch.tensor(owners, device=self.device)}, ids_t)
        logits = self._lm()(inputs_embeds=embeds, attention_mask=mask).logits.float()
        logprobs = F.log_softmax(logits, dim=-1)
        flat = []
        for r, (start, n) in enumerate(spans):
            targets = ids_t[r, start : start + n]
            flat.append(logprobs[r, start - 1 : start - 1 + n].gather(-1, targets[:, None]).sum().item())
        out, k = [], 0
        for conts in continuations:
            out.append(flat[k : k + len(conts)])
            k += len(conts)
        return out


class CausalLM(HFModel):
    """Any decoder-only LM: Llama, Mistral, Vicuna, OpenLLaMA, Minerva, EuroLLM, Velvet, MIIA, SmolLM2."""

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        extra = {"gguf_file": self.entry.gguf_file} if self.entry.gguf_file else {}
        tok = AutoTokenizer.from_pretrained(self.entry.checkpoint, trust_remote_code=self.trust_remote_code, **extra, **self.entry.tokenizer_kwargs)
        model = AutoModelForCausalLM.from_pretrained(self.entry.checkpoint, **self._load_kwargs(), **extra)
        return model, tok


class GGUFLM(CausalLM):
    """A GGUF file, de-quantized by transformers into an ordinary causal LM. The first load of a local file
    keeps the result as safetensors in the model cache (see models.gguf_cache); later loads read that."""

    def __init__(self, entry: ModelEntry, *args: Any, **kwargs: Any):
        if not entry.gguf_file:
            raise ValueError(f"model {entry.name!r}: a gguf entry needs gguf_file")
        super().__init__(entry, *args, **kwargs)

    def _load(self) -> tuple[Any, Any]:
        gguf = Path(self.entry.checkpoint).expanduser() / str(self.entry.gguf_file)
        if not gguf_cache.cache_enabled() or not gguf.is_file():
            return super()._load()
        key = gguf_cache.cache_key(gguf, str(self.dtype).removeprefix("torch."), self.entry.tokenizer_kwargs)
        folder = gguf_cache.lookup(gguf, key)
        if folder is not None:
            return self._load_cached(folder)
        with _quiet_conversion():
            model, tok = super()._load()
        _drop_gguf_marks(model)
        try:
            gguf_cache.store(gguf, key, model, tok)
        except OSError as exc:
            warnings.warn(f"{gguf_cache.gguf_cache_dir()}: could not keep the de-quantised model ({exc}); the next load de-quantises again", stacklevel=2)
        return model, tok

    def _load_cached(self, folder: Path) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder, **self.entry.tokenizer_kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, **{**self._load_kwargs(), "use_safetensors": True, "trust_remote_code": False})
        return model, tok


@contextmanager
def _quiet_conversion() -> Iterator[None]:
    """transformers draws its own tqdm bar while it de-quantises a GGUF file; it follows `progress()`'s rule for redrawn frames."""
    import transformers.modeling_gguf_pytorch_utils as conversion

    if draws_frames():
        yield
        return
    bar = conversion.tqdm
    conversion.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        conversion.tqdm = bar


def _drop_gguf_marks(model: Any) -> None:
    """The weights are plain tensors once de-quantised; without the GGUF marks the model saves like any other."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


class Seq2SeqLM(HFModel):
    """Encoder-decoder LMs such as Flan-T5: the prompt is encoded, the answer decoded."""

    is_encoder_decoder = True

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(self.entry.checkpoint, trust_remote_code=self.trust_remote_code, **self.entry.tokenizer_kwargs)
        return AutoModelForSeq2SeqLM.from_pretrained(self.entry.checkpoint, **self._load_kwargs()), tok

    def _adds_bos(self, text: str) -> bool:
        return True

    def _generate_ids(self, prefix: dict[str, torch.Tensor], kw: dict[str, Any]) -> torch.Tensor:
        return self.model.generate(input_ids=prefix["input_ids"], attention_mask=prefix["attention_mask"], **kw)[:, 1:]

    def _encoder_inputs(self, prefix: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"input_ids": prefix["input_ids"], "attention_mask": prefix["attention_mask"]}

    def _score_prefix(self, prefix: dict[str, torch.Tensor], continuations: list[list[str]]) -> list[list[float]]:
        """Teacher-force each continuation through the decoder, the prompt repeated per candidate."""
        enc = self._encoder_inputs(prefix)
        owners = [b for b, conts in enumerate(continuations) for _ in conts]
        conts = [self._continuation_ids(c) for cs in continuations for c in cs]
        width = max(len(c) for c in conts)
        labels = torch.tensor([c + [-100] * (width - len(c)) for c in conts], device=self.device)
        idx = torch.tensor(owners, device=self.device)
        inputs = {k: v[idx] for k, v in enc.items()}
        logits = self._lm()(**inputs, labels=labels).logits.float()
        logprobs = F.log_softmax(logits, dim=-1)
        safe = labels.clamp(min=0)
        tok = logprobs.gather(-1, safe[..., None]).squeeze(-1) * (labels != -100)
        flat = tok.sum(-1).tolist()
        out, k = [], 0
        for cs in continuations:
            out.append(flat[k : k + len(cs)])
            k += len(cs)
        return out


def _pads_first(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move padding to the left of each row (processors may pad between image tokens and text)."""
    order = torch.argsort(mask, dim=1, stable=True)
    return ids.gather(1, order), mask.gather(1, order)


class VisionMixin:
    """Encode each distinct image of a batch once, then copy its features to every prompt that uses it."""

    def _unique_images(self, requests: Sequence[Request]) -> tuple[list[Any], list[int]]:
        keys: dict[Any, int] = {}
        images, index = [], []
        for r in requests:
            key = _image_key(r.image)
            if key not in keys:
                keys[key] = len(images)
                images.append(load_image(r.image))
            index.append(keys[key])
        return images, index


class LlavaModel(VisionMixin, HFModel):
    """LLaVA-1.5 and LLaVA-NeXT (and anything AutoModelForImageTextToText loads the same way)."""

    model_class = "LlavaForConditionalGeneration"

    def _load(self) -> tuple[Any, Any]:
        import transformers
        from transformers import AutoProcessor

        cls = getattr(transformers, self.model_class)
        proc = AutoProcessor.from_pretrained(self.entry.checkpoint, trust_remote_code=self.trust_remote_code)
        return cls.from_pretrained(self.entry.checkpoint, **self._load_kwargs()), proc

    def _prefix(self, requests: Sequence[Request], prompts: list[str]) -> dict[str, torch.Tensor]:
        if requests[0].image is None:
            return super()._prefix(requests, prompts)
        images, index = self._unique_images(requests)
        enc = self.processor(text=prompts, images=[images[i] for i in index], return_tensors="pt", padding=True, add_special_tokens=self._adds_bos(prompts[0]))
        first = [index.index(u) for u in range(len(images))]
        pixel = enc["pixel_values"][first].to(self.device, self.dtype)
        extra = {"image_sizes": enc["image_sizes"][first].to(self.device)} if "image_sizes" in enc else {}
        feats = self.model.get_image_features(pixel_values=pixel, **extra).pooler_output
        per_image = [f.reshape(-1, f.shape[-1]) for f in feats]
        return {
            "input_ids": enc["input_ids"].to(self.device),
            "attention_mask": enc["attention_mask"].to(self.device),
            "image_index": torch.tensor(index, device=self.device),
            "features": per_image,
        }

    def _embed_rows(self, prefix: dict[str, Any], ids: torch.Tensor) -> torch.Tensor:
        embeds = self.model.get_input_embeddings()(ids)
        if "features" not in prefix:
            return embeds
        owners = prefix.get("owners", torch.arange(ids.shape[0], device=self.device))
        feats = torch.cat([prefix["features"][int(prefix["image_index"][o])] for o in owners.tolist()]).to(embeds.dtype)
        mask = (ids == self.model.config.image_token_id)[..., None].expand_as(embeds)
        if mask.sum() != feats.numel():
            raise ValueError(f"{self.entry.name}: {int(mask[..., 0].sum())} image tokens but {feats.shape[0]} image features")
        return embeds.masked_scatter(mask, feats)

    def _generate_ids(self, prefix: dict[str, Any], kw: dict[str, Any]) -> torch.Tensor:
        if "features" not in prefix:
            return super()._generate_ids(prefix, kw)
        embeds = self._embed_rows(prefix, prefix["input_ids"])
        return self.model.generate(inputs_embeds=embeds, attention_mask=prefix["attention_mask"], **kw)


class LlavaNextModel(LlavaModel):
    model_class = "LlavaNextForConditionalGeneration"


class InstructBlipModel(VisionMixin, Seq2SeqLM):
    """InstructBLIP with a Vicuna or a Flan-T5 language model; the Q-Former reads the instruction too."""

    def _load(self) -> tuple[Any, Any]:
        from transformers import InstructBlipForConditionalGeneration, InstructBlipProcessor

        proc = InstructBlipProcessor.from_pretrained(self.entry.checkpoint, trust_remote_code=self.trust_remote_code)
        model = InstructBlipForConditionalGeneration.from_pretrained(self.entry.checkpoint, **self._load_kwargs())
        self.is_encoder_decoder = model.config.text_config.is_encoder_decoder
        return model, proc

    def _image_token(self) -> str | None:
        return None  # the processor puts the query tokens in front of the prompt itself

    def _adds_bos(self, text: str) -> bool:
        return HFModel._adds_bos(self, text) if not self.is_encoder_decoder else True

    def _prefix(self, requests: Sequence[Request], prompts: list[str]) -> dict[str, torch.Tensor]:
        if requests[0].image is None:
            raise ValueError(f"{self.entry.name} needs an image for every request")
        images, index = self._unique_images(requests)
        text = self.processor(text=prompts, images=[images[i] for i in index], return_tensors="pt", padding=True)
        first = [index.index(u) for u in range(len(images))]
        vision = self.model.vision_model(pixel_values=text["pixel_values"][first].to(self.device, self.dtype)).last_hidden_state
        idx = torch.tensor(index, device=self.device)
        # The Q-Former has absolute positions, so its text is right-padded; the LM's is left-padded.
        q = self.processor.qformer_tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right")
        query = self._qformer(vision[idx], q["input_ids"].to(self.device), q["attention_mask"].to(self.device))
        ids, mask = _pads_first(text["input_ids"], text["attention_mask"])
        ids, mask = ids.to(self.device), mask.to(self.device)
        embeds = self.model.get_input_embeddings()(ids)
        image_mask = (ids == self.model.config.image_token_id)[..., None].expand_as(embeds)
        embeds = embeds.masked_scatter(image_mask, query.to(embeds.dtype))
        return {"input_ids": ids, "attention_mask": mask, "inputs_embeds": embeds}

    def _qformer(self, vision: torch.Tensor, q_ids: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
        m = self.model
        query_tokens = m.query_tokens.expand(vision.shape[0], -1, -1)
        q_mask = torch.cat([torch.ones(query_tokens.shape[:-1], dtype=torch.long, device=self.device), q_mask], dim=1)
        out = m.qformer(
            input_ids=q_ids, attention_mask=q_mask, query_embeds=query_tokens, encoder_hidden_states=vision,
            encoder_attention_mask=torch.ones(vision.shape[:-1], dtype=torch.long, device=self.device), return_dict=True,
        )
        return m.language_projection(out.last_hidden_state[:, : query_tokens.shape[1], :])

    def _lm(self) -> Any:
        return self.model.language_model

    def _generate_ids(self, prefix: dict[str, torch.Tensor], kw: dict[str, Any]) -> torch.Tensor:
        out = self._lm().generate(inputs_embeds=prefix["inputs_embeds"], attention_mask=prefix["attention_mask"], **kw)
        return out[:, 1:] if self.is_encoder_decoder else out

    def _encoder_inputs(self, prefix: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"inputs_embeds": prefix["inputs_embeds"], "attention_mask": prefix["attention_mask"]}

    def _embed_rows(self, prefix: dict[str, Any], ids: torch.Tensor) -> torch.Tensor:
        """Put each owner's prefix embeddings (images included) in front of its appended tokens."""
        embeds = self.model.get_input_embeddings()(ids)
        rows = []
        for r, o in enumerate(prefix["owners"].tolist()):
            keep = prefix["attention_mask"][o].bool()
            pre = prefix["inputs_embeds"][o][keep]
            rows.append(torch.cat([pre, embeds[r, pre.shape[0] :]]))
        return torch.stack(rows)

    def _score_prefix(self, prefix: dict[str, torch.Tensor], continuations: list[list[str]]) -> list[list[float]]:
        if self.is_encoder_decoder:
            return Seq2SeqLM._score_prefix(self, prefix, continuations)
        return HFModel._score_prefix(self, prefix, continuations)

