"""Test helpers: start the server as `main.py` does, drive the browser hops, connect MCP clients.

Everything listens on 127.0.0.1 with ports chosen by the OS, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

ROOT = Path(__file__).resolve().parent.parent
CLIENT_REDIRECT = "http://127.0.0.1:1/callback"  # nothing listens: the scripted browser stops there
Transport = Literal["streamable-http", "sse"]


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
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp" if self.transport == "streamable-http" else f"{self.url}/sse"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def environment(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("MCP_")}
        return keep | {
            "MCP_GITHUB_CLIENT_ID": "fake-client-id",
            "MCP_GITHUB_CLIENT_SECRET": "fake-client-secret",
            "MCP_GITHUB_URL": self.github_url,
            "MCP_GITHUB_API_URL": self.github_url,
            "MCP_SERVER_URL": self.url,
            "MCP_PORT": str(self.port),
            "MCP_STORAGE_URL": f"sqlite:///{self.data_dir / 'mcp.sqlite3'}",
            "MCP_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
            "MCP_RATE_LIMIT": "1000/minute",
            **self.env,
        }

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # cwd is the data directory so that no developer's .env leaks into the tests.
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--transport", self.transport],
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


class Browser:
    """A scripted browser: follows redirects by hand, keeps cookies, answers the consent page."""

    def __init__(self, consent: Literal["approve", "deny"] = "approve") -> None:
        self.http = httpx2.AsyncClient(timeout=10)
        self.consent = consent
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
                data = form_fields(response.text) | {"action": self.consent}
                method, url = "POST", urljoin(url, "/consent")
            else:
                raise BrowserStopped(response)
        raise AssertionError(f"too many hops: {self.visited}")

    async def aclose(self) -> None:
        await self.http.aclose()


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

    def __init__(self, server: ServerProcess, storage: MemoryTokens | None = None, scope: str | None = None) -> None:
        self.server = server
        self.storage = storage or MemoryTokens()
        self.browser = Browser()
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


class AuthorizationRefused(Exception):
    pass
