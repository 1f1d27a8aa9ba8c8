"""Junk on every endpoint gets a 4xx answer: never a 5xx, never a stack trace."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.conftest import StartServer
from tests.support import ServerProcess, Transport

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MCP = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def junk_requests(mcp_path: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("POST", "/register", {"content": b"not json", "headers": JSON}),
        ("POST", "/register", {"content": b"[1, 2, 3]", "headers": JSON}),
        ("POST", "/register", {"json": {"redirect_uris": "nope"}}),
        ("POST", "/register", {"json": {"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["password"]}}),
        ("POST", "/register", {"content": b"\xff\xfe\x00", "headers": JSON}),
        ("GET", "/authorize", {}),
        ("GET", "/authorize?client_id=nope&response_type=code&code_challenge=x", {}),
        ("GET", "/authorize?response_type=token", {}),
        ("POST", "/authorize", {"content": b"%%%", "headers": FORM}),
        ("POST", "/token", {}),
        ("POST", "/token", {"data": {"grant_type": "authorization_code", "client_id": "nope"}}),
        ("POST", "/token", {"data": {"grant_type": "password"}}),
        ("POST", "/token", {"content": b"\x00\x01", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}),
        ("POST", "/revoke", {}),
        ("POST", "/revoke", {"data": {"client_id": "nope", "token": "x"}}),
        ("POST", "/revoke", {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}),
        ("GET", "/consent", {}),
        ("GET", "/consent?request=nope", {}),
        ("POST", "/consent", {}),
        ("POST", "/consent", {"data": {"request": "nope", "csrf": "nope", "action": "approve"}}),
        ("POST", "/consent", {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}),
        ("GET", "/github/callback", {}),
        ("GET", "/github/callback?state=%00%ff&code=" + "x" * 5000, {}),
        ("GET", "/github/callback?error=access_denied", {}),
        ("GET", mcp_path, {}),
        ("POST", mcp_path, {"content": b"{", "headers": MCP}),
        ("POST", mcp_path, {"json": {"jsonrpc": "2.0"}, "headers": MCP | {"Authorization": "Bearer junk"}}),
        ("POST", mcp_path, {"headers": MCP | {"Authorization": "Basic Zm9vOmJhcg=="}}),
        ("POST", "/messages/?session_id=nope", {"content": b"{", "headers": MCP}),
        ("DELETE", "/.well-known/oauth-authorization-server", {}),
        ("GET", "/nope", {}),
    ]


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_junk_gets_4xx_never_5xx(start_server: StartServer, transport: Transport) -> None:
    server = start_server(transport=transport)
    path = "/mcp" if transport == "streamable-http" else "/sse"
    async with httpx2.AsyncClient(timeout=10) as http:
        for method, url, kwargs in junk_requests(path):
            response = await http.request(method, f"{server.url}{url}", **kwargs)
            assert 400 <= response.status_code < 500, (method, url, response.status_code, response.text[:200])
            assert "Traceback" not in response.text
    assert "Traceback" not in server.log()


async def test_oversized_body_is_refused(server: ServerProcess) -> None:
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(f"{server.url}/register", content=b"x" * (5 * 1024 * 1024), headers=JSON)
    assert response.status_code == 413
