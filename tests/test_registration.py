"""Dynamic client registration refuses redirect URIs that would hand codes to an attacker."""

from __future__ import annotations

import httpx2
import pytest

from ghmcp.auth.registration import redirect_uri_problem
from tests.conftest import StartServer
from tests.support import ServerProcess, authorize_request, register_client

pytestmark = pytest.mark.anyio

REFUSED = [
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "http://evil.example.com/callback",
    "https://user:pass@app.example.com/callback",
    "https://app.example.com/callback#fragment",
    "file:///etc/passwd",
    "myapp://callback",
    "http://localhost.evil.example.com/callback",
]
ACCEPTED = [
    "https://app.example.com/callback",
    "http://127.0.0.1:3000/callback",
    "http://localhost/callback",
    "http://[::1]:8080/callback",
    "cursor://anysphere.cursor-retrieval/oauth/user-github/callback",
    "vscode://vscode.github-authentication/did-authenticate",
]


async def register(server: ServerProcess, redirect_uri: str) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(
            f"{server.url}/register",
            json={"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none", "client_name": "t"},
        )


async def test_dangerous_redirect_uris_are_refused(server: ServerProcess) -> None:
    for uri in REFUSED:
        response = await register(server, uri)
        assert response.status_code == 400, uri
        assert response.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata"), uri


async def test_safe_redirect_uris_are_accepted(server: ServerProcess) -> None:
    for uri in ACCEPTED:
        response = await register(server, uri)
        assert response.status_code == 201, (uri, response.text)


async def test_custom_schemes_come_from_the_allow_list(start_server: StartServer) -> None:
    server = start_server(env={"MCP_ALLOWED_REDIRECT_SCHEMES": "myapp"})
    assert (await register(server, "myapp://callback")).status_code == 201
    assert (await register(server, "cursor://anysphere.cursor-retrieval/cb")).status_code == 400


async def test_overlong_client_name_is_refused(server: ServerProcess) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{server.url}/register",
            json={"redirect_uris": ["http://127.0.0.1:1/cb"], "client_name": "x" * 500},
        )
    assert response.status_code == 400


def test_redirect_uri_rules() -> None:
    for uri in REFUSED:
        assert redirect_uri_problem(uri, ["cursor", "vscode"]) is not None, uri
    for uri in ACCEPTED:
        assert redirect_uri_problem(uri, ["cursor", "vscode"]) is None, uri


@pytest.mark.parametrize(
    ("registered", "requested", "accepted"),
    [
        ("http://127.0.0.1/callback", "http://127.0.0.1:54321/callback", True),  # VS Code's fallback port
        ("http://localhost:33418/", "http://localhost:40001/", True),
        ("http://[::1]:1/cb", "http://[::1]:2/cb", True),
        ("http://127.0.0.1/callback", "http://127.0.0.1:54321/other", False),
        ("http://127.0.0.1/callback", "http://localhost:54321/callback", False),
        ("https://app.example.com/cb", "https://app.example.com:8443/cb", False),
    ],
)
async def test_loopback_redirect_uris_match_on_any_port(
    server: ServerProcess, registered: str, requested: str, accepted: bool
) -> None:
    """RFC 8252 §7.3: a native app's loopback redirect takes whatever port is free."""
    async with httpx2.AsyncClient(timeout=10) as http:
        client_id = await register_client(http, server.url, [registered])
        response = await http.get(authorize_request(server.url, client_id, requested).url)
    if accepted:
        assert response.status_code == 302 and response.headers["location"].startswith(f"{server.url}/consent?")
    else:
        assert response.status_code == 400 and "location" not in response.headers
