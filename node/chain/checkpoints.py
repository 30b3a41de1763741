"""The event watcher's durable state in SQLite: checkpoint, recent block hashes, processed events.

One file (by default `Settings.state_db`, shared later with job states), WAL mode, tables
created on first use. Every write is one transaction (`BEGIN IMMEDIATE ... COMMIT`), so a crash
leaves either the old or the new state, never a mix. Several watchers can share a file: every
row is namespaced by the watcher's `name`.

Tables (all keyed by watcher name):
- `watcher_checkpoints`: the last block whose events were all handled, plus the chain id, the
  chain's genesis hash (a restarted dev chain keeps its id, not its genesis) and a fingerprint of
  the watched addresses, so a checkpoint is never resumed against another chain or deployment;
- `watcher_blocks`: hashes of processed blocks (the recent window), to detect reorgs;
- `watcher_events`: one row per handled event (key, block, hash, JSON), so a re-read range
  skips what was already handled and a reorg can drop exactly the orphaned ones.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, Field

from node.config import Settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watcher_checkpoints (
    name         TEXT PRIMARY KEY,
    chain_id     INTEGER NOT NULL,
    fingerprint  TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    updated_at   REAL NOT NULL,
    genesis_hash TEXT
);
CREATE TABLE IF NOT EXISTS watcher_blocks (
    name         TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash   TEXT NOT NULL,
    PRIMARY KEY (name, block_number)
);
CREATE TABLE IF NOT EXISTS watcher_events (
    name         TEXT NOT NULL,
    key          TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash   TEXT NOT NULL,
    log_index    INTEGER NOT NULL,
    event_json   TEXT NOT NULL,
    processed_at REAL NOT NULL,
    PRIMARY KEY (name, key)
);
CREATE INDEX IF NOT EXISTS watcher_events_by_block ON watcher_events (name, block_number);
"""


class Checkpoint(BaseModel):
    """Where a watcher stands: every event up to `block_number` (inclusive) was handled."""

    name: str
    chain_id: int = Field(description="Chain the checkpoint belongs to (eth_chainId).")
    genesis_hash: str | None = Field(
        None, description="0x-hash of that chain's block 0; None in checkpoints written before it was kept."
    )
    fingerprint: str = Field(description="Hash of the watched contract addresses.")
    block_number: int = Field(ge=-1, description="-1 before the first block was processed.")
    updated_at: float = 0.0


class StoredEvent(BaseModel):
    """A processed-event record (the event itself is `event_json`, a serialised ChainEvent)."""

    key: str
    block_number: int
    block_hash: str
    log_index: int
    event_json: str


class CheckpointStore:
    """SQLite store of watcher state. Thread-safe: one connection, guarded by a lock."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000):
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (sqlite3's implicit
        # transactions would otherwise split or merge our units of work).
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed checkpoint survives power loss, not only a process crash.
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Adds the columns newer versions keep to a file an older version created."""
        with self._tx() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(watcher_checkpoints)")}
            if "genesis_hash" not in columns:
                db.execute("ALTER TABLE watcher_checkpoints ADD COLUMN genesis_hash TEXT")

    @classmethod
    def from_settings(cls, settings: Settings) -> CheckpointStore:
        return cls(settings.state_db)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work (IMMEDIATE: take the write lock up front, no upgrade races)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ reading

    def checkpoint(self, name: str) -> Checkpoint | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT chain_id, fingerprint, block_number, updated_at, genesis_hash FROM watcher_checkpoints "
                "WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            return None
        return Checkpoint(
            name=name, chain_id=row[0], fingerprint=row[1], block_number=row[2], updated_at=row[3],
            genesis_hash=row[4],
        )  # fmt: skip

    def block_hash(self, name: str, block_number: int) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT block_hash FROM watcher_blocks WHERE name = ? AND block_number = ?",
                (name, block_number),
            ).fetchone()
        return None if row is None else str(row[0])

    def block_hashes(self, name: str, at_most: int) -> list[tuple[int, str]]:
        """Stored (number, hash) pairs at or below `at_most`, newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT block_number, block_hash FROM watcher_blocks "
                "WHERE name = ? AND block_number <= ? ORDER BY block_number DESC",
                (name, at_most),
            ).fetchall()
        return [(int(n), str(h)) for n, h in rows]

    def is_processed(self, name: str, key: str) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM watcher_events WHERE name = ? AND key = ?", (name, key)
            ).fetchone()
        return row is not None

    def events(self, name: str, above_block: int = -1) -> list[StoredEvent]:
        """Processed-event records in chain order (those still kept: see `advance`)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, block_number, block_hash, log_index, event_json FROM watcher_events "
                "WHERE name = ? AND block_number > ? ORDER BY block_number, log_index",
                (name, above_block),
            ).fetchall()
        return [
            StoredEvent(key=k, block_number=n, block_hash=h, log_index=i, event_json=j)
            for k, n, h, i, j in rows
        ]

    # ------------------------------------------------------------------ writing

    def record_event(self, name: str, event: StoredEvent) -> None:
        """Marks one event handled (its own transaction: committed right after its handlers)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO watcher_events (name, key, block_number, block_hash, "
                "log_index, event_json, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, event.key, event.block_number, event.block_hash, event.log_index,
                 event.event_json, time.time()),
            )  # fmt: skip

    def advance(self, checkpoint: Checkpoint, hashes: dict[int, str], keep_blocks: int) -> None:
        """Moves the checkpoint and stores block hashes, in one transaction.

        Hashes and event records more than `keep_blocks` below the checkpoint are pruned: a
        range is never re-read below its checkpoint, so only a reorg needs them, and reorgs
        deeper than the window are refused anyway.
        """
        floor = checkpoint.block_number - keep_blocks
        with self._tx() as db:
            db.execute(
                "INSERT INTO watcher_checkpoints (name, chain_id, fingerprint, block_number, "
                "updated_at, genesis_hash) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "chain_id = excluded.chain_id, fingerprint = excluded.fingerprint, "
                "block_number = excluded.block_number, updated_at = excluded.updated_at, "
                "genesis_hash = excluded.genesis_hash",
                (checkpoint.name, checkpoint.chain_id, checkpoint.fingerprint,
                 checkpoint.block_number, time.time(), checkpoint.genesis_hash),
            )  # fmt: skip
            db.executemany(
                "INSERT OR REPLACE INTO watcher_blocks (name, block_number, block_hash) VALUES (?, ?, ?)",
                [(checkpoint.name, n, h) for n, h in sorted(hashes.items())],
            )
            db.execute(
                "DELETE FROM watcher_blocks WHERE name = ? AND block_number < ?",
                (checkpoint.name, floor),
            )
            db.execute(
                "DELETE FROM watcher_events WHERE name = ? AND block_number < ?",
                (checkpoint.name, floor),
            )

    def rewind(self, name: str, ancestor: int, orphaned_keys: Iterable[str]) -> None:
        """After a reorg: checkpoint back to `ancestor`, newer hashes and orphaned events gone."""
        with self._tx() as db:
            db.execute(
                "UPDATE watcher_checkpoints SET block_number = ?, updated_at = ? WHERE name = ?",
                (ancestor, time.time(), name),
            )
            db.execute("DELETE FROM watcher_blocks WHERE name = ? AND block_number > ?", (name, ancestor))
            db.executemany(
                "DELETE FROM watcher_events WHERE name = ? AND key = ?",
                [(name, k) for k in orphaned_keys],
            )

    def reset(self, name: str) -> None:
        """Forgets everything about watcher `name` (after a chain reset or a redeployment): the
        next poll reads from its start block. `datanet daemon --reset-watcher` calls it."""
        with self._tx() as db:
            for table in ("watcher_checkpoints", "watcher_blocks", "watcher_events"):
                db.execute(f"DELETE FROM {table} WHERE name = ?", (name,))
