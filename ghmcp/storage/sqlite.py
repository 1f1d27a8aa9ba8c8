"""The embedded default store: one SQLite file, safe to share between processes on one host.

Every single-use or compare-and-set step is one conditional statement or one `BEGIN IMMEDIATE`
transaction, so two processes sharing the file cannot both win it. Queries are sub-millisecond,
so they run on the event loop.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ghmcp.storage import Family, Grant, PendingLimits, Released, Swept, TokenRecord, TokenRow, raise_unavailable
from ghmcp.storage.sqlite_cleanup import ORPHAN_CONSENTS, expired, release_if_unneeded, release_orphans
from ghmcp.storage.sqlite_file import SQLiteFile
from ghmcp.storage.sqlite_rows import (
    TOKEN_QUERY,
    family_from,
    family_values,
    grant_from,
    insert,
    insert_tokens,
    token_record_from,
)


def sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) and len(url) > len(prefix) else None


class SQLiteStorage(SQLiteFile):
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

    async def approve_pending(
        self, key: str, state_hash: str, github_seconds: float, now: float, record: dict[str, Any] | None = None
    ) -> bool:
        chosen = None if record is None else json.dumps(record)
        cursor = self._run(
            "UPDATE pending SET stage = 'github', state_hash = ?, expires_at = MIN(? + ?, expires_at + ?),"
            " record = COALESCE(?, record) WHERE key = ? AND stage = 'consent' AND expires_at > ?",
            (state_hash, now, github_seconds, github_seconds, chosen, key, now),
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
            db.execute(*insert("families", family_values(family)))
            insert_tokens(db, tokens)
            return True

    async def revoke_code_families(self, code_hash: str, now: float) -> list[Released]:
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE families SET revoked = 1 WHERE code_hash = ? AND revoked = 0 RETURNING grant_id", (code_hash,)
            ).fetchall()
            released = [release_if_unneeded(db, grant_id, now) for grant_id in {r["grant_id"] for r in rows}]
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
            db.execute(*insert("grants", values))
            return str(values["grant_id"]), None if old is None else str(old["token_enc"])

    async def get_grant(self, grant_id: str) -> Grant | None:
        row = self._one("SELECT * FROM grants WHERE grant_id = ?", (grant_id,))
        return None if row is None else grant_from(row)

    async def grants(self) -> list[Grant]:
        return [grant_from(row) for row in self._run("SELECT * FROM grants WHERE dead = 0").fetchall()]

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

    async def replace_grant_repositories(self, grant_id: str, expected: str, repositories: str) -> bool:
        cursor = self._run(
            "UPDATE grants SET repositories = ? WHERE grant_id = ? AND dead = 0 AND repositories = ?",
            (repositories, grant_id, expected),
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
        return [(grant_from(g), [family_from(f) for f in families if f["grant_id"] == g["grant_id"]]) for g in grants]

    async def narrow_grant(self, grant_id: str, subject: str, scopes: str) -> bool:
        cursor = self._run(
            "UPDATE grants SET scopes = ? WHERE grant_id = ? AND subject = ? AND dead = 0", (scopes, grant_id, subject)
        )
        return cursor.rowcount == 1

    # Token families
    async def get_token(self, token_hash: str) -> TokenRecord | None:
        row = self._one(TOKEN_QUERY, (token_hash,))
        return None if row is None else token_record_from(row)

    async def add_tokens(self, tokens: list[tuple[str, TokenRow]]) -> None:
        with self._transaction() as db:
            insert_tokens(db, tokens)

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
            insert_tokens(db, tokens)
            return True

    async def revoke_family(self, family_id: str, now: float) -> Released | None:
        with self._transaction() as db:
            row = db.execute(
                "UPDATE families SET revoked = 1 WHERE family_id = ? RETURNING grant_id", (family_id,)
            ).fetchone()
            return None if row is None else release_if_unneeded(db, row["grant_id"], now)

    async def use_once(self, key_hash: str, expires_at: float) -> bool:
        cursor = self._run(
            "INSERT OR IGNORE INTO used_once (key_hash, expires_at) VALUES (?, ?)", (key_hash, expires_at)
        )
        return cursor.rowcount == 1

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
        statements = expired(now, unused_client_seconds, idle_client_seconds)
        counts = {table: self._run(sql, params).rowcount for table, (sql, params) in statements.items()}
        with self._transaction() as db:
            released = release_orphans(db, now)
        counts["grants"] = len(released)
        counts["consents"] = self._run(ORPHAN_CONSENTS).rowcount
        return Swept(counts, released)


# Another process holding the write lock for longer than the busy timeout: busy, not broken.
raise_unavailable(
    SQLiteStorage,
    lambda exc: isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc),
    "the SQLite database is locked",
)
