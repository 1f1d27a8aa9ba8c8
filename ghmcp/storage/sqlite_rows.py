"""How the SQLite store's records become rows and its rows records: one place that knows the
columns stand for the dataclasses' fields, with booleans as 0/1 and scopes space-separated."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, fields
from typing import Any

from ghmcp.storage import Family, Grant, TokenRecord, TokenRow

# A token with its family and grant in one join; the grant's columns (names from our own dataclass)
# are prefixed so that none clashes with the family's.
TOKEN_QUERY = (
    "SELECT t.kind, t.generation AS token_generation, t.expires_at AS token_expires_at, f.*, "  # noqa: S608
    + ", ".join(f"g.{f.name} AS g_{f.name}" for f in fields(Grant))
    + " FROM tokens t JOIN families f ON f.family_id = t.family_id JOIN grants g ON g.grant_id = f.grant_id"
    " WHERE t.token_hash = ?"
)


def insert(table: str, values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """An INSERT of a dataclass's fields: column names come from our own code, values are bound."""
    columns = ", ".join(values)
    placeholders = ", ".join("?" * len(values))
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", tuple(values.values())  # noqa: S608


def insert_tokens(db: sqlite3.Connection, tokens: list[tuple[str, TokenRow]]) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO tokens (token_hash, kind, family_id, generation, expires_at) VALUES (?, ?, ?, ?, ?)",
        [(h, row.kind, row.family_id, row.generation, row.expires_at) for h, row in tokens],
    )


def family_values(family: Family) -> dict[str, Any]:
    return asdict(family) | {"scopes": " ".join(family.scopes)}


def grant_from(row: sqlite3.Row, prefix: str = "") -> Grant:
    values = {f.name: row[prefix + f.name] for f in fields(Grant)}
    return Grant(**values | {"dead": bool(values["dead"])})


def family_from(row: sqlite3.Row) -> Family:
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


def token_record_from(row: sqlite3.Row) -> TokenRecord:
    """A row of TOKEN_QUERY."""
    family = family_from(row)
    return TokenRecord(
        token=TokenRow(row["kind"], family.family_id, row["token_generation"], row["token_expires_at"]),
        family=family,
        grant=grant_from(row, prefix="g_"),
    )
