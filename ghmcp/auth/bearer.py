"""The resource server's one layer in front of /mcp and /sse: who is calling, and may they call this.

It does in one ASGI hop what the SDK does in three (`AuthenticationMiddleware` with
`BearerAuthBackend`, `AuthContextMiddleware`, `RequireAuthMiddleware`; app.py takes those out),
by the same rules, plus two things the SDK lacks: a `scope=` in the 401 challenge, and an early
403 challenge for a tool's missing scope (scopes.py; the decision that counts is `scopes.ScopeCheck`,
taken again on what the SDK decoded). The rules:
- the first `Authorization` header, `Bearer ` in any case, the rest is the token;
- the provider's `load_access_token`; an expired token, or one issued for another resource
  (RFC 8707 audience, compared as URLs as the SDK compares them), is refused with 401;
- `scope["user"]`, `scope["auth"]` and the SDK's auth context are set as the SDK sets them: the
  transports compare session owners by them, and `get_access_token()` reads them in tools.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from pydantic import AnyHttpUrl, ValidationError
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from ghmcp.asgi import unavailable
from ghmcp.asgi.bodies import read_at_most, replay
from ghmcp.auth import scopes
from ghmcp.storage import StoreUnavailable

MAX_BODY = 4 * 1024 * 1024  # the SDK's own request body cap

Verify = Callable[[str], Awaitable[AccessToken | None]]


class BearerGate:
    """401 with `scope=` without a valid token; 403 for a tool's missing scope; else on to the transport."""

    def __init__(self, app: ASGIApp, verify: Verify, resource_url: str, resource_metadata: str, mcp: MCPServer):
        self.app = app
        self.verify = verify
        self.resource_url = str(AnyHttpUrl(resource_url))
        self.resource_metadata = resource_metadata
        self.mcp = mcp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            access = await self._authenticate(scope["headers"])
        except StoreUnavailable as exc:  # the one store read on this path: 503 as unavailable.py answers, not 500
            await unavailable.answer(scope, receive, send, exc, unavailable.json_response())
            return
        if access is None:
            required = "Authentication required"
            challenge = scopes.challenge("invalid_token", scopes.DEFAULT_SCOPES, self.resource_metadata, required)
            await _send_error(send, 401, "invalid_token", challenge)
            return
        user = AuthenticatedUser(access)
        scope["user"] = user
        scope["auth"] = AuthCredentials(access.scopes)
        if scope["method"] == "POST":
            body = await read_at_most(receive, MAX_BODY)
            if body is None:
                await _send_error(send, 413, "request_too_large")
                return
            refused = await scopes.refusal(self.mcp, body, list(access.scopes))
            if refused is not None:
                await self._forbid(send, refused)
                return
            receive = replay(body, receive)
        context = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(context)

    async def _forbid(self, send: Send, refused: scopes.Refusal) -> None:
        if refused is scopes.UNREADABLE:
            await _send_error(send, 400, refused.error)
            return
        if not refused.wanted:  # undeclared: no scope the caller could ask for would help
            await _send_error(send, 403, refused.error)
            return
        challenge = scopes.challenge(refused.error, refused.wanted, self.resource_metadata, refused.description)
        await _send_error(send, 403, refused.error, challenge)

    async def _authenticate(self, headers: list[tuple[bytes, bytes]]) -> AccessToken | None:
        token = _bearer(headers)
        if token is None:
            return None
        access = await self.verify(token)
        if access is None:
            return None
        if access.expires_at and access.expires_at < int(time.time()):
            return None
        # RFC 8707: a token minted for another resource is not accepted here.
        return access if _same_resource(access.resource, self.resource_url) else None


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    # Reversed, so the first of several Authorization headers wins; ASGI servers lower-case names.
    value = dict(reversed(headers)).get(b"authorization")
    if value is None:
        return None
    text = value.decode("latin-1")
    return text[7:] if text[:7].lower() == "bearer " else None


@functools.lru_cache(maxsize=64)
def _same_resource(resource: str | None, ours: str) -> bool:
    """As the SDK's `BearerAuthBackend` compares: as URLs (case, default ports), a trailing slash aside.

    Cached: the few resource values a deployment's tokens carry are parsed once, not per request."""
    try:
        theirs = str(AnyHttpUrl(resource or ""))
    except ValidationError:
        return False
    return theirs.removesuffix("/") == ours.removesuffix("/")


async def _send_error(send: Send, status: int, error: str, www_authenticate: str | None = None) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if www_authenticate:
        headers.append((b"www-authenticate", www_authenticate.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
