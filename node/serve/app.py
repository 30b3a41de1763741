"""The FastAPI application: the OpenAI-compatible routes over the catalog and the engine.

`create_app` takes ready `Services` (tests build them on a tiny model, `node.serve.runtime`
builds them from the node's settings), so the routes stay thin: parse, authorise, resolve the
model, run the engine, shape the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.chain.protocol import Protocol
from node.config import Settings
from node.data.records import Message as ChatTurn
from node.serve import errors
from node.serve.catalog import Catalog, ModelUnavailableError, ServedModel
from node.serve.config import ServeSettings
from node.serve.engine import (
    AdapterRefusedError,
    Engine,
    EngineError,
    Event,
    Finished,
    GenerationRequest,
    InputTooLongError,
    ModelHandle,
    SamplingParams,
    TextDelta,
)
from node.serve.errors import ApiError, ErrorResponse, bad_request, model_not_found, unauthorized
from node.serve.fees import BalanceCache, FeePolicy, admit
from node.serve.keys import ApiKey, ApiKeyStore, RateLimiter
from node.serve.openai_types import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Delta,
    ModelCard,
    ModelList,
    ResponseMessage,
    SpanCredit,
    Usage,
)
from node.serve.responses import ResponseLog, StoredResponse
from node.storage.base import ContentStore

log = logging.getLogger(__name__)


class Attribution(BaseModel):
    """What an answer drew on: its spans that match training data, and the credit units each
    contributor earns from them (`node.attribution.spans.credits_from_spans`)."""

    spans: list[SpanCredit] = Field(default_factory=list)
    credits: dict[str, int] = Field(default_factory=dict)


# (model, prompt ids, answer ids, answer text, tokenizer) -> the answer's attribution
Attributor = Callable[[ServedModel, list[int], list[int], str, Any], Attribution]


@dataclass
class Services:
    """What the routes work with."""

    settings: ServeSettings
    catalog: Catalog
    engine: Engine
    keys: ApiKeyStore
    limiter: RateLimiter = field(default_factory=RateLimiter)
    node: Settings | None = None  # the node's own settings (data dir, keystore): the pages' chain actions
    protocol: Protocol | None = None  # read-only view of the deployed protocol
    store: ContentStore | None = None
    attributor: Attributor | None = None
    responses: ResponseLog | None = None  # what is kept of each answer (node.serve.responses: the retention rule)
    fees: FeePolicy = field(default_factory=FeePolicy)  # free unless configured (node.serve.fees)
    balances: BalanceCache | None = None
    duties: list[Callable[[], None]] = field(default_factory=list)  # run with each registry refresh (blocking)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Invalid request (the error names the parameter)",
        401: "Missing or wrong API key",
        403: "Not allowed (licence, loopback-only route)",
        404: "Unknown model",
        413: "Request body too large",
        429: "Rate limit: retry after the Retry-After header's seconds",
        503: "The model or engine is unavailable now",
    }.items()
}


class BodyLimit:
    """ASGI middleware: answers 413 (OpenAI's error shape) to a body over `max_bytes`, whether
    it says its length up front or streams it in chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        body = ApiError(413, f"The request body is over this server's limit of {self.max_bytes} bytes.").body()
        response = JSONResponse(body, status_code=413)
        await response({"type": "http"}, _empty_receive, send)


class _TooLarge(Exception):
    pass


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(services: Services, *, refresh: bool = True) -> FastAPI:
    """The API. With `refresh`, a background task keeps the catalog in step with the chain."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_refresh_loop(services)) if refresh else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            await services.engine.close()

    app = FastAPI(
        title="Datanet Node API",
        version="1",
        summary="OpenAI-compatible inference over the node's trained adapters, with span attribution.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.services = services
    app.add_middleware(BodyLimit, max_bytes=services.settings.max_body_bytes)
    errors.install(app)
    app.include_router(_api_routes())
    from node.web import install as install_pages  # imported here: node.web imports this module

    install_pages(app)  # the web app's pages and /static
    return app


async def _refresh_loop(s: Services) -> None:
    """Keeps the catalog in step with the chain, and erases answer text past its retention."""
    while True:
        try:
            await asyncio.to_thread(s.catalog.refresh)
        except Exception as e:  # an RPC outage must not stop serving what is already known
            log.warning("registry refresh failed (serving the models already known): %s", e)
        if s.responses is not None:
            try:
                await asyncio.to_thread(s.responses.purge)
            except Exception as e:
                log.warning("could not erase answers past their retention: %s", e)
        for duty in s.duties:  # the pages' own chores (node.web): each failure logged, none stops the loop
            try:
                await asyncio.to_thread(duty)
            except Exception as e:
                log.warning("%s failed: %s", getattr(duty, "__name__", "a duty"), e)
        await asyncio.sleep(s.settings.refresh_s)


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def require_key(request: Request) -> ApiKey:
    """The caller's API key (``Authorization: Bearer sk-dn-...``), within its rate limit."""
    s = services_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer sk-dn-...'; `datanet api-key new` "
            "makes one."
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("The Authorization header must be 'Bearer <API key>'.")
    key = s.keys.verify(token.strip())
    if key is None:
        raise unauthorized("Incorrect API key provided. `datanet api-key list` shows this node's keys.")
    wait = s.limiter.retry_after(key)
    if wait > 0:
        raise ApiError(
            429, f"Rate limit of {key.requests_per_minute} requests per minute reached for this key; retry in "
            f"{wait:.1f} s.", type="rate_limit_exceeded", code="rate_limit_exceeded",
            headers={"Retry-After": str(max(1, round(wait)))},
        )  # fmt: skip
    return key


KeyDep = Annotated[ApiKey, Depends(require_key)]


def _api_routes() -> Any:
    from fastapi import APIRouter

    r = APIRouter()

    @r.get("/health", tags=["node"])
    def health(request: Request) -> dict[str, Any]:
        s = services_of(request)
        return {"status": "ok", "engine": s.engine.name, "models": len(s.catalog.served(include_pending=True))}

    @r.get("/v1/models", response_model=ModelList, tags=["openai"])
    def list_models(request: Request, pending: bool = False) -> ModelList:
        """Finalized models and the base models they run on (pending ones too with ?pending=true)."""
        return ModelList(data=[m.card() for m in services_of(request).catalog.served(include_pending=pending)])

    @r.get("/v1/models/{model:path}", response_model=ModelCard, tags=["openai"])
    def get_model(request: Request, model: str) -> ModelCard:
        return _resolve(services_of(request), model).card()

    @r.post("/v1/chat/completions", response_model=ChatCompletion, tags=["openai"])
    async def chat_completions(request: Request, body: ChatCompletionRequest, key: KeyDep) -> Any:
        """A chat answer; ``stream: true`` sends it as server-sent events."""
        return await chat_answer(services_of(request), body, key)

    @r.post("/v1/completions", response_model=Completion, tags=["openai"])
    async def completions(request: Request, body: CompletionRequest, key: KeyDep) -> Any:
        """A plain continuation of the prompt (no chat template)."""
        s = services_of(request)
        body.check_supported()
        model = _resolve(s, body.model)
        handle = await _handle(s, model)
        tok = await s.engine.tokenizer_of(handle)
        gen = GenerationRequest(
            model=handle, prompt=body.text(), add_special_tokens=True, params=_params(s, body, body.token_limit())
        )
        await _admit(s, key, model, gen, tok)
        events = await _start(s, gen, param="prompt")
        rid, created = "cmpl-" + secrets.token_hex(12), int(time.time())
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(_completion_chunks(s, events, rid, created, model, key, tok, usage, gen.prompt))
        done = await _collect(events)
        spans = await _attribute(s, model, done, tok, key, rid, gen.prompt)
        return Completion(
            id=rid, created=created, model=model.id, usage=_usage(done), attribution=spans,
            choices=[CompletionChoice(text=done.text, finish_reason=_reason(done))],
        )  # fmt: skip

    @r.get("/v1/attribution/{response_id}", response_model=StoredResponse, tags=["attribution"])
    def get_attribution(request: Request, response_id: str, key: KeyDep) -> StoredResponse:
        """What an answer drew on (its spans and credits) and, within the retention period, its
        prompt and text. Only the API key that asked can read it."""
        return _own_response(services_of(request), response_id, key)

    @r.delete("/v1/attribution/{response_id}", response_model=StoredResponse, tags=["attribution"])
    def delete_attribution_text(request: Request, response_id: str, key: KeyDep) -> StoredResponse:
        """Erases the answer's prompt and text now; its spans and credits stay (they settle the
        epoch's inference rewards)."""
        s = services_of(request)
        _own_response(s, response_id, key)
        assert s.responses is not None
        s.responses.erase_text(response_id)
        return _own_response(s, response_id, key)

    return r


def _own_response(s: Services, rid: str, key: ApiKey) -> StoredResponse:
    found = s.responses.get(rid) if s.responses is not None else None
    if found is None or found.key_id != key.id:
        raise ApiError(
            404, f"No stored response '{rid}' for this API key (answers of base models are not kept, and text is "
            "erased after the retention period).", param="response_id", code="not_found",
        )  # fmt: skip
    return found


async def chat_answer(s: Services, body: ChatCompletionRequest, key: ApiKey) -> Any:
    """POST /v1/chat/completions' work, for `key`: the answer, or its SSE stream with ``stream: true``
    (also the web app's Chat page, `node.web.chat`, which answers a session as a key)."""
    body.check_supported()
    model = _resolve(s, body.model)
    turns = [
        ChatTurn(role="system" if m.role == "developer" else m.role, content=m.text(i))
        for i, m in enumerate(body.messages)
    ]
    handle, tok, prompt = await _chat_prompt(s, model, turns)
    gen = GenerationRequest(model=handle, prompt=prompt, params=_params(s, body, body.token_limit()))
    await _admit(s, key, model, gen, tok)
    events = await _start(s, gen, param="messages")
    rid, created = "chatcmpl-" + secrets.token_hex(12), int(time.time())
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(_chat_chunks(s, events, rid, created, model, key, tok, usage, prompt))
    done = await _collect(events)
    spans = await _attribute(s, model, done, tok, key, rid, prompt)
    return ChatCompletion(
        id=rid, created=created, model=model.id, usage=_usage(done), attribution=spans,
        choices=[ChatChoice(message=ResponseMessage(content=done.text), finish_reason=_reason(done))],
    )  # fmt: skip


async def _chat_prompt(s: Services, model: ServedModel, turns: list[ChatTurn]) -> tuple[ModelHandle, Any, str]:
    """The model's verified files, its tokenizer, and `turns` in its chat template."""
    from node.train.formatting import render_prompt

    handle = await _handle(s, model)
    tok = await s.engine.tokenizer_of(handle)
    return handle, tok, render_prompt(tok, turns)


async def answer_whole(s: Services, model: ServedModel, turns: list[ChatTurn], params: SamplingParams) -> Finished:
    """`model`'s whole answer to `turns` on the chat path (files, chat template, engine), without
    the API's admission, response log or attribution: the web app's sample answers."""
    handle, _, prompt = await _chat_prompt(s, model, turns)
    return await _collect(await _start(s, GenerationRequest(model=handle, prompt=prompt, params=params), "messages"))


async def _admit(s: Services, key: ApiKey, model: ServedModel, gen: GenerationRequest, tok: Any) -> None:
    """A paid key's request runs only if its account's escrow deposit covers it and the model's
    licences allow paid use (`node.serve.fees`); answers of base models are free."""
    if not s.fees.paid(key) or model.kind != "adapter":
        return
    balances = s.balances or BalanceCache(None)
    used = s.responses.usage(s.responses.epoch_of(time.time())).get(key.id, 0) if s.responses else 0
    tokens = len(tok(gen.prompt, add_special_tokens=gen.add_special_tokens)["input_ids"]) + gen.params.max_tokens
    await asyncio.to_thread(admit, s.fees, balances, key, used, tokens, model.commercial_use, model.id)


def _resolve(s: Services, name: str) -> ServedModel:
    model = s.catalog.get(name)
    if model is None:
        raise model_not_found(name)
    return model


async def _handle(s: Services, model: ServedModel) -> ModelHandle:
    try:
        return await asyncio.to_thread(s.catalog.handle, model)
    except AdapterRefusedError as e:
        raise ApiError(403, f"{model.id} cannot be served: {e}", type="permission_error", param="model",
                       code="adapter_refused") from e  # fmt: skip
    except ModelUnavailableError as e:
        raise ApiError(503, str(e), type="server_error", param="model", code="model_unavailable") from e


def _params(s: Services, body: ChatCompletionRequest | CompletionRequest, limit: int | None) -> SamplingParams:
    cap = s.settings.max_tokens
    name = "max_completion_tokens" if getattr(body, "max_completion_tokens", None) is not None else "max_tokens"
    if limit is not None and limit > cap:
        raise bad_request(f"{name} is {limit}; this server allows at most {cap} tokens per request", param=name)
    return SamplingParams(
        max_tokens=limit or min(s.settings.default_max_tokens, cap),
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=tuple(body.stops()),
        seed=body.seed,
    )


async def _start(s: Services, gen: GenerationRequest, param: str) -> AsyncIterator[Event]:
    """The engine's event stream, with its first event already taken (and put back), so a
    request that cannot run fails as an HTTP error, not in the middle of a stream."""
    try:
        events = await s.engine.stream(gen)
        first = await anext(events)
    except InputTooLongError as e:
        raise bad_request(str(e), param=param, code="context_length_exceeded") from e
    except AdapterRefusedError as e:
        raise ApiError(403, f"{gen.model.name} cannot be served: {e}", type="permission_error", param="model",
                       code="adapter_refused") from e  # fmt: skip
    except EngineError as e:
        raise ApiError(503, str(e), type="server_error", code="engine_unavailable") from e

    async def chained() -> AsyncIterator[Event]:
        yield first
        async for ev in events:
            yield ev

    return chained()


async def _collect(events: AsyncIterator[Event]) -> Finished:
    async for ev in events:
        if isinstance(ev, Finished):
            return ev
    raise ApiError(503, "the engine ended the answer without finishing it", type="server_error")


def _reason(done: Finished) -> Any:
    return "length" if done.finish_reason == "length" else "stop"


def _usage(done: Finished) -> Usage:
    return Usage(
        prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens,
        total_tokens=done.prompt_tokens + done.completion_tokens,
    )  # fmt: skip


async def _attribute(
    s: Services, model: ServedModel, done: Finished, tok: Any, key: ApiKey, rid: str, prompt: str
) -> list[SpanCredit]:
    """The answer's attributed spans, recorded with its credits in the response log (off the
    event loop: a model's first answer builds its span index)."""
    return await asyncio.to_thread(_attribute_now, s, model, done, tok, key, rid, prompt)


def _attribute_now(
    s: Services, model: ServedModel, done: Finished, tok: Any, key: ApiKey, rid: str, prompt: str
) -> list[SpanCredit]:
    """`_attribute`'s work; never raises (attribution must not cost the user the answer)."""
    found = Attribution()
    if s.attributor is not None and model.kind == "adapter":
        try:
            found = s.attributor(model, done.prompt_ids, done.completion_ids, done.text, tok)
        except Exception as e:
            log.warning("attribution of %s failed: %s", rid, e)
    if s.responses is not None and model.kind == "adapter":
        try:
            s.responses.record(
                rid, key_id=key.id, model=model.id, model_id=model.model_id, prompt=prompt, answer=done.text,
                prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens, spans=found.spans,
                credits=found.credits,
            )  # fmt: skip
        except Exception as e:
            log.warning("could not record %s: %s", rid, e)
    return found.spans


def _sse(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def _with_keepalive(events: AsyncIterator[Event], every: float) -> AsyncIterator[Event | None]:
    """The events, and None whenever `every` seconds pass without one (the caller sends an SSE
    comment line then: proxies keep the connection, and the SDK skips comments)."""
    queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for ev in events:
                await queue.put(ev)
        except BaseException as e:
            await queue.put(e)
        finally:
            await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=every)
            except TimeoutError:
                yield None
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        task.cancel()
        await _aclose(events)


async def _aclose(events: AsyncIterator[Event]) -> None:
    close: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
    if close is not None:
        with contextlib.suppress(RuntimeError):  # still running in the cancelled pump task
            await close()


def _data(model: Any) -> str:
    return f"data: {model.model_dump_json(exclude_none=False)}\n\n"


async def _stream(
    s: Services, events: AsyncIterator[Event], model: ServedModel, key: ApiKey, tok: Any, rid: str,
    make: Callable[[str | None, str | None, list[SpanCredit] | None], Any], first: Any,
    usage_chunk: Callable[[Usage], Any] | None, prompt: str,
) -> AsyncIterator[str]:  # fmt: skip
    """The SSE body shared by chat and completions: a first chunk, content chunks (the last one
    carrying finish_reason and the attribution), a usage chunk if asked, then [DONE]."""
    if first is not None:
        yield _data(first)
    held: str | None = None
    try:
        async for ev in _with_keepalive(events, s.settings.keep_alive_s):
            if ev is None:
                yield ": keep-alive\n\n"
            elif isinstance(ev, TextDelta):
                if held is not None:
                    yield _data(make(held, None, None))
                held = ev.text
            else:
                spans = await _attribute(s, model, ev, tok, key, rid, prompt)
                yield _data(make(held or "", _reason(ev), spans))
                if usage_chunk is not None:
                    yield _data(usage_chunk(_usage(ev)))
                yield "data: [DONE]\n\n"
                return
    except (EngineError, InputTooLongError, AdapterRefusedError) as e:
        yield _data(ErrorResponse.model_validate(ApiError(503, str(e), type="server_error").body()))


def _chat_chunks(
    s: Services, events: AsyncIterator[Event], rid: str, created: int, model: ServedModel, key: ApiKey, tok: Any,
    include_usage: bool, prompt: str,
) -> AsyncIterator[str]:  # fmt: skip
    def chunk(choices: list[ChunkChoice], usage: Usage | None = None, spans: list[SpanCredit] | None = None) -> Any:
        return ChatCompletionChunk(
            id=rid, created=created, model=model.id, choices=choices, usage=usage, attribution=spans
        )

    def make(text: str | None, finish: str | None, spans: list[SpanCredit] | None) -> Any:
        delta = Delta(content=text) if text else Delta()
        return chunk([ChunkChoice(delta=delta, finish_reason=finish)], spans=spans)  # type: ignore[arg-type]

    first = chunk([ChunkChoice(delta=Delta(role="assistant", content=""))])
    usage_chunk = (lambda u: chunk([], usage=u)) if include_usage else None
    return _stream(s, events, model, key, tok, rid, make, first, usage_chunk, prompt)


def _completion_chunks(
    s: Services, events: AsyncIterator[Event], rid: str, created: int, model: ServedModel, key: ApiKey, tok: Any,
    include_usage: bool, prompt: str,
) -> AsyncIterator[str]:  # fmt: skip
    def make(text: str | None, finish: str | None, spans: list[SpanCredit] | None) -> Any:
        choice = CompletionChoice(text=text or "", finish_reason=finish)  # type: ignore[arg-type]
        return Completion(id=rid, created=created, model=model.id, choices=[choice], attribution=spans)

    def usage_chunk(u: Usage) -> Any:
        return Completion(id=rid, created=created, model=model.id, choices=[], usage=u)

    return _stream(s, events, model, key, tok, rid, make, None, usage_chunk if include_usage else None, prompt)

