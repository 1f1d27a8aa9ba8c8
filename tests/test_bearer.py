"""bearer.BearerGate: the SDK's bearer rules in one layer (header, expiry, RFC 8707 audience, auth context)."""

from __future__ import annotations

import time

import pytest
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from starlette.types import Message, Receive, Scope, Send

from ghmcp.auth.bearer import BearerGate

pytestmark = pytest.mark.anyio

RESOURCE = "http://127.0.0.1:8000/mcp"
GOOD = "good-token"


def token(**overrides: object) -> AccessToken:
    fields: dict[str, object] = {
        "token": GOOD,
        "client_id": "c",
        "scopes": ["user"],
        "expires_at": int(time.time()) + 600,
        "resource": RESOURCE,
    }
    return AccessToken.model_validate(fields | overrides)


async def status(headers: list[tuple[bytes, bytes]], issued: AccessToken | None = None) -> tuple[int, str | None]:
    """(HTTP status, the client id `get_access_token()` saw inside the app) for a GET through the gate."""
    seen: list[str | None] = []
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        access = get_access_token()
        seen.append(access.client_id if access else None)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def verify(presented: str) -> AccessToken | None:
        return (issued or token()) if presented == GOOD else None

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    gate = BearerGate(app, verify, RESOURCE, "http://127.0.0.1:8000/.well-known/x", MCPServer("gate"))
    await gate({"type": "http", "method": "GET", "path": "/mcp", "headers": headers}, receive, send)
    assert get_access_token() is None  # the auth context does not outlive the request
    return sent[0]["status"], (seen[0] if seen else None)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], 401),
        ([(b"authorization", b"Basic Z29vZC10b2tlbg==")], 401),
        ([(b"authorization", b"Bearer wrong")], 401),
        ([(b"authorization", b"Bearer good-token")], 200),
        ([(b"authorization", b"bEaReR good-token")], 200),  # the scheme is case-insensitive (RFC 6750 §2.1)
        ([(b"authorization", b"Bearer wrong"), (b"authorization", b"Bearer good-token")], 401),  # the first counts
    ],
)
async def test_the_bearer_header(headers: list[tuple[bytes, bytes]], expected: int) -> None:
    assert (await status(headers))[0] == expected


@pytest.mark.parametrize(
    ("issued", "expected"),
    [
        (token(), (200, "c")),
        (token(expires_at=int(time.time()) - 1), (401, None)),
        (token(resource="http://127.0.0.1:8000/other"), (401, None)),  # RFC 8707: minted for another resource
        (token(resource=None), (401, None)),
        (token(resource="not a url"), (401, None)),
        (token(resource="HTTP://127.0.0.1:8000/mcp/"), (200, "c")),  # compared as URLs, as the SDK does
    ],
)
async def test_expiry_and_audience(issued: AccessToken, expected: tuple[int, str | None]) -> None:
    assert await status([(b"authorization", b"Bearer good-token")], issued) == expected
