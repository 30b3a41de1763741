"""vLLM as the engine for GPUs: continuous batching and multi-LoRA in a separate process.

vLLM pins its own torch and CUDA, so it never enters this venv: it runs as its own `vllm serve
BASE --enable-lora` server (one per base model, as vLLM serves one base per process) and this
engine speaks its HTTP API. Two ways to have that server:

- **managed** (`--vllm-command /opt/vllm/bin/vllm`): the engine starts one server per base on a
  free loopback port, with a random API key, on first use of that base, and stops it at close;
  its log goes to the node's data directory;
- **attached** (`--vllm-url http://127.0.0.1:8001`): a server the operator runs; it must serve
  the base the model was trained on (checked against `/v1/models`: the served name is the base's
  hash, or its `root` is the base's directory).

Adapters are registered at run time (`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, `POST
/v1/load_lora_adapter`), after the same untrusted-adapter checks as the embedded engine (against
the base's shapes, built on the meta device: no weights loaded here), and unregistered least
recently used past `max_adapters`, never while a request of theirs runs. vLLM itself keeps at
most `--max-loras` of them in one GPU batch.

Prompts go to `/v1/completions` as token ids from the base's own tokenizer (the chat template
already applied by the caller), so the ids the answer is attributed with are the ids the model
saw; `return_token_ids` brings the answer's ids back. Closing the event stream closes the HTTP
response, which vLLM takes as the request's abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shlex
import socket
import subprocess
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr

from node.serve.adapters import AdapterPolicy, check_adapter
from node.serve.engine import (
    AdapterRefusedError,
    Engine,
    EngineError,
    Event,
    Finished,
    GenerationRequest,
    InputTooLongError,
    ModelHandle,
    TextDelta,
    prompt_ids,
)

log = logging.getLogger(__name__)

# vLLM accepts these --max-lora-rank values only.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class VllmSettings(BaseModel):
    """How the engine reaches vLLM (module docstring)."""

    url: str | None = Field(None, description="An operator-run vLLM server (attached mode).")
    command: str | None = Field(None, description="The `vllm` executable in its own venv (managed mode).")
    api_key: SecretStr | None = Field(None, description="The attached server's --api-key, if it has one.")
    max_adapters: int = Field(8, ge=1, description="Adapters registered with a server at once (LRU beyond).")
    max_loras: int = Field(4, ge=1, description="vLLM's --max-loras: adapters in one GPU batch.")
    max_lora_rank: int = Field(64, description="vLLM's --max-lora-rank (one of vLLM's allowed values).")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM's --gpu-memory-utilization.")
    extra_args: str = Field("", description="More `vllm serve` flags, shell-quoted (managed mode).")
    start_timeout_s: float = Field(900.0, gt=0, description="Seconds a managed server may take to come up.")
    request_timeout_s: float = Field(600.0, gt=0, description="Seconds one request may run.")
    log_dir: Path | None = Field(None, description="Where managed servers' logs go.")


@dataclass
class _Server:
    """One vLLM server and what this engine knows of it."""

    url: str
    served: str  # the base's name on that server
    max_len: int
    client: httpx.AsyncClient
    tokenizer: Any
    meta_model: Any  # the base's modules on the meta device, for adapter checks
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    adapters: OrderedDict[str, int] = field(default_factory=OrderedDict)  # key -> requests in flight
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class VllmEngine(Engine):
    """The vLLM engine (module docstring)."""

    name = "vllm"

    def __init__(self, settings: VllmSettings, policy: AdapterPolicy | None = None) -> None:
        if not settings.url and not settings.command:
            raise ValueError("the vLLM engine needs a server URL (--vllm-url) or the vllm command (--vllm-command)")
        if settings.max_lora_rank not in LORA_RANKS:
            raise ValueError(f"max_lora_rank must be one of vLLM's {LORA_RANKS}, not {settings.max_lora_rank}")
        self.settings = settings
        policy = policy or AdapterPolicy()
        # vLLM refuses ranks above its --max-lora-rank: refuse them here, with our reason.
        self.policy = policy.model_copy(update={"max_rank": min(policy.max_rank, settings.max_lora_rank)})
        self._servers: dict[str, _Server] = {}
        self._starting: dict[str, asyncio.Lock] = {}

    # -- the interface --------------------------------------------------------------------
    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        return self._generate(request)

    async def tokenizer_of(self, model: ModelHandle) -> Any:
        server = self._servers.get(model.base_hash)
        if server is not None:
            return server.tokenizer
        from transformers import AutoTokenizer

        return await asyncio.to_thread(AutoTokenizer.from_pretrained, model.base_dir)

    def loaded(self) -> list[str]:
        return [k for s in self._servers.values() for k in s.adapters]

    async def close(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        for s in servers:
            await s.client.aclose()
            if s.process is not None:
                await asyncio.to_thread(_stop, s.process)

    # -- one request ----------------------------------------------------------------------
    async def _generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        handle = request.model
        server = await self._server(handle)
        ids = prompt_ids(server.tokenizer, request, server.max_len)
        name = server.served
        if handle.adapter_key is not None:
            name = await self._adapter(server, handle)
        try:
            async for ev in self._complete(server, name, ids, request):
                yield ev
        finally:
            if handle.adapter_key is not None and handle.adapter_key in server.adapters:
                server.adapters[handle.adapter_key] -= 1

    async def _complete(
        self, server: _Server, name: str, ids: list[int], request: GenerationRequest
    ) -> AsyncIterator[Event]:
        p = request.params
        body: dict[str, Any] = {
            "model": name, "prompt": ids, "max_tokens": p.max_tokens, "temperature": p.temperature,
            "top_p": p.top_p, "stop": list(p.stop), "stream": True, "stream_options": {"include_usage": True},
            "return_token_ids": True, "skip_special_tokens": True,
        }  # fmt: skip
        if p.seed is not None:
            body["seed"] = p.seed
        text: list[str] = []
        answer_ids: list[int] = []
        finish, usage = None, None
        try:
            async with server.client.stream("POST", "/v1/completions", json=body) as resp:
                if resp.status_code != 200:
                    raise _refusal(resp.status_code, await resp.aread(), server.url)
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators and comments
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise EngineError(f"vLLM stopped the answer: {_message(chunk)}")
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        answer_ids.extend(choice.get("token_ids") or [])
                        finish = choice.get("finish_reason") or finish
                        if delta := choice.get("text"):
                            text.append(delta)
                            yield TextDelta(text=delta)
        except httpx.HTTPError as e:
            raise EngineError(f"the vLLM server at {server.url} did not answer ({type(e).__name__}: {e}); "
                              f"{_how_to_check(server)}") from None  # fmt: skip
        if finish is None:
            raise EngineError(f"the vLLM server at {server.url} ended the answer without a finish reason")
        yield Finished(
            text="".join(text), finish_reason="length" if finish == "length" else "stop",
            prompt_tokens=int((usage or {}).get("prompt_tokens", len(ids))),
            completion_tokens=int((usage or {}).get("completion_tokens", len(answer_ids))),
            prompt_ids=list(ids), completion_ids=answer_ids,
        )  # fmt: skip

    # -- adapters -------------------------------------------------------------------------
    async def _adapter(self, server: _Server, handle: ModelHandle) -> str:
        """The adapter registered with the server (checked, loaded, counted as in use)."""
        key = handle.adapter_key
        assert key is not None and handle.adapter_dir is not None
        async with server.lock:
            if key not in server.adapters:
                info = await asyncio.to_thread(check_adapter, handle.adapter_dir, server.meta_model, self.policy, None)
                await self._evict(server, room_for=1)
                await _register(server, key, str(handle.adapter_dir.resolve()))
                server.adapters[key] = 0
                log.info("registered adapter %s (r=%d) with vLLM at %s", key, info.rank, server.url)
            server.adapters.move_to_end(key)
            server.adapters[key] += 1
        return key

    async def _evict(self, server: _Server, room_for: int) -> None:
        """Unregister idle adapters, least recently used first, until `room_for` more fit."""
        while len(server.adapters) + room_for > self.settings.max_adapters:
            idle = next((k for k, busy in server.adapters.items() if busy <= 0), None)
            if idle is None:
                return  # every registered adapter is answering: go over the limit for now
            del server.adapters[idle]
            resp = await _post(server, "/v1/unload_lora_adapter", {"lora_name": idle})
            if resp.status_code not in (200, 404):
                log.warning("vLLM did not unload %s: %s", idle, _message_of(resp.content))

    # -- servers --------------------------------------------------------------------------
    async def _server(self, handle: ModelHandle) -> _Server:
        server = self._servers.get(handle.base_hash)
        if server is not None and not _exited(server):
            return server
        lock = self._starting.setdefault(handle.base_hash, asyncio.Lock())
        async with lock:
            server = self._servers.get(handle.base_hash)
            if server is not None and _exited(server):
                # A managed server that died (a GPU fault, the OOM killer) is started again; its
                # adapters are registered anew on first use, as the fresh server holds none.
                log.warning("the vLLM server for %s exited with %s; starting it again (log: %s)",
                            handle.base_hash[:12], server.process.returncode if server.process else None,
                            server.log_path)  # fmt: skip
                del self._servers[handle.base_hash]
                await server.client.aclose()
                server = None
            if server is None:
                server = await (self._attach(handle) if self.settings.url else self._launch(handle))
                self._servers[handle.base_hash] = server
        return server

    async def _attach(self, handle: ModelHandle) -> _Server:
        url = str(self.settings.url).rstrip("/")
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else None
        client = _client(url, key, self.settings.request_timeout_s)
        try:
            card = await _base_card(client, url, handle)
        except BaseException:
            await client.aclose()
            raise
        tok, meta = await asyncio.to_thread(_load_base, handle.base_dir)
        return _Server(url, card["id"], _max_len(card, meta), client, tok, meta)

    async def _launch(self, handle: ModelHandle) -> _Server:
        s = self.settings
        port, key = _free_port(), secrets.token_urlsafe(24)
        url = f"http://127.0.0.1:{port}"
        log_dir = s.log_dir or Path.cwd()
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"vllm-{handle.base_hash[2:14]}.log"
        argv = [
            *shlex.split(str(s.command)), "serve", str(handle.base_dir), "--served-model-name", handle.base_hash,
            "--host", "127.0.0.1", "--port", str(port), "--enable-lora", "--max-loras", str(s.max_loras),
            "--max-lora-rank", str(s.max_lora_rank), "--max-cpu-loras", str(max(s.max_adapters, s.max_loras)),
            "--gpu-memory-utilization", str(s.gpu_memory_utilization), "--generation-config", "vllm",
            *shlex.split(s.extra_args),
        ]  # fmt: skip
        # The key travels in the environment (VLLM_API_KEY), never on a command line others can read.
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_API_KEY": key}
        log.info("starting vLLM for %s: %s (log: %s)", handle.base_hash[:12], shlex.join(argv), log_path)
        with open(log_path, "ab") as out:
            try:
                process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True)  # fmt: skip
            except OSError as e:
                raise EngineError(
                    f"could not start vLLM ({shlex.join(argv[:1])}: {e.strerror}); give the `vllm` executable of "
                    "its own venv with --vllm-command (docs/serving.md, 'vLLM')"
                ) from None
        client = _client(url, key, s.request_timeout_s)
        try:
            await _wait_healthy(client, process, log_path, s.start_timeout_s)
            card = await _base_card(client, url, handle)
            tok, meta = await asyncio.to_thread(_load_base, handle.base_dir)
        except BaseException:
            await client.aclose()
            await asyncio.to_thread(_stop, process)
            raise
        return _Server(url, card["id"], _max_len(card, meta), client, tok, meta, process, log_path)


async def _register(server: _Server, name: str, path: str) -> None:
    """`name` registered with vLLM for the adapter at `path`. An attached server may already hold
    that name from an earlier run of this node: kept if it is the same directory (adapter
    directories are named by CID, so the same content), replaced if not."""
    body = {"lora_name": name, "lora_path": path}
    resp = await _post(server, "/v1/load_lora_adapter", body)
    if resp.status_code == 400 and "already" in (msg := _message_of(resp.content)):
        if await _registered_root(server, name) == path:
            return
        await _post(server, "/v1/unload_lora_adapter", {"lora_name": name})
        resp = await _post(server, "/v1/load_lora_adapter", body)
    if resp.status_code == 200:
        return
    msg = _message_of(resp.content)
    if resp.status_code == 404:
        raise EngineError(
            f"the vLLM server at {server.url} cannot load adapters at run time ({msg}): start it with "
            "--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
        )
    raise AdapterRefusedError(f"vLLM refused the adapter: {msg}")


async def _registered_root(server: _Server, name: str) -> str | None:
    try:
        cards = (await server.client.get("/v1/models")).json().get("data", [])
    except (httpx.HTTPError, ValueError):
        return None
    return next((str(c.get("root")) for c in cards if c.get("id") == name), None)


def _exited(server: _Server) -> bool:
    return server.process is not None and server.process.poll() is not None


def _client(url: str, key: str | None, timeout: float) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0))


async def _post(server: _Server, path: str, body: dict[str, Any]) -> httpx.Response:
    try:
        return await server.client.post(path, json=body)
    except httpx.HTTPError as e:
        raise EngineError(f"the vLLM server at {server.url} did not answer ({type(e).__name__}); "
                          f"{_how_to_check(server)}") from None  # fmt: skip


async def _base_card(client: httpx.AsyncClient, url: str, handle: ModelHandle) -> dict[str, Any]:
    """The server's entry for this base: served under its hash, or rooted at its directory."""
    try:
        resp = await client.get("/v1/models")
    except httpx.HTTPError as e:
        raise EngineError(f"the vLLM server at {url} did not answer ({type(e).__name__}); is it running? "
                          "(docs/serving.md, 'vLLM')") from None  # fmt: skip
    if resp.status_code == 401:
        raise EngineError(f"the vLLM server at {url} wants an API key: set DATANET_SERVE_VLLM_API_KEY")
    if resp.status_code != 200:
        raise EngineError(f"the vLLM server at {url} answered {resp.status_code} to /v1/models")
    cards = [c for c in resp.json().get("data", []) if not c.get("parent")]  # bases, not adapters
    base_dir = str(Path(handle.base_dir).resolve())
    for card in cards:
        root = str(card.get("root") or "")
        if card.get("id") == handle.base_hash or (root and str(Path(root).resolve()) == base_dir):
            return dict(card)
    raise EngineError(
        f"the vLLM server at {url} serves {[c.get('id') for c in cards]}, not this model's base "
        f"({handle.base_dir}); start it with `vllm serve {handle.base_dir} --served-model-name "
        f"{handle.base_hash} --enable-lora` (one server per base)"
    )


async def _wait_healthy(
    client: httpx.AsyncClient, process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineError(f"vLLM exited with status {process.returncode} while starting:\n{_tail(log_path)}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/health")).status_code == 200:
                return
        await asyncio.sleep(0.5)
    raise EngineError(f"vLLM did not come up within {timeout:.0f} s (log: {log_path}):\n{_tail(log_path)}")


def _load_base(base_dir: Path) -> tuple[Any, Any]:
    """The base's tokenizer, and its modules on the meta device (shapes, no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_dir))
    return tok, meta


def _max_len(card: dict[str, Any], meta: Any) -> int:
    """vLLM's own limit when it reports one (--max-model-len may cut the model's)."""
    reported = card.get("max_model_len")
    if isinstance(reported, int) and reported > 0:
        return reported
    return int(getattr(meta.config, "max_position_embeddings", 2048) or 2048)


def _refusal(status: int, content: bytes, url: str) -> Exception:
    msg = _message_of(content)
    lowered = msg.lower()
    if status == 400 and ("context length" in lowered or "max_model_len" in lowered or "too long" in lowered):
        return InputTooLongError(msg)
    if status == 401:
        return EngineError(f"the vLLM server at {url} refused this node's key: check DATANET_SERVE_VLLM_API_KEY")
    return EngineError(f"the vLLM server at {url} answered {status}: {msg}")


def _message_of(content: bytes) -> str:
    try:
        return _message(json.loads(content))
    except ValueError:
        return content.decode(errors="replace").strip()[:500]


def _message(data: Any) -> str:
    """vLLM's error text: `{"error": {"message": ...}}`, or its older flat `{"message": ...}`."""
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(data)[:500]


def _how_to_check(server: _Server) -> str:
    if server.process is not None:
        state = "running" if server.process.poll() is None else f"exited with {server.process.returncode}"
        return f"the managed vLLM process is {state} (log: {server.log_path})"
    return "is it still running?"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (vLLM forks engine workers), SIGKILL if it lingers."""
    import signal

    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
