"""What the server keeps of each answer, for how long, and why.

**Retention rule** (shown in the docs and the app): for every answer of a registered model the
node keeps the attributed spans, the credits they gave each contributor, the token counts and
the API key's id — that is what the epoch's inference rewards are computed from, so it is kept
until the epoch is settled on-chain. The prompt and the answer text are kept beside them for
`retention_days` (default 30, `DATANET_SERVE_RETENTION_DAYS`; 0 keeps no text at all), so a
contributor or the key's owner can check a credit against the words it came from; after that
the text is erased and only spans and counts remain. The key's owner deletes an answer's text at
any time with ``DELETE /v1/attribution/{id}``; `datanet responses purge --all` erases all stored text.
Everything lives in one SQLite file under the node's data directory (`serve/responses.sqlite`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path

from pydantic import BaseModel, Field

from node.serve.openai_types import SpanCredit
from node.serve.sqlite import open_db, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
  id TEXT PRIMARY KEY,
  created INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  key_id TEXT NOT NULL,
  model TEXT NOT NULL,
  model_id INTEGER,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  spans TEXT NOT NULL,
  credits TEXT NOT NULL,
  prompt TEXT,
  answer TEXT
);
CREATE INDEX IF NOT EXISTS responses_epoch ON responses (epoch, model_id);
"""


class StoredResponse(BaseModel):
    id: str
    created: int
    epoch: int = Field(description="The settlement epoch the answer's credits count in.")
    key_id: str
    model: str
    model_id: int | None
    prompt_tokens: int
    completion_tokens: int
    spans: list[SpanCredit]
    credits: dict[str, int] = Field(description="Contributor address -> credit units from this answer.")
    prompt: str | None = Field(None, description="Erased after the retention period.")
    answer: str | None = None


class ResponseLog:
    """The answers' records (module docstring), in SQLite."""

    def __init__(self, path: Path, *, retention_days: int = 30, epoch_seconds: int = 86_400):
        self.path, self.retention_days, self.epoch_seconds = Path(path), retention_days, epoch_seconds
        open_db(self.path, _SCHEMA)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)

    def epoch_of(self, ts: float) -> int:
        return int(ts) // self.epoch_seconds

    def record(
        self, rid: str, *, key_id: str, model: str, model_id: int | None, prompt: str, answer: str,
        prompt_tokens: int, completion_tokens: int, spans: list[SpanCredit], credits: dict[str, int],
        now: float | None = None,
    ) -> StoredResponse:  # fmt: skip
        now = time.time() if now is None else now
        keep_text = self.retention_days > 0
        row = StoredResponse(
            id=rid, created=int(now), epoch=self.epoch_of(now), key_id=key_id, model=model, model_id=model_id,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, spans=spans, credits=credits,
            prompt=prompt if keep_text else None, answer=answer if keep_text else None,
        )  # fmt: skip
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (row.id, row.created, row.epoch, row.key_id, row.model, row.model_id, row.prompt_tokens,
                 row.completion_tokens, json.dumps([s.model_dump() for s in spans]),
                 json.dumps(credits, sort_keys=True), row.prompt, row.answer),
            )  # fmt: skip
        return row

    def get(self, rid: str) -> StoredResponse | None:
        with self._db() as db:
            r = db.execute("SELECT * FROM responses WHERE id = ?", (rid,)).fetchone()
        return _row(r) if r else None

    def erase_text(self, rid: str) -> bool:
        with self._db() as db:
            return db.execute("UPDATE responses SET prompt = NULL, answer = NULL WHERE id = ?", (rid,)).rowcount > 0

    def purge(self, now: float | None = None, *, everything: bool = False) -> int:
        """Erases the text of answers older than the retention period (all of it with
        `everything`); the number of answers whose text was erased."""
        now = time.time() if now is None else now
        cutoff = now + 1 if everything else now - self.retention_days * 86_400
        with self._db() as db:
            return db.execute(
                "UPDATE responses SET prompt = NULL, answer = NULL WHERE created < ? AND "
                "(prompt IS NOT NULL OR answer IS NOT NULL)", (int(cutoff),),
            ).rowcount  # fmt: skip

    def credits(self, epoch: int) -> dict[int, dict[str, int]]:
        """Per model id, each contributor's credit units in `epoch` (what its settlement pays)."""
        out: dict[int, dict[str, int]] = {}
        with self._db() as db:
            rows = db.execute(
                "SELECT model_id, credits FROM responses WHERE epoch = ? AND model_id IS NOT NULL ORDER BY id", (epoch,)
            ).fetchall()
        for model_id, credits in rows:
            acc = out.setdefault(int(model_id), {})
            for who, units in json.loads(credits).items():
                acc[who] = acc.get(who, 0) + int(units)
        return out

    def usage(self, epoch: int) -> dict[str, int]:
        """Per API key id, the tokens (prompt + answer) its requests used in `epoch`."""
        with self._db() as db:
            rows = db.execute(
                "SELECT key_id, SUM(prompt_tokens + completion_tokens) FROM responses WHERE epoch = ? GROUP BY key_id",
                (epoch,),
            ).fetchall()
        return {k: int(n) for k, n in rows}


def _row(r: tuple[object, ...]) -> StoredResponse:
    names = ("id", "created", "epoch", "key_id", "model", "model_id", "prompt_tokens", "completion_tokens", "spans",
             "credits", "prompt", "answer")  # fmt: skip
    d = dict(zip(names, r, strict=True))
    d["spans"] = json.loads(str(d["spans"]))
    d["credits"] = json.loads(str(d["credits"]))
    return StoredResponse.model_validate(d)
