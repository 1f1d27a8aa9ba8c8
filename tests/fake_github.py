"""A local fake of GitHub's OAuth web flow and the REST endpoints the server uses.

Tests point both MCP_GITHUB_URL and MCP_GITHUB_API_URL at one base URL, so the
OAuth pages (``/login/oauth/...``) and the REST API (``/user`` ...) share a
root, like a GitHub Enterprise Server whose ``/api/v3`` is mounted at ``/``.

The behaviour follows GitHub's documentation rather than convenience: token
endpoint failures are HTTP 200 with an ``error`` field, codes are single use
and expire after ten minutes, refresh tokens rotate, and REST errors carry
``message``/``documentation_url``/``status``. Where GitHub's docs are silent
the choice is written next to the code.

The app runs in a uvicorn thread while the test thread mutates the fake, so
every read-modify-write of shared state happens under ``FakeGitHub._lock``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import html
import json
import re
import secrets
import socket
import string
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

DOCS = "https://docs.github.com"
_OAUTH_DOCS = f"{DOCS}/apps/oauth-apps/maintaining-oauth-apps"
TOKEN_ERRORS_URI = f"{_OAUTH_DOCS}/troubleshooting-oauth-app-access-token-request-errors"
AUTHORIZE_ERRORS_URI = f"{_OAUTH_DOCS}/troubleshooting-authorization-request-errors"
REFRESH_DOCS_URI = f"{DOCS}/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens"
REST_DOCS_URI = f"{DOCS}/rest"

CODE_TTL = 600  # "codes expire after 10 minutes"
ACCESS_TOKEN_TTL = 28800  # GitHub App user tokens: 8 hours
REFRESH_TOKEN_TTL = 15897600  # GitHub App refresh tokens: 6 months
RATE_LIMIT = 5000
RATE_WINDOW = 3600
# GitHub keeps at most ten tokens per user/application/scope combination and
# revokes the oldest when an eleventh is created.
MAX_TOKENS_PER_GRANT = 10
# Scopes that let a token read private org membership (admin:org > write:org >
# read:org; the classic `user` scope also grants it, per GitHub's 403 text).
ORG_READ_SCOPES = frozenset({"read:org", "write:org", "admin:org", "user"})
REDIRECT_MISMATCH = "The redirect_uri MUST match the registered callback URL for this application."
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


@dataclass
class FakeRepo:
    """A repository as listed by ``GET /user/repos``."""

    name: str
    private: bool = False
    description: str | None = None
    stargazers_count: int = 0
    updated_at: str = "2024-01-01T00:00:00Z"


@dataclass
class FakeUser:
    """A GitHub account; tests may edit fields after ``add_user``."""

    login: str
    id: int
    name: str | None = None
    email: str | None = None
    orgs: list[str] = field(default_factory=list)
    company: str | None = None
    blog: str = ""
    location: str | None = None
    bio: str | None = None
    followers: int = 0
    following: int = 0
    created_at: str = "2020-01-01T00:00:00Z"
    updated_at: str = "2024-01-01T00:00:00Z"
    repos: list[FakeRepo] = field(default_factory=list)
    starred: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class TokenPair:
    """What a successful token grant produced (refresh_token only when expiring)."""

    access_token: str
    refresh_token: str | None
    scopes: tuple[str, ...]


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    login: str
    code_challenge: str | None
    expires_at: float
    used: bool = False


@dataclass
class _AccessToken:
    token: str
    login: str
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float | None
    refresh_token: str | None
    revoked: bool = False


@dataclass
class _RefreshToken:
    token: str
    login: str
    scopes: tuple[str, ...]
    expires_at: float
    access_token: str
    used: bool = False


def default_repos(login: str) -> list[FakeRepo]:
    """Deterministic repos so listing and pagination tests have fixed answers."""
    return [
        FakeRepo(
            "hello-world",
            description=f"{login}'s first repo",
            stargazers_count=3,
            updated_at="2024-03-01T10:00:00Z",
        ),
        FakeRepo(
            "dotfiles",
            description="Configuration files",
            stargazers_count=1,
            updated_at="2024-02-01T10:00:00Z",
        ),
        FakeRepo(
            "notes",
            private=True,
            description="Private notes",
            updated_at="2024-04-01T10:00:00Z",
        ),
        FakeRepo(
            "website",
            description="Personal site",
            stargazers_count=7,
            updated_at="2024-01-15T10:00:00Z",
        ),
        FakeRepo(
            "secret-plans",
            private=True,
            description=None,
            updated_at="2024-05-01T10:00:00Z",
        ),
    ]


def parse_scopes(raw: str) -> tuple[str, ...]:
    """GitHub takes space-separated scopes (commas tolerated), reports them sorted."""
    return tuple(sorted({s for s in re.split(r"[\s,]+", raw) if s}))


def pkce_challenge(verifier: str) -> str:
    """The S256 challenge for a verifier (RFC 7636), for tests building flows."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _random_token(prefix: str, length: int) -> str:
    body = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length - len(prefix)))
    return prefix + body


def _node_id(kind: str, key: str) -> str:
    return kind + "_" + base64.b64encode(key.encode()).decode().rstrip("=")


def _with_query(url: str, params: Mapping[str, str | None]) -> str:
    """Append params to a URL that may already carry a query string."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend((k, v) for k, v in params.items() if v is not None)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def redirect_uri_allowed(redirect_uri: str, callback_url: str) -> bool:
    """GitHub's rule for a registered callback URL.

    Same scheme and host, same port (any port on a loopback host), and a path
    equal to or below the callback's path.
    """
    r, c = urlsplit(redirect_uri), urlsplit(callback_url)
    if r.scheme != c.scheme or (r.hostname or "").lower() != (c.hostname or "").lower():
        return False
    if (c.hostname or "").lower() not in LOOPBACK_HOSTS and r.port != c.port:
        return False
    base = c.path.rstrip("/")
    return r.path == c.path or r.path.startswith(base + "/")


def _page(status: int, title: str, detail: str) -> HTMLResponse:
    t, d = html.escape(title), html.escape(detail)
    body = f"<!DOCTYPE html><html><head><title>{t}</title></head><body><h1>{t}</h1><p>{d}</p></body></html>"
    return HTMLResponse(body, status_code=status)


def _rest_error(status: int, message: str, documentation_url: str = REST_DOCS_URI) -> Response:
    body = {
        "message": message,
        "documentation_url": documentation_url,
        "status": str(status),
    }
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json; charset=utf-8",
    )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


async def _read_params(request: Request) -> dict[str, str]:
    """Query string plus a form or JSON body: the token endpoint takes all three."""
    params = dict(request.query_params)
    raw = await request.body()
    if not raw:
        return params
    if "json" in request.headers.get("content-type", "").lower():
        try:
            data: Any = json.loads(raw)
        except ValueError:
            return params
        if isinstance(data, dict):
            params.update({str(k): str(v) for k, v in data.items() if v is not None})
        return params
    params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return params


class _RequestLogger:
    """ASGI wrapper recording (method, path) of every request, routed or not."""

    def __init__(self, app: ASGIApp, fake: FakeGitHub) -> None:
        self._app = app
        self._fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with self._fake._lock:
                self._fake.requests.append((str(scope["method"]), str(scope["path"])))
            if self._fake.latency_seconds:
                await asyncio.sleep(self._fake.latency_seconds)  # a distant GitHub, for benchmarks
        await self._app(scope, receive, send)


class FakeGitHub:
    """State of one fake github.com with a single registered OAuth/GitHub App.

    ``expiring_tokens=False`` behaves like an OAuth App (``gho_`` tokens, scopes,
    no expiry); ``True`` like a GitHub App with expiring user tokens (``ghu_`` +
    rotating ``ghr_`` refresh tokens, scopes ignored). ``callback_url`` is the
    registered callback; ``None`` accepts any ``redirect_uri``.
    """

    def __init__(
        self,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",
        *,
        expiring_tokens: bool = False,
        callback_url: str | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._lock = threading.Lock()
        self.expiring_tokens = expiring_tokens
        self.callback_url = callback_url
        self.users: dict[str, FakeUser] = {}
        self.current_login: str | None = None
        self.deny_next = False
        self.refuse_refresh = False
        self.fail_revocations = False
        self.latency_seconds = 0.0
        self.requests: list[tuple[str, str]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.revocations: list[str] = []
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
            self.requests.clear()
            self.authorize_requests.clear()
            self.token_requests.clear()
            self.revocations.clear()
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
    ) -> FakeUser:
        """Register an account with deterministic repos; logins are case-insensitive."""
        user = FakeUser(
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

    def count(self, path: str, method: str | None = None) -> int:
        """How many requests hit ``path`` (optionally only with ``method``)."""
        with self._lock:
            return sum(1 for m, p in self.requests if p == path and (method is None or m == method))

    # ------------------------------------------------------------ internals

    def _user(self, login: str) -> FakeUser | None:
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
            access = _random_token("ghu_", 40)
            refresh: str | None = _random_token("ghr_", 76)
            expires_at: float | None = now + ACCESS_TOKEN_TTL
        else:
            access, refresh, expires_at = _random_token("gho_", 40), None, None
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
        routes = [
            Route("/login/oauth/authorize", self._authorize_endpoint, methods=["GET"]),
            Route("/login/oauth/access_token", self._token_endpoint, methods=["POST"]),
            Route("/user", self._user_endpoint, methods=["GET"]),
            Route(
                "/user/memberships/orgs/{org}",
                self._membership_endpoint,
                methods=["GET"],
            ),
            Route("/user/repos", self._repos_endpoint, methods=["GET"]),
            Route(
                "/user/starred/{owner}/{repo}",
                self._star_endpoint,
                methods=["PUT", "DELETE"],
            ),
            Route(
                "/applications/{client_id}/token",
                self._delete_token_endpoint,
                methods=["DELETE"],
            ),
        ]
        # GitHub answers unknown paths and wrong methods alike with a JSON 404.
        return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})

    # ------------------------------------------------------------ OAuth flow

    async def _authorize_endpoint(self, request: Request) -> Response:
        params = dict(request.query_params)
        with self._lock:
            self.authorize_requests.append(dict(params))
        if params.get("client_id") != self.client_id:
            return _page(404, "Not Found", "No application is registered with this client_id.")
        redirect_uri = params.get("redirect_uri") or self.callback_url
        if not redirect_uri:
            return _page(
                400,
                "Bad Request",
                "redirect_uri is required: no callback URL is registered.",
            )
        state = params.get("state")
        if self.callback_url is not None and not redirect_uri_allowed(redirect_uri, self.callback_url):
            # GitHub sends this error to the *registered* callback, not the offered URI.
            return self._authorize_error(
                self.callback_url,
                state,
                "redirect_uri_mismatch",
                REDIRECT_MISMATCH,
                "redirect-uri-mismatch",
            )
        challenge = params.get("code_challenge") or None
        if challenge is not None and params.get("code_challenge_method") != "S256":
            # GitHub accepts only S256; the RFC's implicit "plain" default is refused.
            return _page(400, "Bad Request", "Only the S256 code_challenge_method is supported.")
        code: str | None = None
        with self._lock:
            denied, self.deny_next = self.deny_next, False
            login = self.current_login
            user = self._user(login) if login is not None else None
            if not denied and user is not None:
                scopes = () if self.expiring_tokens else parse_scopes(params.get("scope", ""))
                code = secrets.token_hex(10)
                self._codes[code] = _Code(
                    client_id=self.client_id,
                    redirect_uri=redirect_uri,
                    scopes=scopes,
                    login=user.login,
                    code_challenge=challenge,
                    expires_at=self.now() + CODE_TTL,
                )
        if denied:
            return self._authorize_error(
                redirect_uri,
                state,
                "access_denied",
                "The user has denied your application access.",
                "access-denied",
            )
        if code is None:
            return _page(
                400,
                "Not signed in",
                "No user is signed in to the fake GitHub (set current_login).",
            )
        return RedirectResponse(_with_query(redirect_uri, {"code": code, "state": state}), status_code=302)

    @staticmethod
    def _authorize_error(url: str, state: str | None, error: str, description: str, anchor: str) -> Response:
        query = {
            "error": error,
            "error_description": description,
            "error_uri": f"{AUTHORIZE_ERRORS_URI}#{anchor}",
            "state": state,
        }
        return RedirectResponse(_with_query(url, query), status_code=302)

    async def _token_endpoint(self, request: Request) -> Response:
        params = await _read_params(request)
        basic = _basic_credentials(request)
        wants_json = "json" in request.headers.get("accept", "").lower()
        with self._lock:
            self.token_requests.append(dict(params))
        client_id = params.get("client_id") or (basic[0] if basic else None)
        client_secret = params.get("client_secret") or (basic[1] if basic else None)
        if client_id != self.client_id or client_secret != self.client_secret:
            return _token_error(
                wants_json,
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
                f"{TOKEN_ERRORS_URI}#incorrect-client-credentials",
            )
        grant_type = params.get("grant_type") or "authorization_code"
        if grant_type == "refresh_token":
            return self._refresh_grant(params, wants_json)
        if grant_type != "authorization_code":
            return _token_error(
                wants_json,
                "unsupported_grant_type",
                "The grant type is not supported.",
                TOKEN_ERRORS_URI,
            )
        return self._code_grant(params, wants_json)

    def _code_grant(self, params: Mapping[str, str], wants_json: bool) -> Response:
        bad_code = _token_error(
            wants_json,
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            f"{TOKEN_ERRORS_URI}#bad-verification-code",
        )
        with self._lock:
            code = self._codes.get(params.get("code", ""))
            if code is None or code.used or code.expires_at <= self.now() or code.client_id != self.client_id:
                return bad_code
            # Any presentation with valid client credentials burns the code, even a
            # failed one (OAuth 2.1 / security BCP); GitHub does not document this.
            code.used = True
            redirect_uri = params.get("redirect_uri")
            if redirect_uri and redirect_uri != code.redirect_uri:
                return _token_error(
                    wants_json,
                    "redirect_uri_mismatch",
                    REDIRECT_MISMATCH,
                    f"{AUTHORIZE_ERRORS_URI}#redirect-uri-mismatch2",
                )
            if code.code_challenge is not None:
                verifier = params.get("code_verifier", "")
                if not _VERIFIER_RE.match(verifier) or pkce_challenge(verifier) != code.code_challenge:
                    return bad_code
            pair = self._mint(code.login, code.scopes)
        return _token_success(pair, wants_json)

    def _refresh_grant(self, params: Mapping[str, str], wants_json: bool) -> Response:
        with self._lock:
            old = self._refresh.get(params.get("refresh_token", ""))
            if self.refuse_refresh or old is None or old.used or old.expires_at <= self.now():
                return _token_error(
                    wants_json,
                    "bad_refresh_token",
                    "The refresh token passed is incorrect or expired.",
                    REFRESH_DOCS_URI,
                )
            # "Once you use a refresh token, that refresh token and the old user
            # access token will no longer work."
            old.used = True
            if old.access_token in self._access:
                self._access[old.access_token].revoked = True
            pair = self._mint(old.login, old.scopes)
        return _token_success(pair, wants_json)

    # --------------------------------------------------------------- REST API

    def _authenticate(self, request: Request) -> tuple[_AccessToken, FakeUser] | Response:
        header = request.headers.get("authorization")
        if not header:
            return _rest_error(401, "Requires authentication")
        scheme, _, value = header.partition(" ")
        with self._lock:
            tok = self._live_access(value.strip()) if scheme.lower() in ("bearer", "token") else None
            user = self._user(tok.login) if tok is not None else None
        if tok is None or user is None:
            return _rest_error(401, "Bad credentials")
        return tok, user

    def _rest_json(
        self,
        request: Request,
        tok: _AccessToken,
        user: FakeUser,
        data: object,
        *,
        status: int = 200,
        accepted_scopes: str = "",
        extra_headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Serialise with GitHub's headers; a 304 does not count against the limit."""
        body = json.dumps(data, separators=(",", ":")).encode()
        etag = 'W/"' + hashlib.sha256(body).hexdigest() + '"'
        not_modified = status == 200 and _etag_matches(request.headers.get("if-none-match"), etag)
        with self._lock:
            now = int(self.now())
            remaining, reset = self._rate.get(user.login.lower(), (RATE_LIMIT, now + RATE_WINDOW))
            if now >= reset:
                remaining, reset = RATE_LIMIT, now + RATE_WINDOW
            if not not_modified:
                remaining = max(remaining - 1, 0)
            self._rate[user.login.lower()] = (remaining, reset)
        headers = {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-used": str(RATE_LIMIT - remaining),
            "x-ratelimit-resource": "core",
            "x-oauth-scopes": ", ".join(tok.scopes),
            "x-accepted-oauth-scopes": accepted_scopes,
            "x-github-media-type": "github.v3; format=json",
            "x-github-api-version-selected": "2022-11-28",
            "x-github-request-id": secrets.token_hex(8).upper(),
            "vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
            **(extra_headers or {}),
        }
        if tok.expires_at is not None:
            headers["github-authentication-token-expiration"] = time.strftime(
                "%Y-%m-%d %H:%M:%S UTC", time.gmtime(tok.expires_at)
            )
        if status == 200:
            headers["etag"] = etag
        if not_modified:
            return Response(status_code=304, headers=headers)
        return Response(
            body,
            status_code=status,
            headers=headers,
            media_type="application/json; charset=utf-8",
        )

    async def _user_endpoint(self, request: Request) -> Response:
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        return self._rest_json(request, tok, user, self._user_json(request, user, full=True))

    async def _membership_endpoint(self, request: Request) -> Response:
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        docs = f"{REST_DOCS_URI}/orgs/members#get-an-organization-membership-for-the-authenticated-user"
        accepted = "admin:org, read:org, repo, user, write:org"
        # GitHub App user tokens carry no scopes; assume the app may read members.
        if not self.expiring_tokens and not ORG_READ_SCOPES.intersection(tok.scopes):
            message = "You need at least read:org scope or user scope to list your organization memberships."
            return self._rest_json(
                request,
                tok,
                user,
                _error_body(403, message, docs),
                status=403,
                accepted_scopes=accepted,
            )
        wanted = str(request.path_params["org"])
        org = next((o for o in user.orgs if o.lower() == wanted.lower()), None)
        if org is None:
            return self._rest_json(
                request,
                tok,
                user,
                _error_body(404, "Not Found", docs),
                status=404,
                accepted_scopes=accepted,
            )
        base = str(request.base_url).rstrip("/")
        membership = {
            "url": f"{base}/orgs/{org}/memberships/{user.login}",
            "state": "active",
            "role": "member",
            "organization_url": f"{base}/orgs/{org}",
            "organization": _org_json(base, org),
            "user": self._user_json(request, user, full=False),
        }
        return self._rest_json(request, tok, user, membership, accepted_scopes=accepted)

    async def _star_endpoint(self, request: Request) -> Response:
        """Star/unstar: 204; OAuth tokens need public_repo or repo, else 404 as GitHub does."""
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        if not self.expiring_tokens and not {"repo", "public_repo"} & set(tok.scopes):
            return _rest_error(404, "Not Found", f"{REST_DOCS_URI}/activity/starring")
        name = f"{request.path_params['owner']}/{request.path_params['repo']}"
        with self._lock:
            if request.method == "PUT":
                user.starred.add(name)
            else:
                user.starred.discard(name)
        return Response(status_code=204)

    async def _repos_endpoint(self, request: Request) -> Response:
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        per_page = _int_param(request, "per_page", 30, 1, 100)
        page = _int_param(request, "page", 1, 1, 10**6)
        visibility = request.query_params.get("visibility", "all")
        # Private repos need the `repo` scope; GitHub App tokens are assumed to.
        see_private = self.expiring_tokens or "repo" in tok.scopes
        repos = sorted(
            (r for r in user.repos if (see_private or not r.private)),
            key=lambda r: r.name.lower(),  # GitHub's default sort is full_name, ascending
        )
        if visibility in ("public", "private"):
            repos = [r for r in repos if r.private == (visibility == "private")]
        base = str(request.base_url).rstrip("/")
        owner = self._user_json(request, user, full=False)
        chunk = repos[(page - 1) * per_page : page * per_page]
        items = [
            {
                "id": zlib.crc32(f"{user.login}/{r.name}".encode()),
                "node_id": _node_id("R", f"{user.login}/{r.name}"),
                "name": r.name,
                "full_name": f"{user.login}/{r.name}",
                "owner": owner,
                "private": r.private,
                "visibility": "private" if r.private else "public",
                "html_url": f"{base}/{user.login}/{r.name}",
                "description": r.description,
                "fork": False,
                "url": f"{base}/repos/{user.login}/{r.name}",
                "stargazers_count": r.stargazers_count,
                "watchers_count": r.stargazers_count,
                "created_at": user.created_at,
                "updated_at": r.updated_at,
                "pushed_at": r.updated_at,
            }
            for r in chunk
        ]
        last = max((len(repos) + per_page - 1) // per_page, 1)
        links = []
        page_url = str(request.url.remove_query_params("page"))
        if page < last:
            links.append(f'<{_with_query(page_url, {"page": str(page + 1)})}>; rel="next"')
            links.append(f'<{_with_query(page_url, {"page": str(last)})}>; rel="last"')
        if page > 1:
            links.append(f'<{_with_query(page_url, {"page": "1"})}>; rel="first"')
            prev = str(min(page - 1, last))
            links.append(f'<{_with_query(page_url, {"page": prev})}>; rel="prev"')
        extra = {"link": ", ".join(links)} if links else None
        return self._rest_json(request, tok, user, items, accepted_scopes="", extra_headers=extra)

    async def _delete_token_endpoint(self, request: Request) -> Response:
        docs = f"{REST_DOCS_URI}/apps/oauth-applications#delete-an-app-token"
        basic = _basic_credentials(request)
        if basic is None:
            return _rest_error(401, "Requires authentication", docs)
        if basic != (self.client_id, self.client_secret):
            return _rest_error(401, "Bad credentials", docs)
        if request.path_params["client_id"] != self.client_id:
            return _rest_error(404, "Not Found", docs)
        params = await _read_params(request)
        token = params.get("access_token")
        if not token:
            return _rest_error(422, 'Invalid request.\n\n"access_token" wasn\'t supplied.', docs)
        if self.fail_revocations:
            return _rest_error(500, "Server Error", docs)
        with self._lock:
            tok = self._access.get(token)
            if tok is None or tok.revoked:
                return _rest_error(404, "Not Found", docs)
            self._kill(token)
            self.revocations.append(token)
        return Response(status_code=204)

    def _user_json(self, request: Request, user: FakeUser, *, full: bool) -> dict[str, object]:
        base = str(request.base_url).rstrip("/")
        data: dict[str, object] = {
            "login": user.login,
            "id": user.id,
            "node_id": _node_id("U", f"user:{user.id}"),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": f"{base}/users/{user.login}",
            "html_url": f"{base}/{user.login}",
            "type": "User",
            "site_admin": False,
        }
        if full:
            data.update(
                {
                    "name": user.name,
                    "company": user.company,
                    "blog": user.blog,
                    "location": user.location,
                    "email": user.email,
                    "hireable": None,
                    "bio": user.bio,
                    "twitter_username": None,
                    "public_repos": sum(1 for r in user.repos if not r.private),
                    "public_gists": 0,
                    "followers": user.followers,
                    "following": user.following,
                    "created_at": user.created_at,
                    "updated_at": user.updated_at,
                }
            )
        return data


def _org_json(base: str, org: str) -> dict[str, object]:
    org_id = zlib.crc32(org.lower().encode()) % 10**8 + 1000
    return {
        "login": org,
        "id": org_id,
        "node_id": _node_id("O", f"org:{org_id}"),
        "url": f"{base}/orgs/{org}",
        "repos_url": f"{base}/orgs/{org}/repos",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{org_id}?v=4",
        "description": None,
    }


def _error_body(status: int, message: str, documentation_url: str) -> dict[str, str]:
    return {
        "message": message,
        "documentation_url": documentation_url,
        "status": str(status),
    }


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == bare for candidate in header.split(","))


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        return default
    return min(max(value, low), high)


def _token_payload(pair: TokenPair) -> dict[str, str | int]:
    if pair.refresh_token is None:
        return {
            "access_token": pair.access_token,
            "token_type": "bearer",
            "scope": ",".join(pair.scopes),
        }
    return {
        "access_token": pair.access_token,
        "expires_in": ACCESS_TOKEN_TTL,
        "refresh_token": pair.refresh_token,
        "refresh_token_expires_in": REFRESH_TOKEN_TTL,
        "scope": "",
        "token_type": "bearer",
    }


def _token_response(payload: Mapping[str, str | int], wants_json: bool) -> Response:
    """The token endpoint is always 200, form-encoded unless JSON is asked for."""
    if wants_json:
        return Response(json.dumps(payload), media_type="application/json; charset=utf-8")
    body = urlencode({k: str(v) for k, v in payload.items()})
    return Response(body, media_type="application/x-www-form-urlencoded; charset=utf-8")


def _token_success(pair: TokenPair, wants_json: bool) -> Response:
    return _token_response(_token_payload(pair), wants_json)


def _token_error(wants_json: bool, error: str, description: str, uri: str) -> Response:
    return _token_response({"error": error, "error_description": description, "error_uri": uri}, wants_json)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _rest_error(404, "Not Found")


@contextmanager
def running_fake_github(fake: FakeGitHub, *, host: str = "127.0.0.1", startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve ``fake`` on a free port in a daemon thread; yields its base URL.

    The listening socket is bound here and handed to uvicorn, so there is no
    window in which another process could grab the port.
    """
    # proto must be IPPROTO_TCP (not 0): asyncio only sets TCP_NODELAY on such
    # sockets, and without it every keep-alive request stalls ~40 ms on Nagle.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        fake.app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="fake-github", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("fake GitHub server thread died during startup")
            if time.monotonic() > deadline:
                raise RuntimeError(f"fake GitHub server did not start within {startup_timeout} s")
            time.sleep(0.005)
        with socket.create_connection((host, port), timeout=startup_timeout):
            pass  # it answers TCP; uvicorn's `started` is set after listen()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
