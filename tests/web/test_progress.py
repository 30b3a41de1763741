"""A run's metrics.jsonl as server-sent events: ids are line numbers, Last-Event-ID resumes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI

from node.train.config import Progress
from node.web.progress import LineFollower, last_event_id, progress_events
from tests.web.conftest import client


def line(step: int, kind: str = "train", **kw: float) -> str:
    p = Progress(kind=kind, step=step, total_steps=6, epoch=step / 6, **kw)  # type: ignore[arg-type]
    return p.model_dump_json() + "\n"


def events(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(ln.split(": ", 1) for ln in block.splitlines() if ": " in ln and not ln.startswith(":"))
        if fields:
            out.append(fields)
    return out


def test_sse_resumes_after_last_event_id_with_only_the_later_lines(app: FastAPI) -> None:
    metrics = app.state.services.node.jobs_path / "job-7" / "train" / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("".join(line(s, loss=3.0 - s / 10) for s in range(1, 5)) + line(4, "eval", eval_loss=2.5)
                       + line(5, loss=2.4) + line(6, "done"))  # fmt: skip
    c = client(app)
    with c.stream("GET", "/train/jobs/7/metrics") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        whole = events(r.read().decode())
    progress = [e for e in whole if e.get("event") == "progress"]
    assert [e["id"] for e in progress] == ["1", "2", "3", "4", "5", "6", "7"]
    assert Progress.model_validate_json(progress[4]["data"]).eval_loss == 2.5
    assert whole[-1] == {"event": "end", "data": "done"}

    with c.stream("GET", "/train/jobs/7/metrics", headers={"Last-Event-ID": "4"}) as r:
        resumed = [e for e in events(r.read().decode()) if e.get("event") == "progress"]
    assert [e["id"] for e in resumed] == ["5", "6", "7"]
    assert [Progress.model_validate_json(e["data"]).step for e in resumed] == [4, 5, 6]
    assert c.get("/train/jobs/7").status_code == 200  # the run's page: its metrics are on this node


def test_a_line_being_written_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    follower = LineFollower(path)
    assert follower.read() == []  # no file yet
    whole = line(1, loss=1.0)
    path.write_text(whole + whole[:10])
    assert [n for n, _ in follower.read()] == [1]
    assert follower.read() == []
    with path.open("a") as f:
        f.write(whole[10:])
    assert [(n, raw.decode()) for n, raw in follower.read()] == [(2, whole.rstrip("\n"))]


def test_the_stream_follows_appended_lines_and_ends_when_the_job_stops(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(line(1, loss=2.0))
    state = {"stopped": False}

    async def never() -> bool:
        return False

    async def run() -> list[str]:
        got: list[str] = []
        async for text in progress_events(path, 0, lambda: state["stopped"], never, poll_s=0.01):
            got.append(text)
            if text.startswith("id: 1\n"):
                with path.open("a") as f:
                    f.write("not json\n" + line(2, loss=1.5))
            if text.startswith("id: 3\n"):
                state["stopped"] = True
        return got

    got = asyncio.run(asyncio.wait_for(run(), 10))
    ids = [t.split("\n")[0] for t in got if t.startswith("id: ")]
    assert ids == ["id: 1", "id: 3"]  # line 2 is not a metrics line: skipped, its number kept
    assert got[-1] == "event: end\ndata: stopped\n\n"


def test_last_event_id_parsing() -> None:
    assert last_event_id("12") == 12
    assert last_event_id(None, "3") == 3
    assert last_event_id("x", None) == 0
    assert last_event_id("-1") == 0
