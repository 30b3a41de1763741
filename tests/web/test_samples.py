"""Sample answers on a model's page: made on request (htmx) by the real PEFT engine over the tiny
Llama and a real adapter, greedily, for the model and its base; kept in the node's data dir, so
the page shows them afterwards without generating again; not offered for base models."""

from __future__ import annotations

from pathlib import Path

from node.config import Settings
from node.data.records import Example
from node.serve.app import create_app
from node.web import samples
from tests.serve.conftest import local_services
from tests.web.conftest import client, csrf_of


def test_sample_answers_are_made_once_on_request_and_cached(
    tmp_path: Path, tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path]
) -> None:
    services, _ = local_services(tmp_path, tiny_base_model, tiny_hash, tiny_adapters[:1])
    services.node = Settings(data_dir=tmp_path / ".datanet", deployments_dir=tmp_path / "deployments")
    c = client(create_app(services, refresh=False))
    page = c.get("/models/datanet-1")
    assert page.status_code == 200 and 'id="make-samples"' in page.text and "sample-answers" not in page.text
    assert 'id="make-samples"' not in c.get("/models/tiny-llama").text  # a base model has nothing to compare with
    csrf = csrf_of(page.text)
    assert c.post("/models/datanet-1/samples", headers={"HX-Request": "true"}).status_code == 403  # no CSRF token

    r = c.post("/models/datanet-1/samples", headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    assert r.status_code == 200 and 'id="sample-answers"' in r.text, r.text
    path = samples.cache_path(services, services.catalog.get("datanet-1"))
    assert path is not None and path.parent == services.node.data_dir / "web" / "samples"
    made = samples.Samples.model_validate_json(path.read_bytes())
    assert made.source == "generic"  # this node holds no data of job #1
    assert [a.prompt for a in made.answers] == samples.GENERIC
    assert made.model == "datanet-1" and made.base == "tiny-llama"
    assert all(a.model and a.base for a in made.answers)
    assert any(a.model != a.base for a in made.answers)  # the adapter changes greedy answers

    again = c.get("/models/datanet-1")  # the page shows the kept answers: nothing runs
    assert 'id="sample-answers"' in again.text and 'id="make-samples"' not in again.text
    stamp = path.stat().st_mtime_ns
    assert c.post("/models/datanet-1/samples", headers={"HX-Request": "true", "X-CSRF-Token": csrf}).status_code == 200
    assert path.stat().st_mtime_ns == stamp  # the cache answered
    assert c.post("/models/tiny-llama/samples", headers={"X-CSRF-Token": csrf}).status_code == 404


def test_an_examples_prompt_is_its_turns_up_to_the_last_answer() -> None:
    chat = Example.of_chat([("system", "Be brief."), ("user", "Where is the mill?"), ("assistant", "By the river.")])
    turns = samples.as_prompt(chat)
    assert turns is not None and [t.role for t in turns] == ["system", "user"]
    text = samples.as_prompt(Example.of_text(" ".join(f"w{i}" for i in range(30))))
    assert text is not None and text[0].content.split() == [f"w{i}" for i in range(samples.PROMPT_WORDS)]
    assert samples.as_prompt(Example.of_chat([("assistant", "Hello.")])) is None
