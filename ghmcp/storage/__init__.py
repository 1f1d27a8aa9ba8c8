"""Persistence: the `Storage` interface the provider talks to, and how a URL picks its backend.

Bearer secrets never reach a store in the clear: callers pass SHA-256 hashes of MCP tokens,
codes and states, and GitHub tokens and client secrets already encrypted. Every single-use or
compare-and-set step is one method here, atomic in each backend, so that two processes (or
replicas) sharing a store can never both win it.

Backends: `sqlite.py` (embedded default; its file and connection in `sqlite_file.py`, tables and
migrations in `sqlite_schema.py`, row conversions in `sqlite_rows.py`, what it deletes in
`sqlite_cleanup.py`) and `redis_store.py` (shared by several replicas; its scripts in `lua.py`, record
encoding in `redis_records.py`). To add one, implement `Storage` and pick it in `open_storage`.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
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
    admitted_via: str = ""  # "everyone", "user" or "org:<name>": what admitted the user (re-checked later)
    refresh_lease_until: float = 0.0  # a process refreshing the GitHub token holds this lease
    repositories: str = ""  # the user's choice (ghmcp/auth/repositories.py encode): "" for every repository
    # The MCP scopes every token of this grant is bounded by (space-separated): those the user kept at
    # the latest consent, narrowed on /account. None: a grant stored before grants carried scopes.
    scopes: str | None = None


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
    signed_in_at: float = 0.0


@dataclass
class TokenRow:
    kind: str  # "access" or "refresh"
    family_id: str
    generation: int
    expires_at: float


@dataclass
class TokenRecord:
    """A token with what decides whether it is still good."""

    token: TokenRow
    family: Family
    grant: Grant


@dataclass
class Released:
    """A grant deleted because no family or unexchanged code needs it any more.

    `last_of_subject`: the user holds no other grant here, so the whole GitHub authorization can go.
    """

    grant: Grant
    last_of_subject: bool


@dataclass
class Swept:
    """What a sweep removed: row counts per kind, and the grants no family or code holds any more."""

    counts: dict[str, int]
    released: list[Released]


# The cap per wide origin, as a multiple of the cap per origin: room for a site's several subnets.
WIDE_ORIGIN_FACTOR = 5


@dataclass(frozen=True)
class PendingLimits:
    """Caps on sign-ins under way: per client, per client address (`origin`), per site (`wide_origin`,
    an IPv6 /48) and for the whole server. The site cap exists because one /48 holds 65,536 /64s, each
    an origin of its own: without it, one site could fill the whole server's cap."""

    per_client: int
    per_origin: int
    total: int
    per_wide_origin: int = 0  # 0: WIDE_ORIGIN_FACTOR times per_origin

    def __post_init__(self) -> None:
        if self.per_wide_origin <= 0:
            object.__setattr__(self, "per_wide_origin", WIDE_ORIGIN_FACTOR * self.per_origin)


class StoreUnavailable(Exception):
    """The store cannot be reached right now (Redis down, network lost, SQLite locked by another process
    past its busy timeout): answer 503 and try again later."""


# The last StoreUnavailable of this request, for callers whose library swallows exceptions (the SDK's /authorize).
store_failure: ContextVar[StoreUnavailable | None] = ContextVar("store_failure", default=None)


def raise_unavailable(store: type, unreachable: Callable[[Exception], bool], what: str) -> None:
    """Make every public async method of a store class raise StoreUnavailable for the errors that mean
    "cannot reach the store right now", and record it in `store_failure`."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                failure = StoreUnavailable(f"{what} ({type(exc).__name__})")
                store_failure.set(failure)
                raise failure from exc

        return call

    for name, method in list(vars(store).items()):
        if inspect.iscoroutinefunction(method) and not name.startswith("_") and name != "close":
            setattr(store, name, wrap(method))


class Storage(Protocol):
    async def ping(self) -> None:
        """Raises StoreUnavailable unless the store answers."""
        ...

    # Key check value: a fingerprint of the secret key that wrote this store (see crypto.Keyring).
    async def key_check(self) -> str | None: ...
    async def set_key_check(self, value: str) -> None: ...

    # Clients (RFC 7591), info as JSON with the secret already encrypted.
    async def save_client(self, client_id: str, info_json: str, now: float) -> None: ...
    async def get_client(self, client_id: str) -> str | None: ...
    async def touch_client(self, client_id: str, now: float) -> None: ...

    # Pending sign-ins: a "consent" stage until approved, then a "github" stage until the callback.
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
        """Store it unless a cap is reached; returns None, or which cap ("client", "origin", "wide_origin",
        "total"). Without `wide_origin` the origin is its own site (an IPv4 address)."""
        ...

    async def get_pending(self, key: str, now: float) -> dict[str, Any] | None: ...
    async def approve_pending(
        self, key: str, state_hash: str, github_seconds: float, now: float, record: dict[str, Any] | None = None
    ) -> bool:
        """Consent stage -> GitHub stage, expiring `github_seconds` from now, never past its own
        consent deadline plus `github_seconds`; `record` (what the consent chose) replaces the stored one."""
        ...

    async def take_pending(self, key: str, now: float) -> dict[str, Any] | None: ...
    async def take_pending_by_state(self, state_hash: str, now: float) -> dict[str, Any] | None: ...

    # Authorization codes: kept after use until they expire, so that a replay is recognised.
    async def save_code(self, code_hash: str, record: dict[str, Any], grant_id: str, expires_at: float) -> None: ...
    async def get_code(self, code_hash: str) -> tuple[dict[str, Any], bool] | None: ...
    async def redeem_code(self, code_hash: str, family: Family, tokens: list[tuple[str, TokenRow]], now: float) -> bool:
        """Mark the code used, create its family and first tokens: all or nothing, once.

        False if the code was used already, expired, or its grant is gone or dead."""
        ...

    async def revoke_code_families(self, code_hash: str, now: float) -> list[Released]:
        """A replayed code: revoke every family it minted (RFC 6749 §4.1.2), in one step."""
        ...

    # Grants
    async def upsert_grant(self, grant: Grant) -> tuple[str, str | None]:
        """Store the user's GitHub token for this client: (grant id, encrypted token it replaced)."""
        ...

    async def get_grant(self, grant_id: str) -> Grant | None: ...
    async def grants(self) -> list[Grant]: ...
    async def lease_grant_refresh(self, grant_id: str, refresh_enc: str | None, now: float, until: float) -> bool:
        """Take the right to refresh this grant's GitHub token (one process at a time, across processes)."""
        ...

    async def update_grant_tokens(
        self,
        grant_id: str,
        expected_refresh_enc: str | None,
        token_enc: str,
        refresh_enc: str | None,
        expires_at: float | None,
        refresh_expires_at: float | None,
    ) -> bool:
        """Compare-and-swap on the stored refresh token; releases the lease."""
        ...

    async def replace_grant_repositories(self, grant_id: str, expected: str, repositories: str) -> bool:
        """Replace a live grant's repositories, only if they are still `expected` (compare-and-set: two
        changes at once cannot undo each other). The caller decides the new choice (only ever narrower
        than what a client could use: web/repositories.py, web/account.py)."""
        ...

    async def kill_grant(self, grant_id: str) -> None:
        """The grant is dead: every MCP token on it stops working at once."""
        ...

    async def connected(self, subject: str) -> list[tuple[Grant, list[Family]]]:
        """A user's live grants, each with its live families (the account page's list)."""
        ...

    async def narrow_grant(self, grant_id: str, subject: str, scopes: str) -> bool:
        """Bound every token of `subject`'s live grant to `scopes` (the caller passes a narrower set)."""
        ...

    # Token families
    async def get_token(self, token_hash: str) -> TokenRecord | None: ...
    async def add_tokens(self, tokens: list[tuple[str, TokenRow]]) -> None:
        """Idempotent: a token already stored is left as it is."""
        ...

    async def rotate_family(
        self, family_id: str, from_generation: int, scopes: list[str], tokens: list[tuple[str, TokenRow]], now: float
    ) -> bool:
        """Single-use refresh: move to the next generation with its tokens, unless another rotation won."""
        ...

    async def revoke_family(self, family_id: str, now: float) -> Released | None:
        """Revoke one family; its grant goes too when no live family or unexchanged code needs it."""
        ...

    async def use_once(self, key_hash: str, expires_at: float) -> bool:
        """True for the first use of `key_hash`, False for every later one (kept until `expires_at`)."""
        ...

    # Admission: a login stays bound to the GitHub account first admitted with it.
    async def pin_login(self, login: str, github_id: int) -> int:
        """The account id pinned for `login` (this one when it is new)."""
        ...

    async def record_consent(
        self, subject: str, client_id: str, redirect_uri: str, scopes: str, now: float
    ) -> None: ...
    async def sweep(self, now: float, unused_client_seconds: int, idle_client_seconds: int) -> Swept: ...
    async def close(self) -> None: ...


def new_id() -> str:
    return uuid.uuid4().hex


class StorageURLError(ValueError):
    """MCP_STORAGE_URL names no store this server can open."""


def open_storage(url: str, *, unused_client_seconds: int, idle_client_seconds: int, redis_ca_file: str = "") -> Storage:
    """The store named by `url`. The client lifetimes are for stores that expire clients by themselves
    (Redis TTLs) rather than in `sweep`; the CA file verifies a `rediss://` server."""
    from ghmcp.storage.sqlite import SQLiteStorage, sqlite_path

    if url.startswith(("redis://", "rediss://")):
        from ghmcp.storage.redis_store import RedisStorage

        try:
            return RedisStorage(
                url,
                unused_client_seconds=unused_client_seconds,
                idle_client_seconds=idle_client_seconds,
                ca_file=redis_ca_file,
            )
        except ValueError:  # the message could quote the URL, and with it a password
            raise StorageURLError("MCP_STORAGE_URL is not a valid Redis URL: redis://HOST:PORT/DB.") from None
    path = sqlite_path(url)
    if path is None:
        raise StorageURLError(
            "MCP_STORAGE_URL is not supported: use sqlite:///path/to/file.sqlite3, redis://HOST:PORT/DB"
            " or rediss://:PASSWORD@HOST:PORT/DB."
        )
    return SQLiteStorage(path)
