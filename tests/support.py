"""Test helpers: start the server as `main.py` does, drive the browser hops, connect MCP clients.

Everything listens on 127.0.0.1 with ports chosen by the OS, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

ROOT = Path(__file__).resolve().parent.parent
CLIENT_REDIRECT = "http://127.0.0.1:1/callback"  # nothing listens: the scripted browser stops there
Transport = Literal["streamable-http", "sse"]


def unavailable(message: str) -> NoReturn:
    """A program a test needs is missing: skip, except under CI, where it fails (.ci/run installs it)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """`main.py` in a subprocess, with its own data directory and log file."""

    github_url: str
    data_dir: Path
    transport: Transport = "streamable-http"
    env: dict[str, str | None] = field(default_factory=dict)  # None unsets a default
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    demo: bool = False  # `main.py --demo --port N` with no MCP_* variable at all, as on a fresh clone

    @property
    def url(self) -> str:
        return f"http://{'localhost' if self.demo else '127.0.0.1'}:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp" if self.transport == "streamable-http" else f"{self.url}/sse"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def environment(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("MCP_")}
        if self.demo:
            return keep
        merged: dict[str, str | None] = {
            **keep,
            **{
                "MCP_GITHUB_CLIENT_ID": "fake-client-id",
                "MCP_GITHUB_CLIENT_SECRET": "fake-client-secret",
                "MCP_GITHUB_URL": self.github_url,
                "MCP_GITHUB_API_URL": self.github_url,
                "MCP_SERVER_URL": self.url,
                "MCP_PORT": str(self.port),
                "MCP_STORAGE_URL": f"sqlite:///{self.data_dir / 'mcp.sqlite3'}",
                "MCP_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
                "MCP_RATE_LIMIT": "10000/minute",
                "MCP_REGISTRATION_RATE_LIMIT": "10000/minute",
                "MCP_MAX_PENDING_PER_CLIENT": "1000",  # every test browser shares 127.0.0.1
                "MCP_CONFIRM_WRITES": "false",  # tests/test_confirmed_writes.py turns it on
            },
            **self.env,
        }
        return {k: v for k, v in merged.items() if v is not None}

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # cwd is the data directory so that no developer's .env leaks into the tests.
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--transport", self.transport]
            + (["--demo", "--port", str(self.port)] if self.demo else []),
            cwd=self.data_dir,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in 20 s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_server(github_url: str, data_dir: Path, **kwargs: Any) -> Iterator[ServerProcess]:
    server = ServerProcess(github_url, data_dir, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def form_fields(html: str) -> dict[str, str]:
    return {
        m.group(1): unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    }


def checked_boxes(html: str) -> dict[str, list[str]]:
    """The checkboxes a browser submits with a form: checked ones, not disabled (the consent page's scopes)."""
    boxes: dict[str, list[str]] = {}
    for m in re.finditer(r'<input type="checkbox" name="([^"]+)" value="([^"]*)"( checked)?( disabled)?>', html):
        if m.group(3) and not m.group(4):
            boxes.setdefault(m.group(1), []).append(unescape(m.group(2)))
    return boxes


def consent_form(html: str, action: str) -> dict[str, Any]:
    """What pressing `action` on the consent page `html` posts, with every scope left checked."""
    return {**form_fields(html), **checked_boxes(html), "action": action}


class Browser:
    """A scripted browser: follows redirects by hand, keeps cookies, answers the consent page."""

    def __init__(self, consent: Literal["approve", "deny"] = "approve", github_login: str | None = None) -> None:
        self.http = httpx2.AsyncClient(timeout=10)
        self.consent = consent
        self.github_login = github_login  # whom to pick on the GitHub stand-in's user picker
        self.visited: list[str] = []
        self.last_response: httpx2.Response | None = None

    async def run(self, url: str, stop_at: str = CLIENT_REDIRECT, max_hops: int = 15) -> str:
        """Follow `url` until a redirect leads to `stop_at`; returns that final URL."""
        method, data = "GET", None
        for _ in range(max_hops):
            if url.startswith(stop_at):
                return url
            self.visited.append(url)
            response = await self.http.request(method, url, data=data)
            self.last_response = response
            method, data = "GET", None
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
            elif response.status_code == 200 and 'action="/consent"' in response.text:
                data = consent_form(response.text, self.consent)
                method, url = "POST", urljoin(url, "/consent")
            elif response.status_code == 200 and self.github_login and "data-login=" in response.text:
                link = re.search(rf'href="([^"]+)" data-login="{re.escape(self.github_login)}"', response.text)
                assert link is not None, response.text
                url = urljoin(url, unescape(link.group(1)))
            else:
                raise BrowserStopped(response)
        raise AssertionError(f"too many hops: {self.visited}")

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class BrowserStopped(Exception):
    """The browser reached a page that is neither a redirect nor the consent form."""

    def __init__(self, response: httpx2.Response) -> None:
        super().__init__(f"stopped at HTTP {response.status_code} {response.url}")
        self.response = response


class MemoryTokens:
    def __init__(self, client_info: OAuthClientInformationFull | None = None) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info = client_info

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class McpUser:
    """An MCP client (the SDK's own OAuth client) with a browser whose hops are scripted."""

    def __init__(
        self,
        server: ServerProcess,
        storage: MemoryTokens | None = None,
        scope: str | None = None,
        github_login: str | None = None,
    ) -> None:
        self.server = server
        self.storage = storage or MemoryTokens()
        self.browser = Browser(github_login=github_login)
        self._redirect: str | None = None
        metadata = OAuthClientMetadata(
            redirect_uris=[CLIENT_REDIRECT],  # type: ignore[list-item]
            client_name="Test MCP Client",
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            scope=scope,
        )
        self.oauth = OAuthClientProvider(server.mcp_url, metadata, self.storage, self._on_redirect, self._on_callback)

    async def _on_redirect(self, url: str) -> None:
        self._redirect = await self.browser.run(url)

    async def _on_callback(self) -> AuthorizationCodeResult:
        assert self._redirect is not None
        params = query(self._redirect)
        if "code" not in params:
            raise AuthorizationRefused(params.get("error", "no code"))
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Client]:
        if self.server.transport == "sse":
            transport: Any = sse_client(self.server.mcp_url, auth=self.oauth)
            async with Client(transport) as client:
                yield client
        else:
            async with (
                httpx2.AsyncClient(auth=self.oauth, timeout=30) as http,
                Client(streamable_http_client(self.server.mcp_url, http_client=http)) as client,
            ):
                yield client

    async def call(self, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        async with self.connect() as client:
            result = await client.call_tool(tool, arguments or {})
        return result

    async def aclose(self) -> None:
        await self.browser.aclose()

    async def __aenter__(self) -> McpUser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AuthorizationRefused(Exception):
    pass


@dataclass
class ManualClient:
    """A public client registered by hand, for tests that need to see each protocol step."""

    server: ServerProcess
    client_id: str
    redirect_uri: str = CLIENT_REDIRECT
    verifier: str = "v" * 64

    @classmethod
    async def register(cls, server: ServerProcess, redirect_uri: str = CLIENT_REDIRECT) -> ManualClient:
        async with httpx2.AsyncClient(timeout=10) as http:
            response = await http.post(
                f"{server.url}/register",
                json={"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none", "client_name": "Manual"},
            )
        assert response.status_code == 201, response.text
        return cls(server, response.json()["client_id"], redirect_uri)

    def authorize_url(self, state: str = "client-state-123", **extra: str) -> str:
        from urllib.parse import urlencode

        from ghmcp.auth.keys import s256

        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "code_challenge": s256(self.verifier),
            "code_challenge_method": "S256",
            "state": state,
            "resource": self.server.mcp_url,
        } | extra
        return f"{self.server.url}/authorize?{urlencode(params)}"

    async def sign_in(self, **extra: str) -> dict[str, str]:
        """Run the browser leg; returns the query the client's redirect URI received."""
        async with Browser() as browser:
            return query(await browser.run(self.authorize_url(**extra), stop_at=self.redirect_uri))

    async def token(self, **form: str) -> httpx2.Response:
        async with httpx2.AsyncClient(timeout=10) as http:
            return await http.post(f"{self.server.url}/token", data={"client_id": self.client_id} | form)

    async def exchange(self, code: str) -> httpx2.Response:
        return await self.token(
            grant_type="authorization_code", code=code, redirect_uri=self.redirect_uri, code_verifier=self.verifier
        )


async def mcp_status(server: ServerProcess, bearer: str) -> int:
    """HTTP status of an MCP `initialize` sent with `bearer`: 200 when the token is accepted."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "0"},
        },
    }
    headers = {
        "Authorization": f"Bearer {bearer}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    async with httpx2.AsyncClient(timeout=10) as http:
        if server.transport == "sse":
            async with http.stream("GET", server.mcp_url, headers=headers) as response:
                return response.status_code
        response = await http.post(server.mcp_url, json=body, headers=headers)
        return response.status_code


# Token-lifecycle helpers (refresh, revocation, GitHub tokens, scopes).


@dataclass
class SignedIn:
    """One completed sign-in of a `ManualClient`: the code it used and the /token answer."""

    client: ManualClient
    code: str
    tokens: dict[str, Any]

    @property
    def access(self) -> str:
        return str(self.tokens["access_token"])

    @property
    def refresh(self) -> str:
        return str(self.tokens["refresh_token"])


async def sign_in_tokens(
    server: ServerProcess, *, client: ManualClient | None = None, scope: str | None = None
) -> SignedIn:
    """Register (unless given a client), sign in through the browser and exchange the code."""
    client = client or await ManualClient.register(server)
    params = await (client.sign_in(scope=scope) if scope else client.sign_in())
    assert "code" in params, params
    response = await client.exchange(params["code"])
    assert response.status_code == 200, response.text
    return SignedIn(client, params["code"], response.json())


async def refresh_grant(client: ManualClient, refresh_token: str, **form: str) -> httpx2.Response:
    return await client.token(grant_type="refresh_token", refresh_token=refresh_token, **form)


async def revoke_request(server: ServerProcess, client_id: str, token: str, **form: str) -> httpx2.Response:
    """RFC 7009 revocation as a public client sends it: no client_secret field unless given."""
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.post(f"{server.url}/revoke", data={"client_id": client_id, "token": token} | form)


async def tool_call_request(
    server: ServerProcess, bearer: str, tool: str, arguments: dict[str, Any] | None = None
) -> httpx2.Response:
    """A bare JSON-RPC `tools/call` POST (no session): enough to see the scope check's answer."""
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": arguments or {}}}
    headers = {
        "Authorization": f"Bearer {bearer}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-06-18",
    }
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.post(server.mcp_url, json=body, headers=headers)


@contextlib.asynccontextmanager
async def bearer_client(server: ServerProcess, bearer: str, **options: Any) -> AsyncIterator[Client]:
    """An MCP client with a fixed bearer token that never runs OAuth (streamable HTTP); `options` go to `Client`."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=30) as http,
        Client(streamable_http_client(server.mcp_url, http_client=http), **options) as client,
    ):
        yield client


@contextlib.contextmanager
def server_db(server: ServerProcess) -> Iterator[sqlite3.Connection]:
    """The server's SQLite store, opened beside the running server (WAL allows it)."""
    db = sqlite3.connect(server.data_dir / "mcp.sqlite3", isolation_level=None, timeout=10)
    try:
        yield db
    finally:
        db.close()


# Hand-driven OAuth steps, for tests that look at each hop (consent, admission, abuse, browser).


@dataclass
class AuthorizeRequest:
    """An `/authorize` URL built by hand with PKCE (S256), and what its client must remember."""

    url: str
    client_id: str
    redirect_uri: str
    state: str
    verifier: str


async def register_client(
    http: httpx2.AsyncClient, server_url: str, redirect_uris: list[str], client_name: str = "Hand-made Client"
) -> str:
    """Dynamic client registration (RFC 7591) of a public client; returns its client_id."""
    response = await http.post(
        f"{server_url}/register",
        json={"redirect_uris": redirect_uris, "token_endpoint_auth_method": "none", "client_name": client_name},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["client_id"])


def authorize_request(
    server_url: str, client_id: str, redirect_uri: str, scope: str = "user", state: str | None = None
) -> AuthorizeRequest:
    import secrets
    from urllib.parse import urlencode

    from tests.fake_github import pkce_challenge

    verifier = secrets.token_urlsafe(48)
    state = state or secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
        "state": state,
        "scope": scope,
    }
    return AuthorizeRequest(f"{server_url}/authorize?{urlencode(params)}", client_id, redirect_uri, state, verifier)


async def open_consent(http: httpx2.AsyncClient, auth: AuthorizeRequest) -> httpx2.Response:
    """GET `/authorize` and the consent URL it leads to: the page (200) or, if remembered, the redirect to GitHub."""
    response = await http.get(auth.url)
    assert response.status_code == 302, response.text
    consent_url = response.headers["location"]
    assert urlsplit(consent_url).path == "/consent", consent_url
    return await http.get(consent_url)


async def submit_consent(http: httpx2.AsyncClient, page: httpx2.Response, action: str) -> httpx2.Response:
    """Press a button of the consent form `page`, as a browser with this client's cookies would."""
    assert page.status_code == 200 and 'action="/consent"' in page.text, page.text
    return await http.post(urljoin(str(page.url), "/consent"), data=consent_form(page.text, action))


async def through_github(http: httpx2.AsyncClient, github_authorize_url: str) -> httpx2.Response:
    """Let the fake GitHub answer its authorize URL, then deliver its callback redirect to our server."""
    at_github = await http.get(github_authorize_url)
    assert at_github.status_code == 302, at_github.text
    return await http.get(at_github.headers["location"])


async def approve_sign_in(http: httpx2.AsyncClient, auth: AuthorizeRequest) -> dict[str, str]:
    """A whole approval in one browser: returns the query the client's redirect URI receives."""
    step = await open_consent(http, auth)
    if step.status_code == 200:
        step = await submit_consent(http, step, "approve")
    assert step.status_code == 303, step.text
    callback = await through_github(http, step.headers["location"])
    assert callback.status_code == 302, callback.text
    assert callback.headers["location"].startswith(auth.redirect_uri)
    return query(callback.headers["location"])


async def exchange_code(
    http: httpx2.AsyncClient, server_url: str, auth: AuthorizeRequest, code: str
) -> httpx2.Response:
    return await http.post(
        f"{server_url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": auth.redirect_uri,
            "client_id": auth.client_id,
            "code_verifier": auth.verifier,
        },
    )


def table_rows(db_path: Path, table: str) -> list[dict[str, Any]]:
    """Every row of one table of a server's SQLite file, read from the test process."""
    with contextlib.closing(sqlite3.connect(db_path, timeout=10)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(f"SELECT * FROM {table}")]  # noqa: S608 (table names are ours)


def in_process_settings(monkeypatch: Any, github_url: str, data_dir: Path, **overrides: Any) -> Any:
    """`Settings` for `app.build_app` inside the test process, deaf to the developer's MCP_* and .env."""
    from pydantic import SecretStr

    from ghmcp.config import Settings

    for name in [k for k in os.environ if k.startswith("MCP_")]:
        monkeypatch.delenv(name)
    return Settings(  # type: ignore[call-arg]  # pydantic-settings' init keywords are not in its stubs
        _env_file=None,
        github_client_id="fake-client-id",
        github_client_secret=SecretStr("fake-client-secret"),
        github_url=github_url,
        github_api_url=github_url,
        storage_url=f"sqlite:///{data_dir / 'mcp.sqlite3'}",
        secret_key=SecretStr("test-secret-key-that-is-long-enough-0123456789"),
        **({"confirm_writes": False} | overrides),
    )


ALL_TOOL_SCOPES = "user repo:read repo:write"


@contextlib.asynccontextmanager
async def signed_in_client(server: ServerProcess, scope: str = ALL_TOOL_SCOPES) -> AsyncIterator[Client]:
    """Sign alice in with `scope` and connect an MCP client with the issued bearer (streamable HTTP)."""
    signed_in = await sign_in_tokens(server, scope=scope)
    async with bearer_client(server, signed_in.access) as client:
        yield client


def tool_error(result: Any) -> str:
    """The text of a tool result that must be an error."""
    assert result.is_error, result
    return " ".join(getattr(c, "text", "") for c in result.content)
