"""The SQLite file under the store: opened owner-only in WAL mode with the current schema, and the
locked primitives every statement goes through.

The connection may be used from more than one thread (`check_same_thread=False`), so each statement
or transaction holds a lock around it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ghmcp.storage.sqlite_schema import SCHEMA, migrate


class SQLiteFile:
    """The connection, kept apart from `SQLiteStorage` so that the store's class holds only what each
    `Storage` step means in SQL."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # owner-only, like the key file; SQLite gives its -wal/-shm files the same mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # Token lookups stay flat as the store grows: pages are read through memory, not read() calls.
        self._db.execute("PRAGMA mmap_size = 268435456")
        self._db.execute("PRAGMA cache_size = -32768")
        self._db.executescript(SCHEMA)
        with self._transaction() as db:
            migrate(db)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Several statements as one atomic step, also against other processes sharing the file."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _run(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def _one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._run(sql, params).fetchone()
        return row

    async def close(self) -> None:
        self._db.close()
