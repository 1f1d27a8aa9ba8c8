"""The stand-in's state and the knobs tests turn (sign-in, clock, expiry, failures, faults, counters).

The app may run in a uvicorn thread while a test thread mutates the state, so every
read-modify-write happens under ``_lock``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import TypeVar

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from ghmcp.standin.faults import Fault, act_out
from ghmcp.standin.model import (
    ACCESS_TOKEN_TTL,
    MAX_TOKENS_PER_GRANT,
    RATE_LIMIT,
    REFRESH_TOKEN_TTL,
    TokenPair,
    User,
    _AccessToken,
    _Code,
    _RefreshToken,
    default_repos,
    parse_scopes,
    random_token,
)
from ghmcp.standin.shapes import repo_id

# What the tests read back (requests, token requests, revocations...) is kept up to this many
# entries each, so a demo server that runs for days stays small.
MAX_RECORDS = 10_000
T = TypeVar("T")


def record(log: list[T], item: T) -> None:
    """Append to one of the test-facing records; the caller holds the lock."""
    log.append(item)
    del log[:-MAX_RECORDS]


class _RequestLogger:
    """ASGI wrapper recording (method, path) of every request, routed or not."""

    def __init__(self, app: ASGIApp, fake: StandInState) -> None:
        self._app = app
        self._fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with self._fake._lock:
                record(self._fake.requests, (str(scope["method"]), str(scope["path"])))
            if self._fake.latency_seconds:
                await asyncio.sleep(self._fake.latency_seconds)  # a distant GitHub, for benchmarks
            fault = self._fake.fault
            if fault is not None and fault.hit(str(scope["path"])):
                if await act_out(fault, lambda: self._fake.fault is fault, scope, receive, send):
                    return
        await self._app(scope, receive, send)


class StandInState:
    """State of one stand-in github.com with a single registered OAuth/GitHub App.

    ``expiring_tokens=False`` behaves like an OAuth App (``gho_`` tokens, scopes,
    no expiry); ``True`` like a GitHub App with expiring user tokens (``ghu_`` +
    rotating ``ghr_`` refresh tokens, scopes ignored). ``callback_url`` is the
    registered callback; ``None`` accepts any ``redirect_uri``.
    """

    def __init__(
        self,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",  # noqa: S107 (the stand-in app's own, not a secret)
        *,
        expiring_tokens: bool = False,
        callback_url: str | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._lock = threading.Lock()
        self.expiring_tokens = expiring_tokens
        self.callback_url = callback_url
        self.users: dict[str, User] = {}
        self.current_login: str | None = None
        self.deny_next = False
        self.refuse_refresh = False
        self.fail_revocations = False
        self.latency_seconds = 0.0
        self.fault: Fault | None = None  # see `fail`
        self.requests: list[tuple[str, str]] = []
        self.not_modified: list[tuple[str, str]] = []  # (method, path) answered 304
        self.secondary_limit_next = 0  # > 0: the next REST request gets a secondary limit with this retry-after
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.revocations: list[str] = []
        self.grant_revocations: list[str] = []  # logins whose whole authorization was deleted
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._rate: dict[str, tuple[int, int]] = {}
        self._clock_offset = 0.0
        self.app: ASGIApp = _RequestLogger(self._build_app(), self)

    # ----------------------------------------------------------------- state

    def reset(self) -> None:
        """Forget users, tokens, flags and logs (keeps client credentials and mode)."""
        with self._lock:
            self.users.clear()
            self.current_login = None
            self.deny_next = self.refuse_refresh = self.fail_revocations = False
            self.fault = None
            self.requests.clear()
            self.not_modified.clear()
            self.secondary_limit_next = 0
            self.authorize_requests.clear()
            self.token_requests.clear()
            self.revocations.clear()
            self.grant_revocations.clear()
            self._codes.clear()
            self._access.clear()
            self._refresh.clear()
            self._rate.clear()
            self._clock_offset = 0.0

    def add_user(
        self,
        login: str,
        *,
        id: int,  # mirrors GitHub's field name
        name: str | None = None,
        email: str | None = None,
        orgs: Sequence[str] = (),
    ) -> User:
        """Register an account with deterministic repos; logins are case-insensitive."""
        user = User(
            login=login,
            id=id,
            name=name,
            email=email,
            orgs=list(orgs),
            repos=default_repos(login),
        )
        with self._lock:
            self.users[login.lower()] = user
        return user

    def fail(self, fault: Fault | None) -> None:
        """Make GitHub slow, 502 or drop connections from now on (faults.py); `None` heals it."""
        self.fault = fault

    def rename_repo(self, login: str, old: str, new: str) -> None:
        """Rename a repository; like GitHub's, its id stays, so a new one created under the old name has another."""
        with self._lock:
            user = self.users[login.lower()]
            repo = next(r for r in user.repos if r.name.lower() == old.lower())
            repo.id = repo_id(user, repo)
            repo.name = new

    def sign_in(self, login: str | None) -> None:
        """Set who the fake browser session belongs to (``None`` signs out)."""
        self.current_login = login

    def now(self) -> float:
        """The fake's clock: wall time plus whatever ``advance_clock`` added."""
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move time forward so codes and tokens can expire naturally."""
        with self._lock:
            self._clock_offset += seconds

    def issue_token(self, login: str, scopes: Sequence[str] = ()) -> TokenPair:
        """Mint a token without the browser flow, as if authorized earlier."""
        with self._lock:
            if self._user(login) is None:
                raise KeyError(f"no such fake user: {login}")
            return self._mint(login, parse_scopes(" ".join(scopes)))

    def expire_token(self, token: str) -> None:
        """Make one access token stale (/user answers 401); its refresh token lives."""
        with self._lock:
            if token in self._access:
                self._access[token].expires_at = self.now() - 1

    def expire_all_access_tokens(self) -> None:
        """Make every access token stale, as after eight hours in expiring mode."""
        with self._lock:
            for tok in self._access.values():
                tok.expires_at = self.now() - 1

    def revoke_token(self, token: str) -> None:
        """Kill an access token and its refresh token, as revoking at GitHub would."""
        with self._lock:
            self._kill(token)

    def revoke_authorization(self, login: str) -> None:
        """Kill every token of a user, as if they revoked the app in their settings."""
        with self._lock:
            for tok in list(self._access.values()):
                if tok.login.lower() == login.lower():
                    self._kill(tok.token)

    def is_live(self, token: str) -> bool:
        """Whether ``/user`` would accept this access token right now."""
        with self._lock:
            return self._live_access(token) is not None

    def live_tokens_for(self, login: str) -> list[str]:
        """Access tokens of a user that the API would still accept, oldest first."""
        with self._lock:
            toks = [t for t in self._access.values() if t.login.lower() == login.lower()]
            return [t.token for t in sorted(toks, key=lambda t: t.created_at) if self._live_access(t.token)]

    def live_refresh_tokens_for(self, login: str) -> list[str]:
        """Refresh tokens of a user that could still be redeemed."""
        with self._lock:
            now = self.now()
            return [
                r.token
                for r in self._refresh.values()
                if r.login.lower() == login.lower() and not r.used and r.expires_at > now
            ]

    def issued(self) -> list[str]:
        """Every code, access token and refresh token this GitHub ever minted (tests check none leaks)."""
        with self._lock:
            return [*self._codes, *self._access, *self._refresh]

    def count(self, path: str, method: str | None = None) -> int:
        """How many requests hit ``path`` (optionally only with ``method``)."""
        with self._lock:
            return sum(1 for m, p in self.requests if p == path and (method is None or m == method))

    def narrow_scopes(self, login: str, scopes: Sequence[str]) -> None:
        """Give every live token of a user only ``scopes``, as if the grant had been edited on GitHub."""
        with self._lock:
            for tok in self._access.values():
                if tok.login.lower() == login.lower():
                    tok.scopes = parse_scopes(" ".join(scopes))

    def count_304(self, path: str) -> int:
        """How many requests to ``path`` were answered 304 Not Modified."""
        with self._lock:
            return sum(1 for _, p in self.not_modified if p == path)

    def exhaust_rate_limit(self, login: str, reset_in: float = 600, remaining: int = 0) -> None:
        """Leave a user ``remaining`` units of the primary rate limit until ``reset_in`` seconds from now."""
        with self._lock:
            self._rate[login.lower()] = (remaining, int(self.now() + reset_in))

    def rate_used(self, login: str) -> int:
        """Rate-limit units the user has spent in the current window (a 304 spends none)."""
        with self._lock:
            remaining, _ = self._rate.get(login.lower(), (RATE_LIMIT, 0))
            return RATE_LIMIT - remaining

    # ------------------------------------------------------------ internals

    def _user(self, login: str) -> User | None:
        return self.users.get(login.lower())

    def _live_access(self, token: str) -> _AccessToken | None:
        tok = self._access.get(token)
        if tok is None or tok.revoked or self._user(tok.login) is None:
            return None
        if tok.expires_at is not None and tok.expires_at <= self.now():
            return None
        return tok

    def _kill(self, token: str) -> None:
        tok = self._access.get(token)
        if tok is None:
            return
        tok.revoked = True
        if tok.refresh_token and tok.refresh_token in self._refresh:
            self._refresh[tok.refresh_token].used = True

    def _mint(self, login: str, scopes: tuple[str, ...]) -> TokenPair:
        """Create a token (caller holds the lock) and enforce the ten-per-grant cap."""
        now = self.now()
        if self.expiring_tokens:
            access = random_token("ghu_", 40)
            refresh: str | None = random_token("ghr_", 76)
            expires_at: float | None = now + ACCESS_TOKEN_TTL
        else:
            access, refresh, expires_at = random_token("gho_", 40), None, None
        self._access[access] = _AccessToken(access, login, scopes, now, expires_at, refresh)
        if refresh is not None:
            self._refresh[refresh] = _RefreshToken(refresh, login, scopes, now + REFRESH_TOKEN_TTL, access)
        same = [
            t
            for t in self._access.values()
            if t.login.lower() == login.lower() and t.scopes == scopes and not t.revoked
        ]
        for old in sorted(same, key=lambda t: t.created_at)[:-MAX_TOKENS_PER_GRANT]:
            self._kill(old.token)
        return TokenPair(access, refresh, scopes)

    def _build_app(self) -> Starlette:
        raise NotImplementedError  # GitHubStandIn (oauth.py) puts the routes together
