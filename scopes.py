"""The MCP scope vocabulary, its mapping to GitHub scopes, and per-tool enforcement.

To add a scope: add a row to `SCOPES`. To protect a tool with one: `@scoped_tool(mcp, ...)` in
`tools.py`. A call to a tool whose scope the token lacks is answered with HTTP 403 and a
`WWW-Authenticate` challenge naming the scope, so MCP clients can step up (RFC 6750 §3.1).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pydantic_core
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class ScopeInfo:
    description: str  # shown on the consent page
    github: tuple[str, ...]  # what GitHub must grant for tools behind this scope to work


SCOPES: dict[str, ScopeInfo] = {
    "user": ScopeInfo("Read your GitHub profile", ("read:user",)),
    # Public repository data needs no GitHub scope at all.
    "repo:read": ScopeInfo("List your public repositories", ()),
    "repo:write": ScopeInfo("Star and unstar public repositories for you", ("public_repo",)),
}
DEFAULT_SCOPES = ["user"]

# Tool name -> the MCP scope it needs; filled by `require_scope` in tools.py.
TOOL_SCOPES: dict[str, str] = {}

MAX_BODY = 4 * 1024 * 1024  # the SDK's own request body cap


def github_scopes(mcp_scopes: Iterable[str], *, orgs_configured: bool) -> list[str]:
    """Only the GitHub scopes the chosen MCP scopes need (least privilege)."""
    wanted = {g for s in mcp_scopes if s in SCOPES for g in SCOPES[s].github}
    if orgs_configured:
        wanted.add("read:org")  # admission checks org membership with the user's token
    return sorted(wanted)


def challenge(error: str, scopes: Iterable[str], resource_metadata: str, description: str) -> str:
    return (
        f'Bearer error="{error}", error_description="{description}", '
        f'scope="{" ".join(scopes)}", resource_metadata="{resource_metadata}"'
    )


class BearerChallenge:
    """Wraps an MCP endpoint: 401 with `scope=` when unauthenticated, 403 for a tool's missing scope.

    The SDK's own challenge names no scope (RFC 6750 §3 allows it; MCP clients use it to pick
    what to ask for), and the SDK has no per-tool scopes, hence this layer.
    """

    def __init__(self, app: ASGIApp, resource_metadata: str) -> None:
        self.app = app
        self.resource_metadata = resource_metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if not isinstance(user, AuthenticatedUser):
            await _send_error(
                send, 401, challenge("invalid_token", DEFAULT_SCOPES, self.resource_metadata, "Authentication required")
            )
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            await _send_error(send, 413, None)
            return
        granted = list(user.scopes)
        missing = [s for s in _tools_called(body) if s not in granted] if _may_call_a_tool(body) else []
        if missing:
            wanted = granted + sorted(set(missing))
            description = f"This tool needs the {missing[0]} scope"
            await _send_error(send, 403, challenge("insufficient_scope", wanted, self.resource_metadata, description))
            return
        await self.app(scope, _replay(body, receive), send)


def _may_call_a_tool(body: bytes) -> bool:
    """False only when no JSON string in `body` can be "tools/call", so `_tools_called` would find nothing.

    JSON can spell a string with escapes ("tools\\/call", "\\u0074ools/call"), and every escape
    needs a backslash; without one, each string's UTF-8 bytes appear verbatim in the body (a body
    that is not UTF-8 fails the SDK's parse and is refused there). Saves a parse of every ping,
    initialize and list request.
    """
    return b"tools/call" in body or b"\\" in body


def _tools_called(body: bytes) -> list[str]:
    """The scopes needed by every `tools/call` in a JSON-RPC message or batch."""
    try:
        # The SDK's own parser: a body read differently here and there could dodge the check.
        parsed: Any = pydantic_core.from_json(body)
    except ValueError:
        return []  # the SDK refuses malformed JSON itself
    messages = parsed if isinstance(parsed, list) else [parsed]
    needed = []
    for message in messages:
        if isinstance(message, dict) and message.get("method") == "tools/call":
            params = message.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            if isinstance(name, str) and name in TOOL_SCOPES:
                needed.append(TOOL_SCOPES[name])
    return needed


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the already-read body to the app, then pass through (so disconnects still arrive)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_error(send: Send, status: int, www_authenticate: str | None) -> None:
    error = {401: "invalid_token", 403: "insufficient_scope", 413: "request_too_large"}[status]
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if www_authenticate:
        headers.append((b"www-authenticate", www_authenticate.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
