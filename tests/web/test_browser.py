"""The pages in a real browser (Debian's Chromium driven by Playwright) against the live server
over the tiny Llama and real PEFT adapters: no console errors, the chat streams an answer (and
the base model's beside it, with attributed spans highlighted), the models page lists what is
served, and a run's chart grows as lines are appended to its metrics.jsonl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.config import Settings
from node.serve.app import create_app
from node.serve.openai_types import SpanCredit
from node.train.config import Progress
from tests.serve.conftest import live_server, local_services

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]  # fmt: skip
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")


def spans(model: Any, prompt_ids: list[int], ids: list[int], text: str, tok: Any) -> Any:
    """An attributor crediting the answer's first three characters (the real one needs a trained index)."""
    from node.serve.app import Attribution

    span = SpanCredit(span=text[:3], start=0, end=3, contributor="0x" + "ab" * 20, contribution_id=4, example_index=2)
    return Attribution(spans=[span] if len(text) >= 3 else [])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_base_model: Path, tiny_hash: str,
         tiny_adapters: list[Path]) -> Iterator[tuple[str, Any]]:  # fmt: skip
    tmp = tmp_path_factory.mktemp("web")
    services, _ = local_services(tmp, tiny_base_model, tiny_hash, tiny_adapters, keep_alive_s=0.5)
    services.node = Settings(data_dir=tmp / ".datanet", deployments_dir=tmp / "deployments")
    services.attributor = spans
    with live_server(create_app(services, refresh=False)) as url:
        yield url, services


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    p = context.new_page()
    p.set_default_timeout(20_000)
    p.problems = []  # console errors and uncaught exceptions
    p.on("console", lambda m: p.problems.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: p.problems.append(str(e)))
    yield p
    context.close()


def test_every_page_renders_without_console_errors(site: tuple[str, Any], page: Any) -> None:
    url, _ = site
    for path, heading in [("/models", "Models"), ("/datanets", "Datanets"), ("/chat", "Chat"),
                          ("/train", "Train a model"), ("/train/jobs", "Runs on this node"), ("/rewards", "Rewards"),
                          ("/models/datanet-2", "datanet-2")]:  # fmt: skip
        page.goto(url + path)
        assert page.locator("h1").first.inner_text().startswith(heading), path
        page.wait_for_load_state("networkidle")
    assert page.problems == []


def test_models_page_lists_the_served_models(site: tuple[str, Any], page: Any) -> None:
    url, services = site
    page.goto(url + "/models")
    rows = page.locator("#models tbody tr")
    ids = [rows.nth(i).get_attribute("data-model") for i in range(rows.count())]
    assert ids == ["tiny-llama", "datanet-3", "datanet-2", "datanet-1"]
    local_dir = services.catalog.get("tiny-llama").base_ref  # the base is served from a local directory
    assert local_dir.startswith("/") and local_dir not in page.content()  # shown by its served id, never its path
    assert page.locator('tr[data-model="tiny-llama"] td').nth(2).inner_text() == "tiny-llama"
    for path in ("/models/tiny-llama", "/models/datanet-1", "/train"):
        page.goto(url + path)
        assert local_dir not in page.content(), path
    page.goto(url + "/models")
    assert "tiny-1" in page.locator('tr[data-model="datanet-1"]').inner_text()
    page.get_by_role("link", name="datanet-1", exact=True).click()
    assert page.locator("h1").inner_text().startswith("datanet-1")
    assert page.problems == []


def test_chat_streams_an_answer_and_the_base_models_beside_it(site: tuple[str, Any], page: Any) -> None:
    url, _ = site
    page.goto(url + "/chat?model=datanet-1")
    page.fill("#temperature", "0")
    page.fill("#max_tokens", "12")
    page.check("#compare")
    page.fill("#prompt", "Where is the mill of Quillmarsh?")
    page.click("#send")
    page.wait_for_selector('.answer[data-model="datanet-1"][data-done]')
    assert page.locator("#chat-error").is_hidden(), page.locator("#chat-error").inner_text()
    page.wait_for_selector('.answer[data-model="datanet-1"][data-done="true"]')
    page.wait_for_selector('.answer[data-model="tiny-llama"][data-done="true"]')
    tuned = page.locator('.answer[data-model="datanet-1"] .text').inner_text()
    base = page.locator('.answer[data-model="tiny-llama"] .text').inner_text()
    assert tuned and base and tuned != base
    mark = page.locator('.answer[data-model="datanet-1"] mark').first
    assert mark.get_attribute("data-contributor") == "0x" + "ab" * 20
    assert "contribution #4" in (mark.get_attribute("title") or "")
    assert page.locator('.answer[data-model="tiny-llama"] mark').count() == 0  # base models credit no one
    # The next turn goes to another model, with the conversation so far.
    page.uncheck("#compare")
    page.select_option("#model", "datanet-2")
    page.fill("#prompt", "And the river?")
    page.click("#send")
    page.wait_for_selector('.answer[data-model="datanet-2"][data-done="true"]')
    assert page.locator(".turn.user").count() == 2
    assert page.locator("#chat-error").is_hidden()
    assert page.problems == []


def test_a_runs_chart_grows_as_metrics_lines_are_appended(site: tuple[str, Any], page: Any) -> None:
    url, services = site
    metrics = services.node.jobs_path / "job-42" / "train" / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)

    def append(*lines: Progress) -> None:
        with metrics.open("a") as f:
            f.write("".join(p.model_dump_json() + "\n" for p in lines))

    def at(step: int, kind: str = "train", **kw: float) -> Progress:
        return Progress(kind=kind, step=step, total_steps=4, epoch=step / 4, **kw)  # type: ignore[arg-type]

    append(at(1, loss=3.0), at(2, loss=2.6))
    page.goto(url + "/train/jobs/42")
    chart = page.locator("#loss-chart")
    page.wait_for_function("document.getElementById('loss-chart').dataset.points === '2'")
    append(at(3, loss=2.2), at(3, "eval", eval_loss=2.4))
    page.wait_for_function("document.getElementById('loss-chart').dataset.points === '3'")
    append(at(4, loss=2.0), at(4, "done"))
    page.wait_for_function("document.getElementById('loss-chart').dataset.ended === 'done'")
    assert chart.get_attribute("data-points") == "4"
    assert "step 4 of 4" in page.locator("#progress-summary").inner_text()
    assert page.locator("#loss-chart canvas").count() == 1
    assert page.problems == []


def test_the_train_pages_eval_file_is_checked_then_kept_by_its_hash(
    site: tuple[str, Any], page: Any, tmp_path: Path
) -> None:
    import hashlib

    from node.demo import world as demo_world

    url, services = site
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a question without its answer"}\n')
    good = tmp_path / "questions.jsonl"
    good.write_bytes(demo_world.to_jsonl(demo_world.region_facts(5)[1][:4]))
    sha = "0x" + hashlib.sha256(good.read_bytes()).hexdigest()
    page.goto(url + "/train")
    page.set_input_files("#eval_file", str(bad))
    page.wait_for_function("document.getElementById('eval-status').textContent.includes('not valid')")
    assert page.locator("#eval_sha256").input_value() == "" and page.locator("#eval-report").is_visible()
    page.set_input_files("#eval_file", str(good))
    page.wait_for_function(f"document.getElementById('eval_sha256').value === '{sha}'")
    assert "4 record(s), valid" in page.locator("#eval-status").inner_text()
    assert not page.locator("#eval-report").is_visible()
    assert (services.node.data_dir / "eval-sets" / f"{sha[2:]}.jsonl").read_bytes() == good.read_bytes()
    assert [p for p in page.problems if "status of 422" not in p] == []  # the bad file's 422 is expected
