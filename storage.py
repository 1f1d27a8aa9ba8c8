"""Persistence: the `Storage` interface the provider talks to, and its SQLite implementation.

Bearer secrets never reach this module in the clear: callers pass SHA-256 hashes of MCP
tokens, codes and states, and GitHub tokens already encrypted. Every "use once" operation
is a single conditional statement, so two replicas sharing the database cannot both win.

To add a backend (say Redis), implement `Storage` and pick it in `open_storage`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass
class Grant:
    """A GitHub token held for one (GitHub user, MCP client) pair."""

    grant_id: str
    subject: str
    client_id: str
    github_login: str
    token_enc: str
    refresh_enc: str | None
    expires_at: float | None
    refresh_expires_at: float | None
    github_scopes: str
    dead: bool


@dataclass
class Family:
    """All MCP tokens descending from one authorization code (one sign-in)."""

    family_id: str
    grant_id: str
    client_id: str
    subject: str
    scopes: list[str]
    resource: str
    code_hash: str
    generation: int
    rotated_at: float
    revoked: bool


@dataclass
class TokenRow:
    kind: str  # "access" or "refresh"
    family_id: str
    generation: int
    expires_at: float


@dataclass
class Swept:
    """What a sweep removed: row counts per table, and the GitHub tokens no grant holds any more."""

    counts: dict[str, int]
    released_tokens_enc: list[str]


@dataclass
class TokenRecord:
    """A token with what decides whether it is still good."""

    token: TokenRow
    family: Family
    grant: Grant


class Storage(Protocol):
    async def save_client(self, client_id: str, info_json: str, now: float) -> None: ...
    async def get_client(self, client_id: str) -> str | None: ...
    async def touch_client(self, client_id: str, now: float) -> None: ...

    async def add_pending(self, key: str, record: dict[str, Any], expires_at: float, cap: int, now: float) -> bool: ...
    async def get_pending(self, key: str, now: float) -> dict[str, Any] | None: ...
    async def approve_pending(self, key: str, state_hash: str, expires_at: float, now: float) -> bool: ...
    async def take_pending(self, key: str, now: float) -> dict[str, Any] | None: ...
    async def take_pending_by_state(self, state_hash: str, now: float) -> dict[str, Any] | None: ...

    async def save_code(self, code_hash: str, record: dict[str, Any], expires_at: float) -> None: ...
    async def get_code(self, code_hash: str) -> tuple[dict[str, Any], bool] | None: ...
    async def use_code(self, code_hash: str, now: float) -> bool: ...

    async def upsert_grant(self, grant: Grant) -> tuple[str, str | None]: ...
    async def get_grant(self, grant_id: str) -> Grant | None: ...
    async def update_grant_tokens(
        self,
        grant_id: str,
        token_enc: str,
        refresh_enc: str | None,
        expires_at: float | None,
        refresh_expires_at: float | None,
    ) -> None: ...
    async def kill_grant(self, grant_id: str) -> None: ...
    async def delete_grant(self, grant_id: str) -> None: ...

    async def create_family(self, family: Family) -> None: ...
    async def add_token(self, token_hash: str, row: TokenRow) -> None: ...
    async def get_token(self, token_hash: str) -> TokenRecord | None: ...
    async def rotate_family(self, family_id: str, from_generation: int, scopes: list[str], now: float) -> bool: ...
    async def revoke_family(self, family_id: str) -> None: ...
    async def families_from_code(self, code_hash: str) -> list[Family]: ...
    async def live_family_count(self, grant_id: str) -> int: ...

    async def record_consent(
        self, subject: str, client_id: str, redirect_uri: str, scopes: str, now: float
    ) -> None: ...
    async def sweep(self, now: float, unused_client_seconds: int, idle_client_seconds: int) -> Swept: ...
    async def close(self) -> None: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY, info_json TEXT NOT NULL,
    created_at REAL NOT NULL, last_used_at REAL);
CREATE TABLE IF NOT EXISTS pending (
    key TEXT PRIMARY KEY, record TEXT NOT NULL, stage TEXT NOT NULL,
    state_hash TEXT UNIQUE, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS codes (
    code_hash TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at REAL NOT NULL, used_at REAL);
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY, subject TEXT NOT NULL, client_id TEXT NOT NULL, github_login TEXT NOT NULL,
    token_enc TEXT NOT NULL, refresh_enc TEXT, expires_at REAL, refresh_expires_at REAL,
    github_scopes TEXT NOT NULL, dead INTEGER NOT NULL DEFAULT 0,
    UNIQUE (subject, client_id));
CREATE TABLE IF NOT EXISTS families (
    family_id TEXT PRIMARY KEY, grant_id TEXT NOT NULL, client_id TEXT NOT NULL, subject TEXT NOT NULL,
    scopes TEXT NOT NULL, resource TEXT NOT NULL, code_hash TEXT NOT NULL,
    generation INTEGER NOT NULL, rotated_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS families_by_grant ON families (grant_id);
CREATE INDEX IF NOT EXISTS families_by_code ON families (code_hash);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, family_id TEXT NOT NULL,
    generation INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_by_family ON tokens (family_id);
CREATE TABLE IF NOT EXISTS consents (
    subject TEXT NOT NULL, client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL,
    scopes TEXT NOT NULL, approved_at REAL NOT NULL,
    PRIMARY KEY (subject, client_id, redirect_uri));
"""


class SQLiteStorage:
    """The embedded default store. Queries are sub-millisecond, so they run on the event loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # owner-only, like the key file; SQLite gives its -wal/-shm files the same mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

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

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._run(sql, params).fetchone()
        return row

    # Clients
    async def save_client(self, client_id: str, info_json: str, now: float) -> None:
        self._run(
            "INSERT INTO clients (client_id, info_json, created_at) VALUES (?, ?, ?)", (client_id, info_json, now)
        )

    async def get_client(self, client_id: str) -> str | None:
        row = self._one("SELECT info_json FROM clients WHERE client_id = ?", (client_id,))
        return None if row is None else str(row["info_json"])

    async def touch_client(self, client_id: str, now: float) -> None:
        self._run("UPDATE clients SET last_used_at = ? WHERE client_id = ?", (now, client_id))

    # Pending authorizations: "consent" stage until approved, then "github" until the callback.
    async def add_pending(self, key: str, record: dict[str, Any], expires_at: float, cap: int, now: float) -> bool:
        with self._transaction() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM pending WHERE expires_at > ?", (now,)).fetchone()
            if count >= cap:
                return False
            db.execute(
                "INSERT INTO pending (key, record, stage, expires_at) VALUES (?, ?, 'consent', ?)",
                (key, json.dumps(record), expires_at),
            )
            return True

    async def get_pending(self, key: str, now: float) -> dict[str, Any] | None:
        row = self._one("SELECT record FROM pending WHERE key = ? AND stage = 'consent' AND expires_at > ?", (key, now))
        return None if row is None else dict(json.loads(row["record"]))

    async def approve_pending(self, key: str, state_hash: str, expires_at: float, now: float) -> bool:
        cursor = self._run(
            "UPDATE pending SET stage = 'github', state_hash = ?, expires_at = ?"
            " WHERE key = ? AND stage = 'consent' AND expires_at > ?",
            (state_hash, expires_at, key, now),
        )
        return cursor.rowcount == 1

    async def take_pending(self, key: str, now: float) -> dict[str, Any] | None:
        row = self._one(
            "DELETE FROM pending WHERE key = ? AND stage = 'consent' AND expires_at > ? RETURNING record", (key, now)
        )
        return None if row is None else dict(json.loads(row["record"]))

    async def take_pending_by_state(self, state_hash: str, now: float) -> dict[str, Any] | None:
        row = self._one(
            "DELETE FROM pending WHERE state_hash = ? AND stage = 'github' AND expires_at > ? RETURNING record",
            (state_hash, now),
        )
        return None if row is None else dict(json.loads(row["record"]))

    # Authorization codes: kept after use until they expire, so a replay can be recognised.
    async def save_code(self, code_hash: str, record: dict[str, Any], expires_at: float) -> None:
        self._run(
            "INSERT INTO codes (code_hash, record, expires_at) VALUES (?, ?, ?)",
            (code_hash, json.dumps(record), expires_at),
        )

    async def get_code(self, code_hash: str) -> tuple[dict[str, Any], bool] | None:
        row = self._one("SELECT record, used_at FROM codes WHERE code_hash = ?", (code_hash,))
        return None if row is None else (dict(json.loads(row["record"])), row["used_at"] is not None)

    async def use_code(self, code_hash: str, now: float) -> bool:
        cursor = self._run("UPDATE codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL", (now, code_hash))
        return cursor.rowcount == 1

    # Grants
    async def upsert_grant(self, grant: Grant) -> tuple[str, str | None]:
        """Store the user's GitHub token for this client; returns the grant id and the (encrypted) token it replaced."""
        with self._transaction() as db:
            old = db.execute(
                "SELECT grant_id, token_enc FROM grants WHERE subject = ? AND client_id = ?",
                (grant.subject, grant.client_id),
            ).fetchone()
            values = asdict(grant)
            if old is not None:
                values["grant_id"] = old["grant_id"]
                db.execute("DELETE FROM grants WHERE grant_id = ?", (old["grant_id"],))
            db.execute(*_insert("grants", values))
            return str(values["grant_id"]), None if old is None else str(old["token_enc"])

    async def get_grant(self, grant_id: str) -> Grant | None:
        row = self._one("SELECT * FROM grants WHERE grant_id = ?", (grant_id,))
        return None if row is None else _grant(row)

    async def update_grant_tokens(
        self,
        grant_id: str,
        token_enc: str,
        refresh_enc: str | None,
        expires_at: float | None,
        refresh_expires_at: float | None,
    ) -> None:
        self._run(
            "UPDATE grants SET token_enc = ?, refresh_enc = ?, expires_at = ?, refresh_expires_at = ?"
            " WHERE grant_id = ?",
            (token_enc, refresh_enc, expires_at, refresh_expires_at, grant_id),
        )

    async def kill_grant(self, grant_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE grants SET dead = 1 WHERE grant_id = ?", (grant_id,))
            db.execute("UPDATE families SET revoked = 1 WHERE grant_id = ?", (grant_id,))

    async def delete_grant(self, grant_id: str) -> None:
        self._run("DELETE FROM grants WHERE grant_id = ?", (grant_id,))

    # Token families
    async def create_family(self, family: Family) -> None:
        values = asdict(family)
        values["scopes"] = " ".join(family.scopes)
        self._run(*_insert("families", values))

    async def add_token(self, token_hash: str, row: TokenRow) -> None:
        self._run(
            "INSERT OR IGNORE INTO tokens (token_hash, kind, family_id, generation, expires_at) VALUES (?, ?, ?, ?, ?)",
            (token_hash, row.kind, row.family_id, row.generation, row.expires_at),
        )

    async def get_token(self, token_hash: str) -> TokenRecord | None:
        row = self._one(
            "SELECT t.kind, t.generation AS token_generation, t.expires_at AS token_expires_at, f.*,"
            " g.grant_id AS g_grant_id, g.subject AS g_subject, g.client_id AS g_client_id, g.github_login,"
            " g.token_enc, g.refresh_enc, g.expires_at AS g_expires_at, g.refresh_expires_at, g.github_scopes, g.dead"
            " FROM tokens t JOIN families f ON f.family_id = t.family_id JOIN grants g ON g.grant_id = f.grant_id"
            " WHERE t.token_hash = ?",
            (token_hash,),
        )
        if row is None:
            return None
        family = _family(row)
        return TokenRecord(
            token=TokenRow(row["kind"], family.family_id, row["token_generation"], row["token_expires_at"]),
            family=family,
            grant=Grant(
                grant_id=row["g_grant_id"],
                subject=row["g_subject"],
                client_id=row["g_client_id"],
                github_login=row["github_login"],
                token_enc=row["token_enc"],
                refresh_enc=row["refresh_enc"],
                expires_at=row["g_expires_at"],
                refresh_expires_at=row["refresh_expires_at"],
                github_scopes=row["github_scopes"],
                dead=bool(row["dead"]),
            ),
        )

    async def rotate_family(self, family_id: str, from_generation: int, scopes: list[str], now: float) -> bool:
        cursor = self._run(
            "UPDATE families SET generation = generation + 1, rotated_at = ?, scopes = ?"
            " WHERE family_id = ? AND generation = ? AND revoked = 0",
            (now, " ".join(scopes), family_id, from_generation),
        )
        return cursor.rowcount == 1

    async def revoke_family(self, family_id: str) -> None:
        self._run("UPDATE families SET revoked = 1 WHERE family_id = ?", (family_id,))

    async def families_from_code(self, code_hash: str) -> list[Family]:
        rows = self._run("SELECT * FROM families WHERE code_hash = ?", (code_hash,)).fetchall()
        return [_family(row) for row in rows]

    async def live_family_count(self, grant_id: str) -> int:
        row = self._one("SELECT COUNT(*) FROM families WHERE grant_id = ? AND revoked = 0", (grant_id,))
        return 0 if row is None else int(row[0])

    async def record_consent(self, subject: str, client_id: str, redirect_uri: str, scopes: str, now: float) -> None:
        self._run(
            "INSERT OR REPLACE INTO consents (subject, client_id, redirect_uri, scopes, approved_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (subject, client_id, redirect_uri, scopes, now),
        )

    async def sweep(self, now: float, unused_client_seconds: int, idle_client_seconds: int) -> Swept:
        """Delete what can no longer be used, so the store does not grow without bound."""
        statements = {
            "pending": ("DELETE FROM pending WHERE expires_at <= ?", (now,)),
            "codes": ("DELETE FROM codes WHERE expires_at <= ?", (now,)),
            "tokens": (
                "DELETE FROM tokens WHERE expires_at <= ?"
                " OR family_id IN (SELECT family_id FROM families WHERE revoked = 1)"
                # Superseded access tokens are useless; superseded refresh tokens stay until they expire,
                # so that their reuse is still recognised (RFC 9700 §4.14.2).
                " OR (kind = 'access' AND generation < (SELECT generation FROM families f"
                " WHERE f.family_id = tokens.family_id))",
                (now,),
            ),
            "families": (
                "DELETE FROM families WHERE family_id NOT IN (SELECT family_id FROM tokens)"
                " AND code_hash NOT IN (SELECT code_hash FROM codes)",
                (),
            ),
            "clients": (
                "DELETE FROM clients WHERE (last_used_at IS NULL AND created_at <= ?) OR last_used_at <= ?",
                (now - unused_client_seconds, now - idle_client_seconds),
            ),
        }
        counts = {table: self._run(sql, params).rowcount for table, (sql, params) in statements.items()}
        released = self._run(
            "DELETE FROM grants WHERE grant_id NOT IN (SELECT grant_id FROM families)"
            " AND grant_id NOT IN (SELECT json_extract(record, '$.grant_id') FROM codes) RETURNING token_enc"
        ).fetchall()
        counts["grants"] = len(released)
        return Swept(counts, [str(row["token_enc"]) for row in released])

    async def close(self) -> None:
        self._db.close()


def _insert(table: str, values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """An INSERT of a dataclass's fields: column names come from our own code, values are bound."""
    columns = ", ".join(values)
    placeholders = ", ".join("?" * len(values))
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", tuple(values.values())  # noqa: S608


def _grant(row: sqlite3.Row) -> Grant:
    return Grant(**{k: row[k] for k in row.keys()} | {"dead": bool(row["dead"])})


def _family(row: sqlite3.Row) -> Family:
    return Family(
        family_id=row["family_id"],
        grant_id=row["grant_id"],
        client_id=row["client_id"],
        subject=row["subject"],
        scopes=str(row["scopes"]).split(),
        resource=row["resource"],
        code_hash=row["code_hash"],
        generation=row["generation"],
        rotated_at=row["rotated_at"],
        revoked=bool(row["revoked"]),
    )


def new_id() -> str:
    return uuid.uuid4().hex


def open_storage(path: Path) -> Storage:
    return SQLiteStorage(path)
