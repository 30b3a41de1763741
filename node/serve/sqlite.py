"""The serving state's SQLite files (API keys, the response log): one short transaction per call."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_db(path: Path, schema: str) -> Path:
    """Creates the file's directory and tables if missing; the path, for `transaction`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with transaction(path) as db:
        db.executescript(schema)
    return path


@contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection whose work commits on success and rolls back on error, closed after."""
    db = sqlite3.connect(path, timeout=5)
    try:
        with db:
            yield db
    finally:
        db.close()
