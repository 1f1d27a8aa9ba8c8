"""The embedded default store: one SQLite file, safe to share between processes on one host.

Every single-use or compare-and-set step is one conditional statement or one `BEGIN IMMEDIATE`
transaction, so two processes sharing the file cannot both win it. Queries are sub-millisecond,
so they run on the event loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ghmcp.storage import Family, Grant, PendingLimits, Released, Swept, TokenRecord, TokenRow, raise_unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY, info_json TEXT NOT NULL,
    created_at REAL NOT NULL, last_used_at REAL);
CREATE TABLE IF NOT EXISTS pending (
    key TEXT PRIMARY KEY, record TEXT NOT NULL, stage TEXT NOT NULL, client_id TEXT NOT NULL,
    origin TEXT NOT NULL, state_hash TEXT UNIQUE, expires_at REAL NOT NULL,
    wide_origin TEXT NOT NULL DEFAULT '');  -- last: where _migrate's ALTER TABLE puts it in older files
CREATE INDEX IF NOT EXISTS pending_by_client ON pending (client_id, expires_at);
CREATE INDEX IF NOT EXISTS pending_by_origin ON pending (origin, expires_at);
CREATE TABLE IF NOT EXISTS codes (
    code_hash TEXT PRIMARY KEY, record TEXT NOT NULL, grant_id TEXT NOT NULL,
    expires_at REAL NOT NULL, used_at REAL);
CREATE INDEX IF NOT EXISTS codes_by_grant ON codes (grant_id);
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY, subject TEXT NOT NULL, client_id TEXT NOT NULL, github_login TEXT NOT NULL,
    token_enc TEXT NOT NULL, refresh_enc TEXT, expires_at REAL, refresh_expires_at REAL,
    github_scopes TEXT NOT NULL, dead INTEGER NOT NULL DEFAULT 0, admitted_via TEXT NOT NULL DEFAULT '',
    refresh_lease_until REAL NOT NULL DEFAULT 0,
    UNIQUE (subject, client_id));
CREATE TABLE IF NOT EXISTS families (
    family_id TEXT PRIMARY KEY, grant_id TEXT NOT NULL, client_id TEXT NOT NULL, subject TEXT NOT NULL,
    scopes TEXT NOT NULL, resource TEXT NOT NULL, code_hash TEXT NOT NULL,
    generation INTEGER NOT NULL, rotated_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,
    signed_in_at REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS families_by_grant ON families (grant_id);
CREATE INDEX IF NOT EXISTS families_by_code ON families (code_hash);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, family_id TEXT NOT NULL,
    generation INTEGER NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_by_family ON tokens (family_id);
CREATE TABLE IF NOT EXISTS consents (
    subject TEXT NOT NULL, client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL,
    scopes TEXT NOT NULL, approved_at REAL NOT NULL,
    PRIMARY KEY (subject, client_id, redirect_uri));
CREATE TABLE IF NOT EXISTS logins (login TEXT PRIMARY KEY, github_id INTEGER NOT NULL);
"""

# A grant is still needed while a live family or an unexchanged, unexpired code refers to it.
GRANT_NEEDED = (
    "EXISTS (SELECT 1 FROM families f WHERE f.grant_id = :grant_id AND f.revoked = 0)"
    " OR EXISTS (SELECT 1 FROM codes c WHERE c.grant_id = :grant_id AND c.used_at IS NULL AND c.expires_at > :now)"
)


# A token with its family and grant in one join; the grant's columns (names from our own dataclass)
# are prefixed so that none clashes with the family's.
TOKEN_QUERY = (
    "SELECT t.kind, t.generation AS token_generation, t.expires_at AS token_expires_at, f.*, "  # noqa: S608
    + ", ".join(f"g.{f.name} AS g_{f.name}" for f in fields(Grant))
    + " FROM tokens t JOIN families f ON f.family_id = t.family_id JOIN grants g ON g.grant_id = f.grant_id"
    " WHERE t.token_hash = ?"
)


def sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) and len(url) > len(prefix) else None


class SQLiteStorage:
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
        self._migrate()

    def _migrate(self) -> None:
        """Bring a file written by an older version up to SCHEMA, whose CREATE TABLE IF NOT EXISTS leaves an
        existing table as it is; one transaction, so that two processes opening the file at once cannot both
        add the column."""
        with self._transaction() as db:
            if "wide_origin" not in {row["name"] for row in db.execute("PRAGMA table_info(pending)")}:
                # Its rows (minutes old at most) count for no site; they expire before long.
                db.execute("ALTER TABLE pending ADD COLUMN wide_origin TEXT NOT NULL DEFAULT ''")
            db.execute("CREATE INDEX IF NOT EXISTS pending_by_wide_origin ON pending (wide_origin, expires_at)")

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

    async def ping(self) -> None:
        self._one("SELECT 1")

    async def key_check(self) -> str | None:
        row = self._one("SELECT value FROM meta WHERE name = 'key_check'")
        return None if row is None else str(row["value"])

    async def set_key_check(self, value: str) -> None:
        self._run("INSERT OR REPLACE INTO meta (name, value) VALUES ('key_check', ?)", (value,))

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

    # Pending sign-ins
    async def add_pending(
        self,
        key: str,
        record: dict[str, Any],
        *,
        client_id: str,
        origin: str,
        expires_at: float,
        limits: PendingLimits,
        now: float,
        wide_origin: str | None = None,
    ) -> str | None:
        wide = origin if wide_origin is None else wide_origin
        with self._transaction() as db:
            counts = (
                ("client", "SELECT COUNT(*) FROM pending WHERE client_id = ? AND expires_at > ?", (client_id, now)),
                ("origin", "SELECT COUNT(*) FROM pending WHERE origin = ? AND expires_at > ?", (origin, now)),
                ("wide_origin", "SELECT COUNT(*) FROM pending WHERE wide_origin = ? AND expires_at > ?", (wide, now)),
                ("total", "SELECT COUNT(*) FROM pending WHERE expires_at > ?", (now,)),
            )
            caps = {
                "client": limits.per_client,
                "origin": limits.per_origin,
                "wide_origin": limits.per_wide_origin,
                "total": limits.total,
            }
            for name, sql, params in counts:
                (count,) = db.execute(sql, params).fetchone()
                if count >= caps[name]:
                    return name
            db.execute(
                "INSERT INTO pending (key, record, stage, client_id, origin, wide_origin, expires_at)"
                " VALUES (?, ?, 'consent', ?, ?, ?, ?)",
                (key, json.dumps(record), client_id, origin, wide, expires_at),
            )
            return None

    async def get_pending(self, key: str, now: float) -> dict[str, Any] | None:
        row = self._one("SELECT record FROM pending WHERE key = ? AND stage = 'consent' AND expires_at > ?", (key, now))
        return None if row is None else dict(json.loads(row["record"]))

    async def approve_pending(self, key: str, state_hash: str, github_seconds: float, now: float) -> bool:
        cursor = self._run(
            "UPDATE pending SET stage = 'github', state_hash = ?, expires_at = MIN(? + ?, expires_at + ?)"
            " WHERE key = ? AND stage = 'consent' AND expires_at > ?",
            (state_hash, now, github_seconds, github_seconds, key, now),
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

    # Authorization codes
    async def save_code(self, code_hash: str, record: dict[str, Any], grant_id: str, expires_at: float) -> None:
        self._run(
            "INSERT INTO codes (code_hash, record, grant_id, expires_at) VALUES (?, ?, ?, ?)",
            (code_hash, json.dumps(record), grant_id, expires_at),
        )

    async def get_code(self, code_hash: str) -> tuple[dict[str, Any], bool] | None:
        row = self._one("SELECT record, used_at FROM codes WHERE code_hash = ?", (code_hash,))
        return None if row is None else (dict(json.loads(row["record"])), row["used_at"] is not None)

    async def redeem_code(self, code_hash: str, family: Family, tokens: list[tuple[str, TokenRow]], now: float) -> bool:
        with self._transaction() as db:
            used = db.execute(
                "UPDATE codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?"
                " AND grant_id IN (SELECT grant_id FROM grants WHERE dead = 0)",
                (now, code_hash, now),
            )
            if used.rowcount != 1:
                return False
            db.execute(*_insert("families", _family_values(family)))
            _insert_tokens(db, tokens)
            return True

    async def revoke_code_families(self, code_hash: str, now: float) -> list[Released]:
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE families SET revoked = 1 WHERE code_hash = ? AND revoked = 0 RETURNING grant_id", (code_hash,)
            ).fetchall()
            released = [_release_if_unneeded(db, grant_id, now) for grant_id in {r["grant_id"] for r in rows}]
            return [r for r in released if r is not None]

    # Grants
    async def upsert_grant(self, grant: Grant) -> tuple[str, str | None]:
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

    async def grants(self) -> list[Grant]:
        return [_grant(row) for row in self._run("SELECT * FROM grants WHERE dead = 0").fetchall()]

    async def lease_grant_refresh(self, grant_id: str, refresh_enc: str | None, now: float, until: float) -> bool:
        cursor = self._run(
            "UPDATE grants SET refresh_lease_until = ? WHERE grant_id = ? AND dead = 0"
            " AND refresh_enc IS ? AND refresh_lease_until <= ?",
            (until, grant_id, refresh_enc, now),
        )
        return cursor.rowcount == 1

    async def update_grant_tokens(
        self,
        grant_id: str,
        expected_refresh_enc: str | None,
        token_enc: str,
        refresh_enc: str | None,
        expires_at: float | None,
        refresh_expires_at: float | None,
    ) -> bool:
        cursor = self._run(
            "UPDATE grants SET token_enc = ?, refresh_enc = ?, expires_at = ?, refresh_expires_at = ?,"
            " refresh_lease_until = 0 WHERE grant_id = ? AND refresh_enc IS ?",
            (token_enc, refresh_enc, expires_at, refresh_expires_at, grant_id, expected_refresh_enc),
        )
        return cursor.rowcount == 1

    async def kill_grant(self, grant_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE grants SET dead = 1 WHERE grant_id = ?", (grant_id,))
            db.execute("UPDATE families SET revoked = 1 WHERE grant_id = ?", (grant_id,))

    async def connected(self, subject: str) -> list[tuple[Grant, list[Family]]]:
        grants = self._run("SELECT * FROM grants WHERE subject = ? AND dead = 0", (subject,)).fetchall()
        families = self._run(
            "SELECT f.* FROM families f JOIN grants g ON g.grant_id = f.grant_id"
            " WHERE g.subject = ? AND g.dead = 0 AND f.revoked = 0",
            (subject,),
        ).fetchall()
        return [(_grant(g), [_family(f) for f in families if f["grant_id"] == g["grant_id"]]) for g in grants]

    # Token families
    async def get_token(self, token_hash: str) -> TokenRecord | None:
        row = self._one(TOKEN_QUERY, (token_hash,))
        if row is None:
            return None
        family = _family(row)
        return TokenRecord(
            token=TokenRow(row["kind"], family.family_id, row["token_generation"], row["token_expires_at"]),
            family=family,
            grant=_grant(row, prefix="g_"),
        )

    async def add_tokens(self, tokens: list[tuple[str, TokenRow]]) -> None:
        with self._transaction() as db:
            _insert_tokens(db, tokens)

    async def rotate_family(
        self, family_id: str, from_generation: int, scopes: list[str], tokens: list[tuple[str, TokenRow]], now: float
    ) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE families SET generation = generation + 1, rotated_at = ?, scopes = ?"
                " WHERE family_id = ? AND generation = ? AND revoked = 0",
                (now, " ".join(scopes), family_id, from_generation),
            )
            if cursor.rowcount != 1:
                return False
            _insert_tokens(db, tokens)
            return True

    async def revoke_family(self, family_id: str, now: float) -> Released | None:
        with self._transaction() as db:
            row = db.execute(
                "UPDATE families SET revoked = 1 WHERE family_id = ? RETURNING grant_id", (family_id,)
            ).fetchone()
            return None if row is None else _release_if_unneeded(db, row["grant_id"], now)

    async def pin_login(self, login: str, github_id: int) -> int:
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO logins (login, github_id) VALUES (?, ?)", (login.lower(), github_id))
            (pinned,) = db.execute("SELECT github_id FROM logins WHERE login = ?", (login.lower(),)).fetchone()
            return int(pinned)

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
        with self._transaction() as db:
            orphans = db.execute(
                "SELECT grant_id FROM grants WHERE grant_id NOT IN (SELECT grant_id FROM families)"
                " AND grant_id NOT IN (SELECT grant_id FROM codes)"
            ).fetchall()
            released = [r for r in (_release_if_unneeded(db, o["grant_id"], now) for o in orphans) if r is not None]
        counts["grants"] = len(released)
        # Consents are a record, not a permission (cookies remember approvals): they go with their client.
        counts["consents"] = self._run(
            "DELETE FROM consents WHERE client_id NOT IN (SELECT client_id FROM clients)"
        ).rowcount
        return Swept(counts, released)

    async def close(self) -> None:
        self._db.close()


# Another process holding the write lock for longer than the busy timeout: busy, not broken.
raise_unavailable(
    SQLiteStorage,
    lambda exc: isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc),
    "the SQLite database is locked",
)


def _release_if_unneeded(db: sqlite3.Connection, grant_id: str, now: float) -> Released | None:
    """Inside a transaction: delete the grant unless a live family or an unexchanged code needs it."""
    row = db.execute(
        f"DELETE FROM grants WHERE grant_id = :grant_id AND NOT ({GRANT_NEEDED}) RETURNING *",  # noqa: S608
        {"grant_id": grant_id, "now": now},
    ).fetchone()
    if row is None:
        return None
    grant = _grant(row)
    (others,) = db.execute("SELECT COUNT(*) FROM grants WHERE subject = ?", (grant.subject,)).fetchone()
    return Released(grant, last_of_subject=others == 0)


def _insert_tokens(db: sqlite3.Connection, tokens: list[tuple[str, TokenRow]]) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO tokens (token_hash, kind, family_id, generation, expires_at) VALUES (?, ?, ?, ?, ?)",
        [(h, row.kind, row.family_id, row.generation, row.expires_at) for h, row in tokens],
    )


def _insert(table: str, values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """An INSERT of a dataclass's fields: column names come from our own code, values are bound."""
    columns = ", ".join(values)
    placeholders = ", ".join("?" * len(values))
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", tuple(values.values())  # noqa: S608


def _family_values(family: Family) -> dict[str, Any]:
    return asdict(family) | {"scopes": " ".join(family.scopes)}


def _grant(row: sqlite3.Row, prefix: str = "") -> Grant:
    values = {f.name: row[prefix + f.name] for f in fields(Grant)}
    return Grant(**values | {"dead": bool(values["dead"])})


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
        signed_in_at=row["signed_in_at"],
    )
