"""Issue 15 (1/8), the lows: forged log lines, POST /sse, and DNS rebinding against the demo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from ghmcp.web.access_log import escape_controls
from tests.support import ServerProcess, running_server, sign_in_tokens

pytestmark = pytest.mark.anyio

StartServer = Callable[..., ServerProcess]


async def test_a_newline_in_a_request_path_cannot_forge_a_log_line(server: ServerProcess) -> None:
    forged = "2099-01-01 00:00:00,000 INFO mcp_server: POST /token 200"
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(f"{server.url}/consent%0A{forged.replace(' ', '%20')}")
        await http.get(f"{server.url}/healthz")  # the line above is written once this one is answered
    assert response.status_code < 500
    lines = server.log().splitlines()
    assert not [line for line in lines if line.startswith("2099-01-01")]
    assert any("/consent\\x0a2099-01-01" in line for line in lines), lines[-5:]


@pytest.mark.parametrize(
    ("text", "logged"),
    [("a\nb", "a\\x0ab"), ("a\r\nb", "a\\x0d\\x0ab"), ("\x1b[31m", "\\x1b[31m"), ("a\u2028b", "a\\u2028b"), ("é", "é")],
)
def test_control_characters_are_escaped(text: str, logged: str) -> None:
    assert escape_controls(text) == logged


async def test_sse_answers_405_to_anything_but_get(start_server: StartServer) -> None:
    server = start_server(transport="sse")
    signed_in = await sign_in_tokens(server, scope="user")
    headers = {"Authorization": f"Bearer {signed_in.access}", "Accept": "text/event-stream"}
    async with httpx2.AsyncClient(timeout=10) as http:
        for method in ("POST", "PUT", "DELETE"):
            response = await http.request(method, server.mcp_url, headers=headers, content=b"{}")
            assert response.status_code == 405, method
            assert response.headers["allow"] == "GET, HEAD"
        unauthenticated = await http.post(server.mcp_url)
    assert unauthenticated.status_code == 405  # as the router answered before /sse was dispatched directly


async def test_the_demo_answers_only_to_a_loopback_host(tmp_path: Path) -> None:
    with running_server("", tmp_path, demo=True) as server:
        picker = f"{server.url}/demo-github/login/oauth/authorize"
        async with httpx2.AsyncClient(timeout=10) as http:
            rebound = await http.get(picker, headers={"Host": f"attacker.example:{server.port}"})
            home = await http.get(f"{server.url}/healthz", headers={"Host": "attacker.example"})
            for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"[::1]:{server.port}"):
                assert (await http.get(f"{server.url}/healthz", headers={"Host": host})).status_code == 200, host
    assert rebound.status_code == 421 and home.status_code == 421
