"""The official `openai` SDK, unmodified, against the live server (uvicorn on loopback) over a
real tiny Llama and real PEFT adapters fetched from a real content store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from node.serve.app import create_app
from tests.serve.conftest import live_server, local_services


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_base_model: Path, tiny_hash: str,
           tiny_adapters: list[Path]) -> Iterator[tuple[str, str]]:  # fmt: skip
    services, key = local_services(
        tmp_path_factory.mktemp("serve"), tiny_base_model, tiny_hash, tiny_adapters, keep_alive_s=0.05,
        requests_per_minute=10_000,
    )  # fmt: skip
    with live_server(create_app(services, refresh=False)) as url:
        yield url, key


@pytest.fixture
def client(server: tuple[str, str]) -> openai.OpenAI:
    url, key = server
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def test_list_models_shows_adapters_with_their_base(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {"tiny-llama", "datanet-1", "datanet-2", "datanet-3"} <= set(models)
    card: Any = models["datanet-2"]
    assert card.parent == "tiny-llama" and card.root == "tiny-llama" and card.object == "model"
    assert client.models.retrieve("tiny-2").id == "datanet-2"  # the alias resolves to the registered id


def test_chat_completion_with_an_adapter_differs_from_the_base(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "Where is the mill of Quillmarsh?"}]
    base = client.chat.completions.create(model="tiny-llama", messages=ask, temperature=0, max_tokens=8)
    tuned = client.chat.completions.create(model="datanet-1", messages=ask, temperature=0, max_completion_tokens=8)
    assert base.object == "chat.completion" and tuned.model == "datanet-1"
    assert tuned.choices[0].message.role == "assistant"
    assert tuned.choices[0].finish_reason in ("stop", "length")
    assert tuned.usage is not None and tuned.usage.completion_tokens <= 8
    assert tuned.usage.total_tokens == tuned.usage.prompt_tokens + tuned.usage.completion_tokens
    assert base.choices[0].message.content != tuned.choices[0].message.content


def test_stream_with_usage_matches_the_whole_answer(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "Name a town of Quillmarsh."}]
    whole = client.chat.completions.create(model="datanet-2", messages=ask, temperature=0, max_tokens=10)
    chunks = list(
        client.chat.completions.create(
            model="datanet-2", messages=ask, temperature=0, max_tokens=10, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c for c in chunks if c.choices]
    assert content[-1].choices[0].finish_reason is not None
    assert all(c.choices[0].finish_reason is None for c in content[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in content) == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_completions_and_their_stream(client: openai.OpenAI) -> None:
    done = client.completions.create(model="datanet-3", prompt="The mill of", max_tokens=6, temperature=0)
    assert done.object == "text_completion" and done.choices[0].finish_reason in ("stop", "length")
    parts = list(client.completions.create(model="datanet-3", prompt="The mill of", max_tokens=6, temperature=0,
                                           stream=True))  # fmt: skip
    assert "".join(p.choices[0].text for p in parts if p.choices) == done.choices[0].text


def test_unknown_model_is_404_naming_the_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="datanet-999", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404
    body: Any = e.value.body
    assert body["code"] == "model_not_found" and body["param"] == "model"


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"presence_penalty": 0.5}, "presence_penalty"),
     ({"temperature": 3}, "temperature"), ({"max_tokens": 10**6}, "max_tokens"),
     ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools")],
)  # fmt: skip
def test_bad_parameters_are_400_naming_them(client: openai.OpenAI, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="datanet-1", messages=[{"role": "user", "content": "hi"}], **extra)
    body: Any = e.value.body
    assert body["param"] == param and body["type"] == "invalid_request_error"


def test_an_unknown_field_is_400_naming_it(server: tuple[str, str]) -> None:
    url, key = server
    body = {"model": "datanet-1", "messages": [{"role": "user", "content": "hi"}], "frobnicate": 1}
    r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "frobnicate"
    assert r.json()["error"]["code"] == "unsupported_parameter"


def test_no_key_or_a_wrong_key_is_401(server: tuple[str, str]) -> None:
    url, _ = server
    wrong = openai.OpenAI(base_url=url + "/v1", api_key="sk-dn-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="datanet-1", messages=[{"role": "user", "content": "hi"}])
    r = httpx.post(url + "/v1/chat/completions", json={"model": "datanet-1", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_a_body_over_the_limit_is_413(server: tuple[str, str]) -> None:
    url, key = server
    big = "x" * (2 << 20)
    r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "datanet-1", "messages": [{"role": "user", "content": big}]})  # fmt: skip
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


def test_keep_alives_are_sse_comments(server: tuple[str, str]) -> None:
    url, key = server
    with httpx.stream("POST", url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "datanet-1", "stream": True, "max_tokens": 30, "temperature": 0,
                            "messages": [{"role": "user", "content": "Tell me about Quillmarsh."}]}) as r:  # fmt: skip
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith(("data: ", ": ")) for line in lines)


def test_silence_becomes_keep_alive_comments() -> None:
    import asyncio

    from node.serve.app import _with_keepalive
    from node.serve.engine import TextDelta

    async def slow() -> Any:
        await asyncio.sleep(0.3)
        yield TextDelta(text="a")

    async def run() -> list[Any]:
        return [ev async for ev in _with_keepalive(slow(), 0.05)]

    out = asyncio.run(run())
    assert out[-1] == TextDelta(text="a") and out.count(None) >= 2
