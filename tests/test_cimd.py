"""Client ID Metadata Documents (issue 10): a client_id that is the URL of the client's own
metadata, fetched with SSRF guards, validated, cached, and named on the consent page."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest

from ghmcp.auth.keys import s256
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import CLIENT_REDIRECT, Browser, ServerProcess, mcp_status, query
from tests.test_config import BASE, run_main

pytestmark = pytest.mark.anyio

VERIFIER = "v" * 64


class DocumentServer:
    """A client's web site on 127.0.0.1 serving its metadata document; counts every request."""

    def __init__(self) -> None:
        self.requests = 0
        self.body: bytes | None = None
        self.cache_control = "max-age=600"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = outer.body if outer.body is not None else json.dumps(outer.document()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", outer.cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.overrides: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/client.json"

    def document(self) -> dict[str, Any]:
        return {
            "client_id": self.url,
            "client_name": "Example Editor",
            "redirect_uris": [CLIENT_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        } | self.overrides


@pytest.fixture
def site() -> Iterator[DocumentServer]:
    server = DocumentServer()
    thread = threading.Thread(target=server.http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.http.shutdown()
        server.http.server_close()


@pytest.fixture(scope="module")
def dev_server(start_module_server: StartServer) -> ServerProcess:
    return start_module_server(env={"MCP_CIMD_ALLOW_HTTP_LOOPBACK": "true"})


def authorize_url(server: ServerProcess, client_id: str, redirect_uri: str = CLIENT_REDIRECT) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
        "state": "doc-state",
    }
    return f"{server.url}/authorize?{urlencode(params)}"


async def test_a_document_client_signs_in_without_registering_and_without_a_secret(
    github: FakeGitHub, dev_server: ServerProcess, site: DocumentServer
) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        metadata = (await http.get(f"{dev_server.url}/.well-known/oauth-authorization-server")).json()
        first = await http.get(authorize_url(dev_server, site.url))
        page = await http.get(first.headers["location"])
    assert metadata["client_id_metadata_document_supported"] is True
    assert page.status_code == 200
    host = site.url.split("/")[2]
    assert f"An app from <strong>{host}</strong>" in page.text
    assert page.text.index(host) < page.text.index('<span class="client">Example Editor')  # the host comes first

    async with Browser() as browser:  # asking for more than the default scope, as a real client would
        answer = query(await browser.run(authorize_url(dev_server, site.url) + "&scope=user+repo%3Aread"))
    assert answer["iss"] == dev_server.url and "code" in answer
    async with httpx2.AsyncClient(timeout=10) as http:
        tokens = await http.post(
            f"{dev_server.url}/token",
            data={
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": CLIENT_REDIRECT,
                "client_id": site.url,
                "code_verifier": VERIFIER,
            },
        )
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == "user repo:read"
    assert await mcp_status(dev_server, tokens.json()["access_token"]) == 200
    assert site.requests == 1  # cached by its Cache-Control across /authorize and /token


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"client_id": "http://127.0.0.1:9/someone-else.json"}, "client_id is not the URL"),
        ({"token_endpoint_auth_method": "client_secret_post"}, "token_endpoint_auth_method none"),
        ({"redirect_uris": ["http://attacker.example/cb"]}, "redirect URI that is not allowed"),
        ({"client_name": "x" * 17000}, "larger than 16384 bytes"),
    ],
)
async def test_a_document_failing_a_check_gets_a_400_page_never_a_redirect(
    github: FakeGitHub, dev_server: ServerProcess, site: DocumentServer, change: dict[str, Any], reason: str
) -> None:
    site.overrides = change
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(authorize_url(dev_server, site.url))
    assert response.status_code == 400 and "location" not in response.headers
    assert reason in response.text and "could not be verified" in response.text


async def test_an_unlisted_redirect_uri_is_refused_without_a_redirect(
    github: FakeGitHub, dev_server: ServerProcess, site: DocumentServer
) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(authorize_url(dev_server, site.url, "http://127.0.0.1:2/elsewhere"))
    assert response.status_code == 400 and "location" not in response.headers


@pytest.fixture
def listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP port on loopback that records every connection made to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()


async def test_private_loopback_and_metadata_addresses_are_refused_before_any_request(
    github: FakeGitHub, server: ServerProcess, listener: tuple[int, list[socket.socket]]
) -> None:
    port, accepted = listener
    urls = [
        f"https://127.0.0.1:{port}/client.json",
        f"https://localhost:{port}/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.7/client.json",
        "https://192.168.1.1/client.json",
        "https://[::1]/client.json",
        f"http://127.0.0.1:{port}/client.json",  # http without the development setting
    ]
    async with httpx2.AsyncClient(timeout=10) as http:
        for url in urls:
            response = await http.get(authorize_url(server, url))
            assert response.status_code == 400 and "location" not in response.headers, url
            assert url.startswith("http:") or "is not on a public address" in response.text, url
    assert accepted == []


def test_the_development_setting_is_refused_off_loopback(tmp_path: Any) -> None:
    env = BASE | {"MCP_CIMD_ALLOW_HTTP_LOOPBACK": "true", "MCP_SERVER_URL": "https://mcp.example.com"}
    result = run_main(tmp_path, env)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "MCP_CIMD_ALLOW_HTTP_LOOPBACK" in line


@pytest.mark.parametrize(
    ("env", "args"),
    [({"MCP_HOST": "0.0.0.0"}, ()), ({}, ("--host", "0.0.0.0"))],  # noqa: S104 (refused, never bound)
)
def test_the_development_setting_is_refused_on_a_public_bind_address(
    tmp_path: Any, env: dict[str, str], args: tuple[str, ...]
) -> None:
    result = run_main(tmp_path, BASE | {"MCP_CIMD_ALLOW_HTTP_LOOPBACK": "true"} | env, *args)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "MCP_CIMD_ALLOW_HTTP_LOOPBACK" in line and "MCP_HOST" in line
