"""The in-process vLLM backend: `vllm:<hub id or path>`, for users with GPUs.

Prompts are rendered here, with the same templates as the transformers backends, and sent to vLLM
as token ids: `generate` and `score` then read exactly the prompt the record stores, and both
backends score the same tokens. Engine options ride on the checkpoint as a query string
(`vllm:org/model?tensor_parallel_size=2&max_model_len=4096`), so they work wherever a model is named.
`import vllm` happens only when a model loads.
"""

from __future__ import annotations

import multiprocessing
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from annotaudit.core.errors import InputError

from .base import Generation, GenerationConfig, LoadedModel, ModelEntry, Request, load_image
from .registry import entry_from_checkpoint
from .templates import render_builtin, render_own

# Weights come from safetensors only: pickle (.bin) files can run code when loaded.
ENGINE_DEFAULTS: dict[str, Any] = {"load_format": "safetensors"}


def _option_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def split_spec(checkpoint: str) -> tuple[str, dict[str, Any]]:
    """'org/model?tensor_parallel_size=2&enforce_eager=true' -> ('org/model', {...}), values typed."""
    if "?" not in checkpoint or Path(checkpoint).exists():
        return checkpoint, {}
    where, query = checkpoint.split("?", 1)
    try:
        pairs = parse_qsl(query, keep_blank_values=False, strict_parsing=True)
    except ValueError:
        raise InputError(f"vllm options {query!r}: expected key=value pairs joined by '&'") from None
    return where, {key: _option_value(value) for key, value in pairs}


def entry_for(spec: str) -> ModelEntry:
    """The entry of `vllm:<id or path>[?options]`: backend vllm, modality and template from the config."""
    where, _ = split_spec(spec)
    if where.endswith(".gguf"):
        raise InputError("the vllm backend loads safetensors checkpoints; convert the GGUF file first (transformers from_pretrained + save_pretrained)", path=where)
    found = entry_from_checkpoint(where)
    return ModelEntry(name=f"vllm:{spec}", backend="vllm", checkpoint=spec, chat_template=found.chat_template, modality=found.modality, source="ad hoc")


@dataclass
class EngineOutput:
    """What one vLLM request gave back, as plain data (it crosses process boundaries)."""

    texts: list[str]
    token_ids: list[list[int]]
    prompt_logprobs: list[float | None]  # log-probability of each prompt token given the ones before
    prompt_token_ids: list[int]  # as the engine read them: image placeholders expanded


def _plain(out: Any) -> EngineOutput:
    logprobs: list[float | None] = []
    if out.prompt_logprobs is not None:
        for tok, pos in zip(out.prompt_token_ids, out.prompt_logprobs):
            logprobs.append(None if pos is None else pos[tok].logprob)
    return EngineOutput([c.text for c in out.outputs], [list(c.token_ids) for c in out.outputs], logprobs, list(out.prompt_token_ids or []))


def _run(llm: Any, prompts: list[dict[str, Any]], params: dict[str, Any]) -> list[EngineOutput]:
    from vllm import SamplingParams

    outs = llm.generate(prompts, SamplingParams(**params), use_tqdm=False)
    return [_plain(o) for o in outs]


def _open_engine(checkpoint: str, engine_args: dict[str, Any]) -> Any:
    from vllm import LLM

    try:
        return LLM(model=checkpoint, **engine_args)
    except TypeError as exc:
        raise InputError(f"vllm option not understood: {exc}", path=checkpoint) from None


def _replica_main(conn: Any, checkpoint: str, engine_args: dict[str, Any], gpus: str | None) -> None:
    """A data-parallel replica: its own engine on its own GPUs, answering batches until told to stop."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    llm = _open_engine(checkpoint, engine_args)
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(_run(llm, *job))


class Replicas:
    """`data_parallel_size` copies of the engine in spawned processes, each on tensor_parallel_size GPUs.

    vLLM's offline LLM runs one engine per process, so data parallelism means one process per copy;
    a batch is cut into contiguous shards and the answers come back in order.
    """

    def __init__(self, checkpoint: str, engine_args: dict[str, Any], size: int):
        tp = int(engine_args.get("tensor_parallel_size", 1))
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(i) for i in range(size * tp)]
        context = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for rank in range(size):
            gpus = ",".join(devices[rank * tp : (rank + 1) * tp]) or None
            parent, child = context.Pipe()
            proc = context.Process(target=_replica_main, args=(child, checkpoint, engine_args, gpus))
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        self._stop = weakref.finalize(self, _stop_replicas, self.conns, self.procs)  # also at exit, or exit would wait on them
        for conn, proc in zip(self.conns, self.procs):
            while not conn.poll(5):
                if not proc.is_alive():
                    self.close()
                    raise RuntimeError(f"a vLLM replica of {checkpoint} did not start (exit code {proc.exitcode}); its log is above")
            conn.recv()

    def run(self, prompts: list[dict[str, Any]], params: dict[str, Any]) -> list[EngineOutput]:
        size = len(self.conns)
        step = -(-len(prompts) // size)
        shards = [prompts[i * step : (i + 1) * step] for i in range(size)]
        busy = [(conn, shard) for conn, shard in zip(self.conns, shards) if shard]
        for conn, shard in busy:
            conn.send((shard, params))
        return [out for conn, _ in busy for out in conn.recv()]

    def close(self) -> None:
        self._stop()


def _stop_replicas(conns: list[Any], procs: list[Any]) -> None:
    for conn, proc in zip(conns, procs):
        if proc.is_alive():
            try:
                conn.send(None)
            except OSError:
                pass
            proc.join(timeout=60)
        if proc.is_alive():
            proc.terminate()


class VLLMModel(LoadedModel):
    """A model served in this process by vLLM: batched generation with SamplingParams, prompt log-probs for score.

    vLLM places the model itself (CUDA_VISIBLE_DEVICES chooses the GPUs), so `device` is not used.
    """

    def __init__(self, entry: ModelEntry, device: str | None = None, dtype: str | None = None, trust_remote_code: bool | None = None):
        self.entry = entry
        self.checkpoint, options = split_spec(entry.checkpoint)
        self.data_parallel_size = int(options.pop("data_parallel_size", 1))
        if not entry.allow_pickle and options.get("load_format", "safetensors") != "safetensors":
            raise InputError(f"load_format={options['load_format']} may read pickle weights, which can run code when loaded; "
                             "pass --allow-pickle if you trust this checkpoint", path=self.checkpoint)
        trust = entry.trust_remote_code if trust_remote_code is None else trust_remote_code
        defaults = ENGINE_DEFAULTS if not entry.allow_pickle else {}
        self.engine_args = {**defaults, "dtype": dtype or entry.dtype, "trust_remote_code": trust, **options}
        self.tokenizer = self._tokenizer(trust)
        self._processor: Any = None
        if self.data_parallel_size > 1:
            self.engine: Any = Replicas(self.checkpoint, self.engine_args, self.data_parallel_size)
        else:
            self.engine = _open_engine(self.checkpoint, self.engine_args)

    def _tokenizer(self, trust: bool) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.checkpoint, trust_remote_code=trust, **self.entry.tokenizer_kwargs)

    def _run(self, prompts: list[dict[str, Any]], params: dict[str, Any]) -> list[EngineOutput]:
        if isinstance(self.engine, Replicas):
            return self.engine.run(prompts, params)
        return _run(self.engine, prompts, params)

    def close(self) -> None:
        """Stop data-parallel replicas (a single in-process engine ends with the process)."""
        if isinstance(self.engine, Replicas):
            self.engine.close()

    # prompts -------------------------------------------------------------------------------

    def render_prompt(self, prompt: str, has_image: bool) -> str:
        template = self.entry.chat_template
        if template == "own":
            holder = self._template_holder(has_image)
            if holder is not None:
                return render_own(holder, prompt, has_image)
            template = "raw"
        return render_builtin(template, prompt, "<image>" if has_image else None)

    def _template_holder(self, has_image: bool) -> Any:
        """The tokenizer's chat template, or for images the processor's (LVLMs may keep it only there)."""
        if has_image and self._processor is None:
            from transformers import AutoProcessor

            self._processor = AutoProcessor.from_pretrained(self.checkpoint, trust_remote_code=self.engine_args["trust_remote_code"])
        for holder in ((self._processor, self.tokenizer) if has_image else (self.tokenizer,)):
            if getattr(holder, "chat_template", None):
                return holder
        return None

    def _ids(self, text: str) -> list[int]:
        bos = self.tokenizer.bos_token
        adds_bos = not (bos and text.startswith(bos))
        return self.tokenizer(text, add_special_tokens=adds_bos)["input_ids"]

    def _engine_prompt(self, ids: list[int], request: Request) -> dict[str, Any]:
        prompt: dict[str, Any] = {"prompt_token_ids": ids}
        if request.image is not None:
            prompt["multi_modal_data"] = {"image": load_image(request.image)}
        return prompt

    # generation ----------------------------------------------------------------------------

    def generate(self, requests: list[Request], config: GenerationConfig | None = None) -> list[Generation]:
        config = config or GenerationConfig()
        prompts = [self.render_prompt(r.prompt, r.image is not None) for r in requests]
        engine_prompts = [self._engine_prompt(self._ids(p), r) for p, r in zip(prompts, requests)]
        outs = self._run(engine_prompts, sampling_params(config))
        return [Generation(texts=[self._decode(ids) for ids in out.token_ids], num_tokens=[len(ids) for ids in out.token_ids], prompt=p, token_ids=out.token_ids)
                for p, out in zip(prompts, outs)]

    def _decode(self, ids: list[int]) -> str:
        """Decoded here as the transformers backends decode, so the same ids give the same text
        (vLLM's streaming detokenizer holds back a trailing partial UTF-8 character)."""
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    # scoring -------------------------------------------------------------------------------

    def score(self, requests: list[Request], continuations: list[list[str]]) -> list[list[float]]:
        """Sum of the prompt log-probabilities of each continuation's tokens after its prompt's tokens.

        The continuation is tokenized on its own and appended to the prompt's ids, as the
        transformers backends do, so a merge across the boundary cannot shift which tokens count.
        """
        if len(requests) != len(continuations):
            raise ValueError("one list of continuations per request")
        rows, tails = [], []
        for request, conts in zip(requests, continuations):
            ids = self._ids(self.render_prompt(request.prompt, request.image is not None))
            for text in conts:
                cont = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                if not cont:
                    raise ValueError(f"continuation {text!r} has no tokens")
                rows.append(self._engine_prompt(ids + cont, request))
                tails.append(cont)
        outs = self._run(rows, {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0, "detokenize": False})
        flat = [_tail_logprob(out, cont) for out, cont in zip(outs, tails)]
        result, k = [], 0
        for conts in continuations:
            result.append(flat[k : k + len(conts)])
            k += len(conts)
        return result


def _tail_logprob(out: EngineOutput, cont: list[int]) -> float:
    """The continuation is the end of the engine's prompt (images expand only earlier placeholders)."""
    n = len(cont)
    if out.prompt_token_ids[-n:] != cont:
        raise RuntimeError(f"vLLM changed the scored tokens: expected {cont} at the end of the prompt, got {out.prompt_token_ids[-n:]}")
    return float(sum(out.prompt_logprobs[-n:]))  # type: ignore[arg-type]


def sampling_params(config: GenerationConfig) -> dict[str, Any]:
    """GenerationConfig as vLLM SamplingParams keywords: greedy is temperature 0."""
    params: dict[str, Any] = {"n": config.num_samples, "max_tokens": config.max_new_tokens, "seed": config.seed, "skip_special_tokens": True}
    if config.do_sample:
        params.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
    else:
        params.update(temperature=0.0)
    return params
