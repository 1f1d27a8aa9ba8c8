"""The SQLite store's tables and indexes, and how a file written by an older version is brought up to them.

Kept apart from the statements that use them, so that a new column and its migration are read together.
"""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY, info_json TEXT NOT NULL,
    created_at REAL NOT NULL, last_used_at REAL);
CREATE TABLE IF NOT EXISTS pending (
    key TEXT PRIMARY KEY, record TEXT NOT NULL, stage TEXT NOT NULL, client_id TEXT NOT NULL,
    origin TEXT NOT NULL, state_hash TEXT UNIQUE, expires_at REAL NOT NULL,
    wide_origin TEXT NOT NULL DEFAULT '');  -- last: where migrate's ALTER TABLE puts it in older files
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
    repositories TEXT NOT NULL DEFAULT '',  -- these two last: where migrate's ALTER TABLE puts them in older files
    scopes TEXT,
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
CREATE TABLE IF NOT EXISTS used_once (key_hash TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID;
"""


def migrate(db: sqlite3.Connection) -> None:
    """Inside one transaction: bring a file written by an older version up to SCHEMA, whose CREATE TABLE
    IF NOT EXISTS leaves an existing table as it is. One transaction, so that two processes opening the
    file at once cannot both add the column."""
    if "wide_origin" not in {row["name"] for row in db.execute("PRAGMA table_info(pending)")}:
        # Its rows (minutes old at most) count for no site; they expire before long.
        db.execute("ALTER TABLE pending ADD COLUMN wide_origin TEXT NOT NULL DEFAULT ''")
    if "repositories" not in {row["name"] for row in db.execute("PRAGMA table_info(grants)")}:
        # Grants from before per-grant repositories reach every repository, as they did.
        db.execute("ALTER TABLE grants ADD COLUMN repositories TEXT NOT NULL DEFAULT ''")
    db.execute("CREATE INDEX IF NOT EXISTS pending_by_wide_origin ON pending (wide_origin, expires_at)")
    if "scopes" not in {row["name"] for row in db.execute("PRAGMA table_info(grants)")}:
        # NULL: no bound beyond each family's own scopes, as before grants carried scopes.
        db.execute("ALTER TABLE grants ADD COLUMN scopes TEXT")
