"""The Chat page: talk to any model this node serves, with the base model's answer beside it.

The page's script posts each turn to `POST /chat/answer` (session cookie and CSRF token, no API
key in the browser). That route calls `node.serve.app.chat_answer`, the function behind
`POST /v1/chat/completions`: the same validation, model resolution, engine, span attribution and
response log, and the same SSE chunks, which the script parses as the openai SDK would. A
signed-in key's session answers as that key (its rate limit and inference account); the local
operator answers as `OPERATOR_KEY`, a key record that exists only here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from node.serve import app as serve_app
from node.serve.app import services_of
from node.serve.errors import ApiError, bad_request
from node.serve.keys import ApiKey
from node.serve.openai_types import ChatCompletionRequest
from node.web.site import FormSession, PageSession, render

router = APIRouter(include_in_schema=False)

OPERATOR_KEY = ApiKey(id="operator", name="web (node operator)", created_at=0, requests_per_minute=1_000_000)
"""Who the node operator's web chats are answered as (not in the key store: nothing to revoke or leak)."""


@router.get("/chat")
def chat_page(request: Request, session: PageSession, model: str = "") -> Any:
    s = services_of(request)
    models = s.catalog.served(include_pending=True)
    chosen = s.catalog.get(model) if model else None
    adapters = [m for m in models if m.kind == "adapter"]
    default = chosen or (adapters[0] if adapters else (models[0] if models else None))
    return render(
        request, "chat.html", active="chat", models=models, chosen=default.id if default else "",
        max_tokens=s.settings.max_tokens, default_max_tokens=min(128, s.settings.max_tokens),
        retention_days=s.settings.retention_days,
    )  # fmt: skip


@router.post("/chat/answer")
async def chat_answer(request: Request, session: FormSession) -> Any:
    """One streamed answer (OpenAI chat.completion.chunk events) for the page's conversation."""
    s = services_of(request)
    key = session.key or (OPERATOR_KEY if session.is_operator else None)
    if key is None:  # a wallet session: inference is metered per API key, and a wallet is not one
        raise ApiError(403, "Chat answers are metered per API key of this node: sign in with a key (the operator "
                       "makes one with `datanet api-key new`) to chat here.", type="permission_error")  # fmt: skip
    try:
        data = await request.json()
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        body = ChatCompletionRequest.model_validate({**_allowed(data), "stream": True})
    except (ValueError, ValidationError) as e:
        raise bad_request(f"Invalid chat request: {str(e).splitlines()[0]}") from None
    if session.key is not None:
        wait = s.limiter.retry_after(session.key)
        if wait > 0:
            raise ApiError(429, f"Rate limit of {session.key.requests_per_minute} requests per minute reached for "
                           f"your key; retry in {wait:.1f} s.", type="rate_limit_exceeded")  # fmt: skip
    return await serve_app.chat_answer(s, body, key)


def _allowed(data: dict[str, Any]) -> dict[str, Any]:
    """The settings the page offers; anything else is left out."""
    return {k: data[k] for k in ("model", "messages", "temperature", "max_tokens", "seed") if k in data}
