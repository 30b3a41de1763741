"""From the Train page to an attributed chat, in a real browser, with nothing faked: an anvil dev
chain, the node's real daemon (in a background thread) training the tiny Llama, and the server
`datanet serve` builds (`node.serve.runtime.build_services`: the PEFT engine, the registry
catalog, the span attributor, the response log).

What is asserted:
- the job is posted from the Train page's form (LoRA, 20 steps, eval every 5 steps);
- the run is paused as soon as its first step is written (`node.daemon.control.pause`, what
  `datanet node pause` does: the daemon stops after a checkpointed step); the run's page then
  shows it paused with the steps so far, and its Resume button continues it: both loss series
  grow on the page (more train points than before the pause, 2 or more eval points);
- once the daemon registers the result, Models lists the model as pending and served;
- Chat answers with it (greedy), and the attribution machinery ran: the response log holds that
  answer with its credits field, and the model's span index was built in the node's data dir
  from the job's training set. The highlighted spans in the page match the logged spans exactly,
  whatever their number.
- the same span index, asked directly, credits a contributed passage repeated verbatim to its
  contributor; the Models page's sample answers would ask the job's held-out questions.

What is not asserted: that the tiny model's own answer repeats a training passage (20 LoRA steps
on a random tiny Llama do not make that deterministic), so the chat answer may carry no spans.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from node.daemon import control
from node.daemon.steps import jobs_root
from node.daemon.store import JobRecord, JobState
from node.data.records import Example
from node.serve.app import create_app
from node.serve.config import ServeSettings
from node.serve.runtime import build_services
from tests.conftest import World
from tests.daemon_setup import BASE_REF, approved_datanet, node_home, past_challenge_windows, stake
from tests.serve.conftest import live_server
from tests.web.test_browser import ARGS, CHROMIUM, playwright

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")

# The daemon takes only this test's job: others on the shared chain pay less or need other base models.
POOL, MIN_POOL = "300", 250
SETTINGS = {"method": "lora", "max_steps": "20", "eval_every": "5", "batch_size": "4", "lora_r": "4",
            "lora_alpha": "8", "max_seq_len": "128", "eval_fraction": "0.1", "learning_rate": "0.002",
            "epochs": "3"}  # fmt: skip


class DaemonThread:
    """The node's daemon (`run()`, watching the chain) in a background thread, stopped at the end."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="daemon", daemon=True)

    def _run(self) -> None:
        try:
            self.daemon.run()
        except BaseException as e:  # reported by the test
            self.error = e

    def __enter__(self) -> DaemonThread:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.daemon.stop.set()
        self.thread.join(60)


def wait_for(
    what: str, check: Any, timeout: float = 60.0, daemon: DaemonThread | None = None, poll: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon is not None and daemon.error is not None:
            raise AssertionError(f"the daemon stopped while waiting for {what}: {daemon.error!r}")
        got = check()
        if got:
            return got
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


record_none = JobRecord(job_id=0, state=JobState.SEEN)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with playwright.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        p = b.new_context().new_page()
        p.set_default_timeout(60_000)
        p.problems = []
        p.on("console", lambda m: p.problems.append(m.text) if m.type == "error" else None)
        p.on("pageerror", lambda e: p.problems.append(str(e)))
        yield p
        b.close()


def test_train_from_the_page_then_chat_with_the_model(
    world: World, tmp_path: Path, tiny_base_model: Path, browser_page: Any
) -> None:
    page = browser_page
    home = node_home(world, tmp_path, tiny_base_model)
    stake(world.node)
    datanet = approved_datanet(world, home)
    services = build_services(home.settings, ServeSettings(refresh_s=0.5, keep_alive_s=0.5), [BASE_REF])
    daemon = home.daemon(world.node, min_pool=Decimal(MIN_POOL))
    with live_server(create_app(services)) as url, DaemonThread(daemon) as running:
        # Post the job from the Train page.
        page.goto(f"{url}/train?datanet={datanet}")
        page.select_option("#base_model", BASE_REF)
        page.fill("#name", "e2e-facts")
        for name, value in SETTINGS.items():
            if name != "method":
                page.fill(f"#{name}", value)
        page.fill("#pool", POOL)
        page.click("button[type=submit]:has-text('Start training')")
        page.wait_for_url("**/train/jobs/*")
        job_id = int(page.url.rsplit("/", 1)[1])

        # Paused as soon as the first step is written (the operator's `datanet node pause`), so the page
        # sees the run part way; then resumed from the run page's button.
        metrics = jobs_root(home.settings, world.deployment) / f"job-{job_id}" / "train" / "metrics.jsonl"
        wait_for("the first step", lambda: metrics.is_file() and '"kind":"train"' in metrics.read_text(),
                 daemon=running, poll=0.001)  # fmt: skip
        control.pause(home.settings, world.deployment, job_id)
        wait_for("the daemon to pause", lambda: "paused" in str((daemon.jobs.get(job_id) or record_none).last_error),
                 daemon=running)  # fmt: skip
        written = sum('"kind":"train"' in ln for ln in metrics.read_text().splitlines())
        assert written < 20, "the run finished before the pause took effect"
        page.reload()
        page.wait_for_function(f"document.getElementById('loss-chart')?.dataset.train === '{written}'")
        before = page.evaluate("() => ({...document.getElementById('loss-chart').dataset})")
        assert "badge paused" in page.content() and "deadline runs while the job is paused" in page.content()
        with page.expect_navigation():  # the form posts, then the run's page loads again
            page.click("#resume")
        # `?.`: the predicate may run while the new document is still being parsed.
        page.wait_for_function("document.getElementById('loss-chart')?.dataset.ended === 'done'", timeout=90_000)
        after = page.evaluate("() => ({...document.getElementById('loss-chart').dataset})")
        assert int(after["train"]) > int(before["train"]) and int(after["eval"]) >= 2, (before, after)
        assert int(after["eval"]) > int(before.get("eval", 0)) or int(before["train"]) >= 15, (before, after)
        assert "step 20 of 20" in page.locator("#progress-summary").inner_text()
        assert not control.state(home.settings, world.deployment, job_id).paused

        # Registered (pending): listed and served.
        record = wait_for("the result on-chain", lambda: (r := daemon.jobs.get(job_id)) and r.model_id and r,
                          daemon=running)  # fmt: skip
        mid = f"datanet-{record.model_id}"
        wait_for("the catalog to serve it", lambda: services.catalog.get(mid) is not None)
        page.goto(url + "/models")
        row = page.locator(f'tr[data-model="{mid}"]')
        assert "pending" in row.inner_text() and "served" in row.inner_text() and "e2e-facts" in row.inner_text()

        # Chat with it, asking a question of its training set.
        work = Path(record.work_dir or "")
        examples = [Example.model_validate_json(x) for x in (work / "data" / "examples.jsonl").read_text().splitlines()]
        question = next(e for e in examples if e.kind == "chat").messages[0].content
        page.goto(f"{url}/chat?model={mid}")
        page.fill("#temperature", "0")
        page.fill("#max_tokens", "24")
        page.fill("#prompt", question)
        page.click("#send")
        page.wait_for_selector(f'.answer[data-model="{mid}"][data-done="true"]')
        answer = page.locator(f'.answer[data-model="{mid}"] .text').inner_text()
        marks = page.locator(f'.answer[data-model="{mid}"] mark').count()

        # The attribution machinery ran: the answer is logged with its credits; the span index exists.
        assert services.responses is not None
        with sqlite3.connect(services.responses.path) as db:
            rows = db.execute("SELECT answer, spans, credits FROM responses WHERE model = ?", (mid,)).fetchall()
        assert len(rows) == 1 and rows[0][0].strip() == answer.strip()
        spans, credits = json.loads(rows[0][1]), json.loads(rows[0][2])
        assert isinstance(credits, dict) and marks == len(spans)
        assert bool(credits) == bool(spans)
        index = home.settings.data_dir / "serve" / "span-index" / f"model-{record.model_id}"
        assert index.is_dir() and any(index.iterdir())

        # Finalized after its challenge window: the daemon settles it; then it is stopped.
        past_challenge_windows(world, daemon)
        wait_for("the job settled", lambda: (r := daemon.jobs.get(job_id)) and r.state == JobState.SETTLED,
                 timeout=60, daemon=running)  # fmt: skip
    assert running.error is None

    # The same index credits a contributed passage, repeated verbatim, to its contributor.
    from transformers import AutoTokenizer

    served = services.catalog.get(mid)
    assert served is not None and services.attributor is not None
    tok = AutoTokenizer.from_pretrained(services.catalog.base_of(served).dir)
    contributors = {c.address.lower() for c in world.contributors[:2]}
    credited = []
    for e in examples[:12]:
        text = e.messages[-1].content if e.kind == "chat" else e.text
        found = services.attributor(served, [], tok(text, add_special_tokens=False)["input_ids"], text, tok)
        credited += [s.contributor.lower() for s in found.spans]
    assert credited and set(credited) <= contributors
    # The Models page's sample answers would ask this job's held-out questions (this node has its data).
    from node.web.samples import prompts_for

    chats, source = prompts_for(services, served)
    assert source == "held-out split" and 1 <= len(chats) <= 3 and chats[0][-1].role == "user"
    assert page.problems == []
