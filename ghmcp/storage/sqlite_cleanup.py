"""What the SQLite store deletes once nothing needs it: a grant no live family or unexchanged code
refers to, and the rows `sweep` removes so that the file does not grow without bound."""

from __future__ import annotations

import sqlite3

from ghmcp.storage import Released
from ghmcp.storage.sqlite_rows import grant_from

# A grant is still needed while a live family or an unexchanged, unexpired code refers to it.
GRANT_NEEDED = (
    "EXISTS (SELECT 1 FROM families f WHERE f.grant_id = :grant_id AND f.revoked = 0)"
    " OR EXISTS (SELECT 1 FROM codes c WHERE c.grant_id = :grant_id AND c.used_at IS NULL AND c.expires_at > :now)"
)

# Consents are a record, not a permission (cookies remember approvals): they go with their client.
ORPHAN_CONSENTS = "DELETE FROM consents WHERE client_id NOT IN (SELECT client_id FROM clients)"


def expired(
    now: float, unused_client_seconds: int, idle_client_seconds: int
) -> dict[str, tuple[str, tuple[float, ...]]]:
    """Per table, the DELETE of rows that can no longer be used, in the order they must run."""
    return {
        "pending": ("DELETE FROM pending WHERE expires_at <= ?", (now,)),
        "used_once": ("DELETE FROM used_once WHERE expires_at <= ?", (now,)),
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


def release_if_unneeded(db: sqlite3.Connection, grant_id: str, now: float) -> Released | None:
    """Inside a transaction: delete the grant unless a live family or an unexchanged code needs it."""
    row = db.execute(
        f"DELETE FROM grants WHERE grant_id = :grant_id AND NOT ({GRANT_NEEDED}) RETURNING *",  # noqa: S608
        {"grant_id": grant_id, "now": now},
    ).fetchone()
    if row is None:
        return None
    grant = grant_from(row)
    (others,) = db.execute("SELECT COUNT(*) FROM grants WHERE subject = ?", (grant.subject,)).fetchone()
    return Released(grant, last_of_subject=others == 0)


def release_orphans(db: sqlite3.Connection, now: float) -> list[Released]:
    """Inside a transaction: the grants left without any family or code, released."""
    orphans = db.execute(
        "SELECT grant_id FROM grants WHERE grant_id NOT IN (SELECT grant_id FROM families)"
        " AND grant_id NOT IN (SELECT grant_id FROM codes)"
    ).fetchall()
    return [r for r in (release_if_unneeded(db, o["grant_id"], now) for o in orphans) if r is not None]
