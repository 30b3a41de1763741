"""A job's training progress as server-sent events: its `metrics.jsonl`, followed as it grows.

Each complete line of the file is one event whose `id` is its 1-based line number, so a browser
that reconnects (EventSource resends the last id as `Last-Event-ID`) gets only the lines after
the ones it has. A line still being written (no newline yet) waits for its newline. The stream
ends with an `end` event once the run wrote its `done` line, or once the job left training
without one (failed, lost); the page then closes its EventSource, which would otherwise reconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from pydantic import ValidationError

from node.train.config import Progress

POLL_S = 0.5
KEEP_ALIVE_S = 15.0


def last_event_id(header: str | None, query: str | None = None) -> int:
    """The line number the client has (0: none); a malformed value counts as none."""
    for raw in (header, query):
        if raw is not None and raw.strip().isdigit():
            return int(raw.strip())
    return 0


class LineFollower:
    """Reads the complete lines appended to a file since the last read (the file may not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.line_no = path, 0, 0

    def read(self) -> list[tuple[int, bytes]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        lines = []
        for line in data[:end].split(b"\n"):
            self.line_no += 1
            lines.append((self.line_no, line))
        return lines


async def progress_events(
    path: Path, after: int, finished: Callable[[], bool], disconnected: Callable[[], Awaitable[bool]],
    *, poll_s: float = POLL_S, keep_alive_s: float = KEEP_ALIVE_S,
) -> AsyncIterator[str]:  # fmt: skip
    """SSE text for every line of `path` after line `after`, then each new one, until the run is
    done (`finished()` says the job stopped training and every line has been read)."""
    follower = LineFollower(path)
    quiet_since = time.monotonic()
    yield f"retry: {int(poll_s * 4000)}\n\n"  # reconnect after ~2 s
    while True:
        if await disconnected():
            return
        for number, raw in follower.read():
            if number <= after:
                continue
            try:
                p = Progress.model_validate_json(raw)
            except ValidationError:
                continue  # not a metrics line (a torn write would have had no newline): its number is skipped
            quiet_since = time.monotonic()
            yield f"id: {number}\nevent: progress\ndata: {p.model_dump_json()}\n\n"
            if p.kind == "done":
                yield "event: end\ndata: done\n\n"
                return
        if finished():
            yield "event: end\ndata: stopped\n\n"
            return
        if time.monotonic() - quiet_since >= keep_alive_s:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll_s)
