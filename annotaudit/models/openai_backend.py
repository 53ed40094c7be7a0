"""Any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp's server, hosted APIs) as a model.

Requests go out concurrently over httpx, retried with backoff and jitter on 429, 5xx, timeouts and
dropped connections (honouring Retry-After), under optional requests- and tokens-per-minute limits.
Every successful response is cached on disk, keyed by server, endpoint and the whole request body
(prompt, every parameter, images as base64 of their bytes); failures are never cached. The API key
is read from the environment at each request and goes nowhere but the Authorization header.

Prompts have one owner. With `chat_template="server"` the server applies the model's template to a
chat request; with a built-in template (`vicuna_v1.1`, `raw`, ...) annotaudit renders the prompt and
sends a plain completion. `score` reads the log-probabilities of each continuation from
/v1/completions with echo (when the rendered prompt text is known), or from chat `top_logprobs`
where each label is one token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from annotaudit.core.errors import InputError, RequestFailed
from annotaudit.core.io import write_text
from annotaudit.core.runner import EngineUsage

from .base import EngineOptions, Generation, GenerationConfig, LoadedModel, ModelEntry, Request
from .templates import render_builtin

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
TOP_LOGPROBS = 20


class RequestCache:
    """Responses on disk, one JSON file per request key; written atomically so a kill leaves no torn file."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, response: dict[str, Any]) -> None:
        write_text(self._path(key), json.dumps(response))


class RateLimit:
    """Requests and tokens per minute over a sliding 60 s window; unlimited when both are None."""

    def __init__(self, rpm: int | None, tpm: int | None):
        self.rpm, self.tpm = rpm, tpm
        self.sent: deque[tuple[float, int]] = deque()

    async def wait(self, tokens: int, lock: asyncio.Lock) -> None:
        if not self.rpm and not self.tpm:
            return
        async with lock:
            while True:
                now = time.monotonic()
                while self.sent and now - self.sent[0][0] >= 60:
                    self.sent.popleft()
                fits_rpm = not self.rpm or len(self.sent) < self.rpm
                fits_tpm = not self.tpm or not self.sent or sum(t for _, t in self.sent) + tokens <= self.tpm
                if fits_rpm and fits_tpm:
                    self.sent.append((now, tokens))
                    return
                await asyncio.sleep(max(0.01, self.sent[0][0] + 60 - now))


def image_data_url(image: Any) -> str:
    """An image as a base64 data URL: a file's own bytes, a PIL image as PNG."""
    if hasattr(image, "save"):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    else:
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        data = path.read_bytes()
        suffix = path.suffix.lower().lstrip(".")
        mime = f"image/{'jpeg' if suffix in ('jpg', 'jpeg') else suffix or 'png'}"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _user_message(prompt: str, image: Any) -> dict[str, Any]:
    if image is None:
        return {"role": "user", "content": prompt}
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_data_url(image)}}, {"type": "text", "text": prompt}]}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class OpenAIModel(LoadedModel):
    """A model behind an OpenAI-compatible HTTP API; the same generate, score and render_prompt as in-process models."""

    takes_engine_options = True

    def __init__(self, entry: ModelEntry, device: str | None = None, dtype: str | None = None, trust_remote_code: bool | None = None,
                 engine: EngineOptions | None = None):
        self.entry = entry
        self.options = engine or EngineOptions()
        self.base_url = (self.options.base_url or entry.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.key_env = entry.api_key_env or "OPENAI_API_KEY"
        self.served_name = entry.served_name or entry.checkpoint
        self.cache = RequestCache(self.options.cache_dir) if self.options.cache_dir else None
        self.limit = RateLimit(self.options.rpm, self.options.tpm)
        self.n_supported = True
        self.server_renders: bool | None = None  # whether the server can show its rendered chat prompt (/tokenize)
        self._rendered: dict[str, str | None] = {}
        self._check_server()
        self.usage = EngineUsage(engine=f"{self.base_url} ({self.served_name})")

    # the connection --------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _clean(self, text: str) -> str:
        """Error text as it may be shown or stored: never with the key in it."""
        key = os.environ.get(self.key_env)
        return text.replace(key, "***") if key else text

    def _check_server(self) -> None:
        """Reach the server before a run starts, so a wrong URL, key or model name costs one clear line."""
        try:
            response = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=min(self.options.timeout, 30.0))
        except httpx.HTTPError as exc:
            raise InputError(f"cannot reach the model server at {self.base_url}: {self._clean(str(exc)) or type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise InputError(f"the model server at {self.base_url} refused the key in ${self.key_env} (HTTP {response.status_code})")
        if response.status_code != 200:
            return  # some servers have no /models; the first request will tell
        try:
            served = [m.get("id") for m in response.json().get("data", [])]
        except (ValueError, AttributeError):
            return
        if served and self.served_name not in served:
            raise InputError(f"the model server at {self.base_url} does not serve {self.served_name!r}; it serves: {', '.join(map(str, served[:20]))}")

    def _root(self) -> str:
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    def _key(self, path: str, body: dict[str, Any]) -> str:
        text = json.dumps({"server": self.base_url, "endpoint": path, "body": body}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    async def _post(self, client: httpx.AsyncClient, gate: asyncio.Semaphore, lock: asyncio.Lock, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request: from the cache, or sent (limits, retries) and cached when it succeeds."""
        key = self._key(path, body)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.usage.cached += 1
            return hit
        tokens = len(json.dumps(body.get("messages") or body.get("prompt") or "")) // 4 + int(body.get("max_tokens") or 0) * int(body.get("n") or 1)
        response = await self._send(client, f"{self.base_url}{path}", body, gate, lambda: self.limit.wait(tokens, lock))
        return self._accept(key, response)

    async def _send(self, client: httpx.AsyncClient, url: str, body: dict[str, Any], gate: asyncio.Semaphore,
                    before: Callable[[], Awaitable[None]] | None = None) -> httpx.Response:
        """POST with retries (backoff with jitter, or Retry-After) on 429, 5xx, timeouts and dropped connections."""
        error = ""
        for attempt in range(self.options.retries + 1):
            wait: float | None = None
            async with gate:
                if before is not None:
                    await before()
                try:
                    response = await client.post(url, json=body, headers=self._headers())
                except httpx.TimeoutException as exc:
                    error = f"timed out after {self.options.timeout:g} s ({type(exc).__name__})"
                except httpx.TransportError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        return response
                    error = f"HTTP {response.status_code}: {response.text[:300]}"
                    if response.status_code not in RETRY_STATUS:
                        raise ServerRefused(response.status_code, self._clean(f"{url}: {error}"))
                    wait = _retry_after(response)
            if attempt < self.options.retries:
                self.usage.retries += 1
                backoff = self.options.backoff * 2**attempt * random.uniform(0.5, 1.5)
                await asyncio.sleep(wait if wait is not None else min(backoff, 60.0))
        raise ServerRefused(None, self._clean(f"{url}: {error} (after {self.options.retries} retries)"))

    def _accept(self, key: str, response: httpx.Response) -> dict[str, Any]:
        data = response.json()
        usage = data.get("usage") or {}
        self.usage.requests += 1
        self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
        if self.cache is not None:
            self.cache.put(key, data)
        return data

    def _run(self, jobs: list[Callable[[Any], Awaitable[Any]]]) -> list[Any]:
        """Run jobs concurrently; each gets a Session (post, render). Failed jobs raise RequestFailed after all have run."""

        async def main() -> list[Any]:
            timeout = httpx.Timeout(self.options.timeout, connect=min(self.options.timeout, 30.0))
            limits = httpx.Limits(max_connections=self.options.concurrency, max_keepalive_connections=self.options.concurrency)
            gate, lock = asyncio.Semaphore(self.options.concurrency), asyncio.Lock()
            async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
                session = Session(lambda path, body: self._post(client, gate, lock, path, body), lambda p, i: self._render(client, gate, p, i))
                return await asyncio.gather(*(job(session) for job in jobs), return_exceptions=True)

        results = asyncio.run(main())
        for r in results:
            if isinstance(r, (InputError, FileNotFoundError)) or (isinstance(r, BaseException) and not isinstance(r, (ServerRefused, ValueError))):
                raise r
        errors = {i: str(r) for i, r in enumerate(results) if isinstance(r, BaseException)}
        if errors:
            raise RequestFailed(errors, len(jobs))
        return results

    # prompts -------------------------------------------------------------------------------

    def render_prompt(self, prompt: str, has_image: bool) -> str:
        """The prompt as the model reads it; for server-rendered chat, as the server shows it (or the message itself)."""
        if not self._uses_chat():
            return render_builtin(self.entry.chat_template, prompt, "<image>" if has_image else None)
        if has_image or self.server_renders is False:
            return prompt
        if prompt not in self._rendered:
            self._run([lambda session: session.render(prompt, False)])
        return self._rendered.get(prompt) or prompt

    async def _render(self, client: httpx.AsyncClient, gate: asyncio.Semaphore, prompt: str, has_image: bool) -> str:
        if not self._uses_chat() or has_image or self.server_renders is False:
            return self.render_prompt(prompt, has_image)
        if prompt not in self._rendered:
            await self._server_rendered(client, gate, prompt)
        return self._rendered.get(prompt) or prompt

    async def _server_rendered(self, client: httpx.AsyncClient, gate: asyncio.Semaphore, prompt: str) -> None:
        """The chat prompt rendered by the server's own template, through its /tokenize and /detokenize (vLLM, SGLang).

        Cached like a response. A server without these endpoints is asked once and its prompts stay the messages;
        one that fails to answer fails the request, so a prompt never changes owner halfway through a run.
        """
        body = {"model": self.served_name, "messages": [_user_message(prompt, None)], "add_generation_prompt": True}
        key = self._key("/tokenize+/detokenize", body)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is None:
            try:
                tokens = (await self._send(client, f"{self._root()}/tokenize", body, gate)).json()["tokens"]
                detok = await self._send(client, f"{self._root()}/detokenize", {"model": self.served_name, "tokens": tokens}, gate)
                hit = {"prompt": detok.json()["prompt"]}
            except ServerRefused as exc:
                if exc.status is None or exc.status in RETRY_STATUS:
                    raise
                self.server_renders = False
                return
            except (ValueError, KeyError, TypeError):
                self.server_renders = False
                return
            if self.cache is not None:
                self.cache.put(key, hit)
        self.server_renders = True
        self._rendered[prompt] = hit["prompt"]

    def _uses_chat(self) -> bool:
        return self.entry.chat_template in ("server", "own")

    def _body(self, request: Request, prompt: str, config: GenerationConfig, n: int, seed: int | None) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.served_name, "max_tokens": config.max_new_tokens}
        if config.do_sample:
            body.update(temperature=config.temperature, top_p=config.top_p)
        else:
            body.update(temperature=0.0)
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        if self._uses_chat():
            return "/chat/completions", {**body, "messages": [_user_message(request.prompt, request.image)]}
        if request.image is not None:
            raise InputError(f"model {self.entry.name!r} renders prompts locally ({self.entry.chat_template}) as plain completions, "
                             "which cannot carry images; use chat_template='server'")
        return "/completions", {**body, "prompt": prompt}

    # generation ----------------------------------------------------------------------------

    def generate(self, requests: list[Request], config: GenerationConfig | None = None) -> list[Generation]:
        config = config or GenerationConfig()

        def job(request: Request) -> Callable[[Session], Awaitable[Generation]]:
            async def run(session: Session) -> Generation:
                prompt = await session.render(request.prompt, request.image is not None)
                choices = await self._choices(session.post, request, config, prompt)
                texts = [(c.get("message") or {}).get("content") or c.get("text") or "" for c in choices]
                return Generation(texts=[t.strip() for t in texts], num_tokens=[c["_tokens"] for c in choices], prompt=prompt)

            return run

        return self._run([job(r) for r in requests])

    async def _choices(self, post: Callable[..., Awaitable[dict[str, Any]]], request: Request, config: GenerationConfig,
                       prompt: str) -> list[dict[str, Any]]:
        """`num_samples` choices: one request with n, or (a server that refuses n) one request per sample with derived seeds."""
        k = config.num_samples
        if k == 1 or self.n_supported:
            try:
                path, body = self._body(request, prompt, config, k, config.seed)
                data = await post(path, body)
                choices = _with_tokens(data, k)
                if len(choices) == k:
                    return choices
            except ServerRefused as exc:
                if k == 1 or exc.status != 400:
                    raise
            self.n_supported = False
        out = []
        for j in range(k):
            seed = None if config.seed is None else config.seed + j
            path, body = self._body(request, prompt, config, 1, seed)
            out.extend(_with_tokens(await post(path, body), 1))
        return out

    # scoring -------------------------------------------------------------------------------

    def score(self, requests: list[Request], continuations: list[list[str]]) -> list[list[float]]:
        if len(requests) != len(continuations):
            raise ValueError("one list of continuations per request")

        def job(request: Request, conts: list[str]) -> Callable[[Session], Awaitable[list[float]]]:
            async def run(session: Session) -> list[float]:
                prompt = await session.render(request.prompt, request.image is not None)
                known = request.image is None and (not self._uses_chat() or self._rendered.get(request.prompt) is not None)
                if known:
                    return await self._echo_scores(session.post, prompt, conts)
                return await self._top_logprob_scores(session.post, request, conts)

            return run

        return self._run([job(r, c) for r, c in zip(requests, continuations)])

    async def _echo_scores(self, post: Callable[..., Awaitable[dict[str, Any]]], prompt: str, conts: list[str]) -> list[float]:
        """Prompt log-probabilities of prompt + continuation from /completions with echo; the continuation's
        tokens are those whose characters overlap it (by `text_offset`), so a merged boundary token counts."""
        body = {"model": self.served_name, "prompt": [prompt + c for c in conts], "max_tokens": 1, "temperature": 0.0,
                "echo": True, "logprobs": 1}
        data = await post("/completions", body)
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(conts):
            raise self._no_logprobs("completions with echo returned no choice per continuation")
        return [self._continuation_logprob(c.get("logprobs"), len(prompt), len(prompt) + len(cont)) for c, cont in zip(choices, conts)]

    def _continuation_logprob(self, logprobs: dict[str, Any] | None, start: int, end: int) -> float:
        if not logprobs or not logprobs.get("token_logprobs") or not logprobs.get("text_offset"):
            raise self._no_logprobs("/completions with echo and logprobs returned no prompt log-probabilities")
        total, seen = 0.0, 0
        for token, lp, offset in zip(logprobs["tokens"], logprobs["token_logprobs"], logprobs["text_offset"]):
            if offset < end and offset + max(1, len(token)) > start:
                if lp is None:
                    raise self._no_logprobs("a continuation token came back without its log-probability")
                total += lp
                seen += 1
        if not seen:
            raise self._no_logprobs("no echoed token covers the continuation")
        return total

    async def _top_logprob_scores(self, post: Callable[..., Awaitable[dict[str, Any]]], request: Request, conts: list[str]) -> list[float]:
        """Chat top_logprobs of the first answer token; each continuation must be one token (a label outside
        the top gets the lowest logprob listed, an upper bound)."""
        body = {"model": self.served_name, "messages": [_user_message(request.prompt, request.image)], "max_tokens": 1,
                "temperature": 0.0, "logprobs": True, "top_logprobs": TOP_LOGPROBS}
        data = await post("/chat/completions", body)
        content = (((data.get("choices") or [{}])[0].get("logprobs") or {}).get("content")) or []
        top = content[0].get("top_logprobs") if content else None
        if not top:
            raise self._no_logprobs("chat completions with logprobs and top_logprobs returned none")
        best: dict[str, float] = {}
        for t in top:
            word = t["token"].strip()
            best[word] = max(best.get(word, float("-inf")), t["logprob"])
        floor = min(best.values())
        return [best.get(c.strip(), floor) for c in conts]

    def _no_logprobs(self, what: str) -> InputError:
        return InputError(f"the model server at {self.base_url} ({self.served_name}) ignores log-probabilities: {what}. "
                          "Score mode needs a server that returns them (vLLM does: completion echo + logprobs, or chat top_logprobs); "
                          "with this server use generate mode")


@dataclass
class Session:
    """What a job may do inside one concurrent run: send a request, render a prompt."""

    post: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
    render: Callable[[str, bool], Awaitable[str]]


class ServerRefused(ValueError):
    """A request the server answered with an error (after retries where retrying made sense)."""

    def __init__(self, status: int | None, message: str):
        self.status = status
        super().__init__(message)


def _with_tokens(data: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The choices, in order, each with the completion tokens it took (the server's count split evenly when it gives only a total)."""
    choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
    total = int((data.get("usage") or {}).get("completion_tokens") or 0)
    for c in choices:
        content = (c.get("logprobs") or {}).get("content")
        c["_tokens"] = len(content) if content else total // max(1, len(choices))
    return choices[:n]
