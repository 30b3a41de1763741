"""Inference-time attribution through the live server: an answer that repeats a contributor's
training example credits that contributor (in the response and in the response log), and the
same answer gets no credit when the request itself contained the passage."""

from __future__ import annotations

from pathlib import Path

import httpx

from node.data.manifest import ContributionData, SourceRecord, build_training_set
from node.data.records import Example
from node.serve.app import create_app
from node.serve.attribution import SpanAttributor
from node.serve.peft_engine import PeftEngine
from tests.serve.conftest import live_server, local_services

A, B = "0x" + "aa" * 20, "0x" + "bb" * 20


def _contribution(cid: int, who: str, examples: list[Example]) -> ContributionData:
    return ContributionData(
        datanet_id=1, contribution_id=cid, contributor=who, cid=f"bafy{cid}", approved_at=cid, committed_at=cid,
        records=[SourceRecord(line=k + 1, example=e) for k, e in enumerate(examples)],
    )  # fmt: skip


def test_an_answer_repeating_training_data_credits_its_contributor(
    tmp_path: Path, tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path]
) -> None:
    services, key = local_services(tmp_path, tiny_base_model, tiny_hash, tiny_adapters[:1])
    auth = {"Authorization": f"Bearer {key}"}
    ask = {"model": "datanet-1", "max_tokens": 40, "temperature": 0,
           "messages": [{"role": "user", "content": "Where is the mill of Quillmarsh?"}]}  # fmt: skip
    with live_server(create_app(services, refresh=False)) as url:
        answer = httpx.post(url + "/v1/chat/completions", headers=auth, json=ask, timeout=60).json()
        text = answer["choices"][0]["message"]["content"]
        assert answer["attribution"] == []  # no training set known for the model yet

    # The model's training set: contributor A's example answers with exactly that text, B's is unrelated.
    ts = build_training_set(1, [1], [
        _contribution(1, A, [Example.of_chat([("user", "Tell me something."), ("assistant", text)])]),
        _contribution(2, B, [Example.of_chat([("user", "And the ferry?"), ("assistant", "It leaves at dawn.")])]),
    ])  # fmt: skip
    data = tmp_path / "jobs" / "job-1" / "data"
    data.mkdir(parents=True)
    (data / "manifest.json").write_bytes(ts.manifest.canonical_json())
    (data / "examples.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in ts.examples))
    model = services.catalog.get("datanet-1")
    assert model is not None
    services.catalog.add(model.model_copy(update={"data_root": ts.manifest.data_root}))
    services.attributor = SpanAttributor(tmp_path / "jobs", tmp_path / "index", tmp_path / "adapters")
    services.engine = PeftEngine(device="cpu")  # the first server's shutdown closed its engine

    with live_server(create_app(services, refresh=False)) as url:
        again = httpx.post(url + "/v1/chat/completions", headers=auth, json=ask, timeout=60).json()
        assert again["choices"][0]["message"]["content"] == text  # greedy: the same answer
        rows = again["attribution"]
        assert rows and {r["contributor"].lower() for r in rows} == {A}
        assert all(r["example_index"] == 0 and r["span"] in text for r in rows)
        assert all(text[r["start"] : r["end"]] == r["span"] for r in rows)
        stored = httpx.get(f"{url}/v1/attribution/{again['id']}", headers=auth).json()
        assert set(k.lower() for k in stored["credits"]) == {A} and sum(stored["credits"].values()) > 0

        # The same passage in the request: the answer repeats it, but the user could have made it do that.
        echo = {**ask, "messages": [{"role": "user", "content": f"Repeat after me: {text}"}]}
        echoed = httpx.post(url + "/v1/chat/completions", headers=auth, json=echo, timeout=60).json()
        credited = "".join(r["span"] for r in echoed["attribution"])
        assert text.strip() not in credited
