"""The daemon's job store: one row per job this node has seen, moved through an explicit state
machine by atomic transitions in SQLite.

    seen → claimed → data_ready → training (step k) → trained → attributed → uploaded → submitted → settled
    terminal: skipped (why), failed (why; retryable or not), lost (cancelled, expired, claimed by another node)

Why a table and not files: a `kill -9` at any moment must leave a state that a restart can act
on, so every change of state (and of the artifacts that justify it: claim tx, data root, adapter
CID, submit tx) is one `BEGIN IMMEDIATE ... COMMIT` together with the state. A transition names
the states it may start from (`UPDATE ... WHERE state IN (...)`), so two writers (the watcher's
handlers and the worker) can never both win, and a job marked `lost` by an event is not moved on
by a worker that was in the middle of a step.

The file is `Settings.state_db`, shared with the watcher's checkpoints (`node.chain.checkpoints`);
tables are created on first use, rows are kept per deployment and chain (`namespace_of`). Integers that
may exceed 64 bits (the pool) are stored as text.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel, Field

from node.chain.models import Deployment
from node.config import Settings
from node.errors import NodeError


class JobStoreError(NodeError, ValueError):
    """A write the state machine does not allow (unknown job, unknown column)."""


class JobState(StrEnum):
    SEEN = "seen"  # JobPosted read; not (yet) claimed by this node
    CLAIMED = "claimed"  # our claimJob is mined; claim_block fixes the training set
    DATA_READY = "data_ready"  # permitted training set assembled and written (data_root known)
    TRAINING = "training"  # trainer running or interrupted; it resumes from its checkpoints
    TRAINED = "trained"  # adapter written (adapter_sha256 known)
    ATTRIBUTED = "attributed"  # reward tree built (attribution_root known)
    UPLOADED = "uploaded"  # adapter, metrics, tree in the content store (CIDs known)
    SUBMITTED = "submitted"  # submitResult mined: model_id known
    SETTLED = "settled"  # the result is buried under `confirmations` blocks
    SKIPPED = "skipped"  # never claimed: this node cannot or will not run it (reason)
    FAILED = "failed"  # gave up (reason; `retryable` says whether `datanet jobs retry` may resume)
    LOST = "lost"  # cancelled, expired, or claimed by another node


TERMINAL = frozenset({JobState.SETTLED, JobState.SKIPPED, JobState.FAILED, JobState.LOST})
HOLDING = frozenset(
    {JobState.CLAIMED, JobState.DATA_READY, JobState.TRAINING, JobState.TRAINED, JobState.ATTRIBUTED, JobState.UPLOADED}
)
"""States in which this node holds a claim it still has to deliver (counted by max_active_jobs)."""
ORDER = list(JobState)[:9]
"""The happy path, in order (`ORDER.index` says how far a job got)."""


class JobRecord(BaseModel):
    """One row of the store: what is known of a job and how far this node got with it."""

    job_id: int
    state: JobState
    reason: str | None = Field(None, description="Why a job is skipped, failed or lost.")
    retryable: bool = Field(False, description="Failed for a reason a later retry may not meet.")
    failed_from: JobState | None = Field(None, description="The state a failed job was in (retry resumes there).")
    attempts: int = Field(0, description="Failed tries of the current step.")
    next_attempt_at: float = Field(0.0, description="Unix time before which the worker leaves the job alone.")
    last_error: str | None = None
    poster: str = ""
    base_model: str = ""
    base_model_hash: str = ""
    method: str = ""
    pool: int = 0
    deadline: int = 0
    datanet_ids: list[int] = Field(default_factory=list)
    posted_block: int = 0
    claim_tx: str | None = None
    claim_block: int | None = None
    work_dir: str | None = None
    examples: int | None = None
    data_root: str | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    adapter_sha256: str | None = None
    attribution_root: str | None = None
    adapter_cid: str | None = None
    metrics_cid: str | None = None
    attribution_cid: str | None = None
    submit_tx: str | None = None
    submit_block: int | None = None
    model_id: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def error(self) -> str | None:
        """What to show a user: why the job ended (skipped/failed/lost) or what it waits for."""
        return self.reason or self.last_error

    @property
    def percent(self) -> float | None:
        """Training progress 0..100 (None before training has a step count)."""
        if self.state in (JobState.TRAINED, JobState.ATTRIBUTED, JobState.UPLOADED, JobState.SUBMITTED,
                          JobState.SETTLED):  # fmt: skip
            return 100.0
        if self.step is None or not self.total_steps:
            return None
        return 100.0 * self.step / self.total_steps


class Transition(BaseModel):
    """One line of a job's history (`JobStore.history`)."""

    job_id: int
    at: float
    from_state: JobState | None
    to_state: JobState
    note: str | None = None


_COLUMNS = {name: info for name, info in JobRecord.model_fields.items()}
_JSON = {"datanet_ids"}
_TEXT_INT = {"pool"}  # uint256: wider than SQLite's INTEGER
_TYPES = {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}


def _sql_type(name: str) -> str:
    if name in _JSON or name in _TEXT_INT:
        return "TEXT"
    ann = str(_COLUMNS[name].annotation)
    return next((t for k, t in _TYPES.items() if k in ann), "TEXT")


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs (ns TEXT NOT NULL, "
    + ", ".join(f"{n} {_sql_type(n)}" for n in _COLUMNS)
    + ", PRIMARY KEY (ns, job_id));\n"
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (ns, state, next_attempt_at);\n"
    "CREATE TABLE IF NOT EXISTS job_history (ns TEXT NOT NULL, job_id INTEGER NOT NULL, at REAL NOT NULL, "
    "from_state TEXT, to_state TEXT NOT NULL, note TEXT);\n"
    "CREATE INDEX IF NOT EXISTS job_history_by_job ON job_history (ns, job_id, at);\n"
)


def _to_sql(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _JSON:
        return json.dumps(value)
    if name in _TEXT_INT:
        return str(int(value))
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def _from_row(names: list[str], row: tuple[Any, ...]) -> JobRecord:
    data = {n: (json.loads(v) if n in _JSON and v is not None else v) for n, v in zip(names, row, strict=True)}
    return JobRecord.model_validate({k: v for k, v in data.items() if v is not None})


def namespace_of(deployment: Deployment) -> str:
    """Rows are kept per deployment (chain id, genesis hash, ModelRegistry address): job ids restart
    at 1 on a redeployment, and a restarted dev chain keeps its chain id and, deployed by the same
    account, its contract addresses; only its genesis hash tells it apart. A deployment file
    without a genesis hash keeps the older `chain id:address` key (its rows stay readable)."""
    registry = deployment.contracts["ModelRegistry"].lower()
    if deployment.genesis_hash is None:
        return f"{deployment.chain_id}:{registry}"
    return f"{deployment.chain_id}:{deployment.genesis_hash.lower()}:{registry}"


class JobStore:
    """SQLite store of job rows. Thread-safe (one connection behind a lock), and safe to share
    with other processes reading it (WAL): `datanet jobs` reads while the daemon writes."""

    def __init__(self, path: Path | str, namespace: str, *, busy_timeout_ms: int = 5000):
        self.path = Path(path)
        self.ns = namespace
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")  # a committed state survives power loss
            self._conn.executescript(_SCHEMA)

    @classmethod
    def from_settings(cls, settings: Settings, deployment: Deployment) -> JobStore:
        return cls(settings.state_db, namespace_of(deployment))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ reading

    def get(self, job_id: int) -> JobRecord | None:
        rows = self._select("AND job_id = ?", (job_id,))
        return rows[0] if rows else None

    def require(self, job_id: int) -> JobRecord:
        record = self.get(job_id)
        if record is None:
            raise JobStoreError(f"Job #{job_id} is not in the job store {self.path}; the daemon has not seen it.")
        return record

    def all(self) -> list[JobRecord]:
        return self._select("ORDER BY job_id", ())

    def in_states(self, states: Iterable[JobState]) -> list[JobRecord]:
        wanted = [s.value for s in states]
        marks = ",".join("?" * len(wanted))
        return self._select(f"AND state IN ({marks}) ORDER BY job_id", tuple(wanted))

    def runnable(self, now: float | None = None) -> list[JobRecord]:
        """Unfinished jobs due for work, those furthest along first: a node finishes what it
        holds before it claims more."""
        at = time.time() if now is None else now
        marks = ",".join("?" * len(TERMINAL))
        rows = self._select(
            f"AND state NOT IN ({marks}) AND next_attempt_at <= ? ORDER BY job_id",
            (*(s.value for s in TERMINAL), at),
        )
        return sorted(rows, key=lambda r: (-ORDER.index(r.state), r.job_id))

    def history(self, job_id: int) -> list[Transition]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT job_id, at, from_state, to_state, note FROM job_history WHERE ns = ? AND job_id = ? "
                "ORDER BY rowid",
                (self.ns, job_id),
            ).fetchall()
        return [Transition(job_id=j, at=a, from_state=f, to_state=t, note=n) for j, a, f, t, n in rows]

    def _select(self, where: str, params: tuple[Any, ...]) -> list[JobRecord]:
        names = list(_COLUMNS)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(names)} FROM jobs WHERE ns = ? {where}", (self.ns, *params)
            ).fetchall()
        return [_from_row(names, r) for r in rows]

    # ------------------------------------------------------------------ writing

    def see(self, record: JobRecord) -> bool:
        """Inserts a newly seen job; False (and nothing written) if the job is already known,
        so a redelivered JobPosted never resets a job's progress."""
        now = time.time()
        data = record.model_copy(update={"created_at": now, "updated_at": now}).model_dump()
        names = list(_COLUMNS)
        with self._tx() as db:
            cur = db.execute(
                f"INSERT OR IGNORE INTO jobs (ns, {', '.join(names)}) VALUES (?, {', '.join('?' * len(names))})",
                (self.ns, *(_to_sql(n, data[n]) for n in names)),
            )
            if cur.rowcount:
                self._log(db, record.job_id, None, record.state, record.reason)
        return bool(cur.rowcount)

    def transition(
        self, job_id: int, to: JobState, *, from_: Iterable[JobState], note: str | None = None, **fields: Any
    ) -> bool:
        """Moves job `job_id` to `to` with `fields`, only if it is in one of `from_`; returns
        whether it moved. A new state starts with a clean slate of retries."""
        allowed = [s.value for s in from_]
        values = {"attempts": 0, "next_attempt_at": 0.0, "last_error": None, **fields, "state": to}
        sets, params = self._assignments(values)
        marks = ",".join("?" * len(allowed))
        with self._tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE ns = ? AND job_id = ?", (self.ns, job_id)).fetchone()
            if row is None or row[0] not in allowed:
                return False
            db.execute(
                f"UPDATE jobs SET {sets} WHERE ns = ? AND job_id = ? AND state IN ({marks})",
                (*params, self.ns, job_id, *allowed),
            )
            self._log(db, job_id, JobState(row[0]), to, note or fields.get("reason"))
        return True

    def update(self, job_id: int, *, state: JobState | None = None, **fields: Any) -> bool:
        """Sets `fields` (progress, artifacts) without a change of state; with `state`, only
        while the job is still in it. Returns whether a row was written."""
        if "state" in fields:
            raise JobStoreError("update() does not change a job's state; use transition().")
        sets, params = self._assignments(fields)
        where, extra = ("job_id = ?", (job_id,)) if state is None else ("job_id = ? AND state = ?", (job_id, state))
        where, extra = f"ns = ? AND {where}", (self.ns, *extra)
        with self._tx() as db:
            cur = db.execute(f"UPDATE jobs SET {sets} WHERE {where}", (*params, *extra))
        return bool(cur.rowcount)

    def defer(self, job_id: int, state: JobState, error: str, delay: float, *, count: bool = True) -> int:
        """Leaves the job in `state` and retries after `delay` seconds; returns the attempts so
        far. `count=False` for waits that are not failures (a key grant not given yet)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT attempts, state FROM jobs WHERE ns = ? AND job_id = ?", (self.ns, job_id)
            ).fetchone()
            if row is None or row[1] != state:
                return 0
            attempts = int(row[0]) + (1 if count else 0)
            db.execute(
                "UPDATE jobs SET attempts = ?, last_error = ?, next_attempt_at = ?, updated_at = ? "
                "WHERE ns = ? AND job_id = ?",
                (attempts, error, time.time() + delay, time.time(), self.ns, job_id),
            )
        return attempts

    def nudge(self, job_id: int) -> None:
        """Makes a waiting job due now (an event says something it waits for may have changed)."""
        self.update(job_id, next_attempt_at=0.0)

    def _assignments(self, fields: dict[str, Any]) -> tuple[str, list[Any]]:
        unknown = set(fields) - set(_COLUMNS) - {"state"}
        if unknown:
            raise JobStoreError(f"Unknown job column(s) {sorted(unknown)}; known: {sorted(_COLUMNS)}.")
        values = {**fields, "updated_at": time.time()}
        return ", ".join(f"{k} = ?" for k in values), [_to_sql(k, v) for k, v in values.items()]

    def _log(self, db: sqlite3.Connection, job_id: int, src: JobState | None, dst: JobState, note: str | None) -> None:
        db.execute(
            "INSERT INTO job_history (ns, job_id, at, from_state, to_state, note) VALUES (?, ?, ?, ?, ?, ?)",
            (self.ns, job_id, time.time(), None if src is None else src.value, dst.value, note),
        )


__all__ = [
    "HOLDING",
    "ORDER",
    "TERMINAL",
    "JobRecord",
    "JobState",
    "JobStore",
    "JobStoreError",
    "Transition",
    "namespace_of",
]
