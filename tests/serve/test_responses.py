"""The retention rule: spans and credits stay until settlement, prompt and answer text only for
the retention period, erasable by the key that asked (and by nobody else)."""

from __future__ import annotations

from pathlib import Path

import httpx

from node.serve.app import create_app
from node.serve.openai_types import SpanCredit
from node.serve.responses import ResponseLog
from tests.serve.conftest import live_server, local_services

SPAN = SpanCredit(span="the mill", start=0, end=8, contributor="0x" + "ab" * 20, contribution_id=3, example_index=7)


def test_text_is_erased_after_the_retention_period_and_credits_stay(tmp_path: Path) -> None:
    log = ResponseLog(tmp_path / "r.sqlite", retention_days=2, epoch_seconds=3600)
    t0 = 1_800_000_000
    log.record("r1", key_id="k", model="datanet-1", model_id=1, prompt="q", answer="a", prompt_tokens=3,
               completion_tokens=2, spans=[SPAN], credits={SPAN.contributor: 8}, now=t0)  # fmt: skip
    log.record("r2", key_id="k", model="datanet-1", model_id=1, prompt="q2", answer="a2", prompt_tokens=1,
               completion_tokens=1, spans=[], credits={SPAN.contributor: 2}, now=t0 + 10)  # fmt: skip
    assert log.purge(now=t0 + 86_400) == 0  # one day in: still within two
    assert log.purge(now=t0 + 3 * 86_400) == 2
    kept = log.get("r1")
    assert kept is not None and kept.prompt is None and kept.answer is None and kept.spans == [SPAN]
    assert log.credits(log.epoch_of(t0)) == {1: {SPAN.contributor: 10}}
    assert log.usage(log.epoch_of(t0)) == {"k": 7}


def test_zero_retention_keeps_no_text(tmp_path: Path) -> None:
    log = ResponseLog(tmp_path / "r.sqlite", retention_days=0)
    row = log.record("r", key_id="k", model="m", model_id=1, prompt="secret", answer="x", prompt_tokens=1,
                     completion_tokens=1, spans=[], credits={})  # fmt: skip
    assert row.prompt is None and log.get("r").prompt is None  # type: ignore[union-attr]


def test_the_asking_key_reads_and_erases_its_answer(
    tmp_path: Path, tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path]
) -> None:
    services, key = local_services(tmp_path, tiny_base_model, tiny_hash, tiny_adapters[:1])
    _, other = services.keys.create("someone else")
    with live_server(create_app(services, refresh=False)) as url:
        auth = {"Authorization": f"Bearer {key}"}
        body = {"model": "datanet-1", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=60, json=body)
        rid = r.json()["id"]
        stored = httpx.get(f"{url}/v1/attribution/{rid}", headers=auth).json()
        assert stored["answer"] == r.json()["choices"][0]["message"]["content"] and "hi" in stored["prompt"]
        assert httpx.get(f"{url}/v1/attribution/{rid}", headers={"Authorization": f"Bearer {other}"}).status_code == 404
        erased = httpx.delete(f"{url}/v1/attribution/{rid}", headers=auth).json()
        assert erased["prompt"] is None and erased["answer"] is None and erased["id"] == rid
