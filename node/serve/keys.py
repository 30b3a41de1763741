"""API keys: ``sk-dn-...`` bearer tokens, stored hashed.

A key is 32 random bytes, so a plain sha256 of it is as good as a slow password hash: nobody
can brute-force 256 bits, and a lookup by hash costs one index probe (no per-request KDF). Only
the hash and a short visible prefix are kept; the key itself is printed once, when it is made.
Revoking keeps the row (who had access, when), so `list` can still show it.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path

from pydantic import BaseModel, Field

from node.errors import NodeError
from node.serve.sqlite import open_db, transaction

PREFIX = "sk-dn-"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER,
  last_used_at INTEGER,
  account TEXT,
  requests_per_minute INTEGER NOT NULL
)
"""


class ApiKeyError(NodeError, LookupError):
    """An API key operation that cannot be done (unknown id, already revoked)."""


class ApiKey(BaseModel):
    """What is known of a key without the key itself."""

    id: str = Field(description="The key's public id; `sk-dn-<id>...` is how it is shown.")
    name: str
    created_at: int
    revoked_at: int | None = None
    last_used_at: int | None = None
    account: str | None = Field(None, description="The OPEN account that pays this key's inference fees, if any.")
    requests_per_minute: int = Field(description="This key's rate limit.")

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def shown(self) -> str:
        return f"{PREFIX}{self.id}..."


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStore:
    """The node's API keys, in a SQLite file beside its other state."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        open_db(self.path, _SCHEMA)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)

    def create(self, name: str, *, requests_per_minute: int = 60, account: str | None = None) -> tuple[ApiKey, str]:
        """A new key: its record and the key itself (shown once, never stored)."""
        key_id = secrets.token_hex(4)
        key = f"{PREFIX}{key_id}{secrets.token_urlsafe(32)}"
        record = ApiKey(
            id=key_id, name=name, created_at=int(time.time()), account=account, requests_per_minute=requests_per_minute
        )
        with self._db() as db:
            db.execute(
                "INSERT INTO api_keys (id, name, hash, created_at, account, requests_per_minute) VALUES (?,?,?,?,?,?)",
                (record.id, name, _hash(key), record.created_at, account, requests_per_minute),
            )
        return record, key

    def list(self) -> list[ApiKey]:
        with self._db() as db:
            rows = db.execute(
                "SELECT id, name, created_at, revoked_at, last_used_at, account, requests_per_minute "
                "FROM api_keys ORDER BY created_at, id"
            ).fetchall()
        return [_record(r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        key_id = key_id.removeprefix(PREFIX).removesuffix("...")[:8]
        with self._db() as db:
            row = db.execute(
                "SELECT id, name, created_at, revoked_at, last_used_at, account, requests_per_minute FROM api_keys "
                "WHERE id = ?", (key_id,),
            ).fetchone()  # fmt: skip
            if row is None:
                raise ApiKeyError(f"no API key with id '{key_id}'; `datanet api-key list` shows the ids")
            if row[3] is None:
                db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (int(time.time()), key_id))
        return self.list_by_id(key_id)

    def list_by_id(self, key_id: str) -> ApiKey:
        for k in self.list():
            if k.id == key_id:
                return k
        raise ApiKeyError(f"no API key with id '{key_id}'")

    def verify(self, key: str) -> ApiKey | None:
        """The active key `key` is, or None (unknown, malformed or revoked)."""
        if not key.startswith(PREFIX) or len(key) > 200:
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT id, name, created_at, revoked_at, last_used_at, account, requests_per_minute FROM api_keys "
                "WHERE hash = ?", (_hash(key),),
            ).fetchone()  # fmt: skip
            if row is None or row[3] is not None:
                return None
            now = int(time.time())
            if row[4] is None or now - row[4] >= 60:  # at most one write a minute per key
                db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, row[0]))
        return _record(row)

    def count_active(self) -> int:
        return sum(1 for k in self.list() if k.active)


def _record(row: tuple[object, ...]) -> ApiKey:
    names = ("id", "name", "created_at", "revoked_at", "last_used_at", "account", "requests_per_minute")
    return ApiKey.model_validate(dict(zip(names, row, strict=True)))


class RateLimiter:
    """A token bucket per key: `requests_per_minute` requests, refilled continuously."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def retry_after(self, key: ApiKey, now: float | None = None) -> float:
        """0 and spends one request, or the seconds until the next request is allowed."""
        now = time.monotonic() if now is None else now
        rate = key.requests_per_minute / 60.0
        tokens, last = self._buckets.get(key.id, (float(key.requests_per_minute), now))
        tokens = min(float(key.requests_per_minute), tokens + (now - last) * rate)
        if tokens >= 1:
            self._buckets[key.id] = (tokens - 1, now)
            return 0.0
        self._buckets[key.id] = (tokens, now)
        return (1 - tokens) / rate if rate > 0 else 60.0
