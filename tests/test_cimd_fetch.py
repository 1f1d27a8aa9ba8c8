"""Client ID Metadata Document fetches under abuse (issue "1/8 Hardening III"): one deadline per
fetch, their own small pool, a cap on fetches in flight, duplicates joined, and no IPv6 way around
the address checks."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from ghmcp.auth import cimd
from ghmcp.auth.cimd import FETCH_SECONDS, MAX_IN_FLIGHT, ClientDocuments, DocumentError, _public_address, _refused
from ghmcp.web.build import build_provider
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import CLIENT_REDIRECT, ServerProcess, bearer_client, in_process_settings, sign_in_tokens
from tests.test_cimd import authorize_url

pytestmark = pytest.mark.anyio


class Site:
    """A client's web site on loopback (raw asyncio sockets) that counts connections.

    It answers each request after `delay` seconds (with the next of `statuses`, then 200), or with
    `drip`, sends the headers and then one byte a second, forever.
    """

    def __init__(self, *, drip: bool = False, delay: float = 0.0, statuses: list[int] | None = None) -> None:
        self.drip = drip
        self.delay = delay
        self.statuses = statuses or []
        self.connections = 0
        self.port = 0
        self._stop = asyncio.Event()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, path: str = "/client.json") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Site]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            self._stop.set()
            for writer in self._writers:
                writer.close()  # a handler still reading the request sees the end of it
            await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), 5)
            await asyncio.wait_for(server.wait_closed(), 5)

    async def _stopped_after(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.add(writer)
        self.connections += 1
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ")[1].decode()
            if self.drip:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n")
                while not await self._stopped_after(1):
                    writer.write(b" ")
                    await writer.drain()
                return
            if await self._stopped_after(self.delay):
                return
            status = self.statuses.pop(0) if self.statuses else 200
            body = json.dumps(document(self.url(path))).encode()
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(handler)


def document(url: str) -> dict[str, Any]:
    return {"client_id": url, "client_name": "Example Editor", "redirect_uris": [CLIENT_REDIRECT]}


@contextlib.asynccontextmanager
async def loopback_documents() -> AsyncIterator[ClientDocuments]:
    documents = ClientDocuments([], allow_http_loopback=True)
    try:
        yield documents
    finally:
        await documents.aclose()


async def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


# The deadline


async def test_a_dripping_site_is_answered_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cimd, "FETCH_SECONDS", 1.0)
    async with Site(drip=True).running() as site, loopback_documents() as documents:
        started = time.monotonic()
        with pytest.raises(DocumentError, match="in time"):
            await asyncio.wait_for(documents.get(site.url()), 6)
        assert time.monotonic() - started < 3


@pytest.fixture(scope="module")
def dev_server(start_module_server: StartServer) -> ServerProcess:
    return start_module_server(env={"MCP_CIMD_ALLOW_HTTP_LOOPBACK": "true"})


async def test_slow_sites_named_by_anonymous_requests_neither_hang_sign_ins_nor_starve_tool_calls(
    github: FakeGitHub, dev_server: ServerProcess
) -> None:
    async def authorize(http: httpx2.AsyncClient, client_id: str) -> tuple[httpx2.Response, float]:
        started = time.monotonic()
        response = await http.get(authorize_url(dev_server, client_id))
        return response, time.monotonic() - started

    signed_in = await sign_in_tokens(dev_server, scope="user")
    limits = httpx2.Limits(max_connections=None)
    async with Site(drip=True).running() as site, httpx2.AsyncClient(timeout=FETCH_SECONDS + 10, limits=limits) as http:
        same = [asyncio.create_task(authorize(http, site.url())) for _ in range(40)]
        await asyncio.sleep(0.5)
        # More distinct URLs than the GitHub client's pool has connections (100).
        distinct = [asyncio.create_task(authorize(http, site.url(f"/client-{n}.json"))) for n in range(80)]
        await asyncio.sleep(0.5)
        async with bearer_client(dev_server, signed_in.access) as mcp:
            for _ in range(3):
                started = time.monotonic()
                result = await asyncio.wait_for(mcp.call_tool("get_user_profile", {}), 15)
                assert not result.is_error, result
                assert time.monotonic() - started < 3
        answers = await asyncio.gather(*same, *distinct)
    for response, seconds in answers:
        assert response.status_code == 400 and "location" not in response.headers
        assert seconds < FETCH_SECONDS + 5
    assert all("could not be fetched in time" in response.text for response, _ in answers[:40])
    assert any("too many client metadata documents" in response.text for response, _ in answers[40:])
    assert site.connections <= MAX_IN_FLIGHT


# Joined duplicates and the cap


async def test_concurrent_requests_for_one_url_make_one_fetch() -> None:
    async with Site(delay=0.5).running() as site, loopback_documents() as documents:
        clients = await asyncio.wait_for(asyncio.gather(*(documents.get(site.url()) for _ in range(20))), 10)
        assert {client.client_name for client in clients} == {"Example Editor"}
        assert site.connections == 1
        await documents.get(site.url())
        assert site.connections == 1  # and then cached


async def test_a_failed_fetch_reaches_every_waiter_and_is_not_kept() -> None:
    async with Site(delay=0.3, statuses=[500]).running() as site, loopback_documents() as documents:
        failures = await asyncio.wait_for(
            asyncio.gather(*(documents.get(site.url()) for _ in range(5)), return_exceptions=True), 10
        )
        assert all(isinstance(failure, DocumentError) and "HTTP 500" in str(failure) for failure in failures)
        assert site.connections == 1
        client = await asyncio.wait_for(documents.get(site.url()), 10)
        assert client.client_name == "Example Editor"
        assert site.connections == 2


async def test_a_cancelled_waiter_leaves_the_fetch_to_the_others() -> None:
    async with Site(delay=0.5).running() as site, loopback_documents() as documents:
        first = asyncio.create_task(documents.get(site.url()))
        second = asyncio.create_task(documents.get(site.url()))
        await wait_for(lambda: site.connections == 1)
        first.cancel()
        client = await asyncio.wait_for(second, 10)
        assert client.client_name == "Example Editor"
        assert first.cancelled() and site.connections == 1


async def test_fetches_beyond_the_cap_are_refused_at_once() -> None:
    async with Site(drip=True).running() as site, loopback_documents() as documents:
        waiting = [asyncio.create_task(documents.get(site.url(f"/client-{n}.json"))) for n in range(MAX_IN_FLIGHT)]
        await wait_for(lambda: site.connections == MAX_IN_FLIGHT)
        started = time.monotonic()
        with pytest.raises(DocumentError, match="too many client metadata documents"):
            await asyncio.wait_for(documents.get(site.url("/one-more.json")), 3)
        assert time.monotonic() - started < 0.5
        assert site.connections == MAX_IN_FLIGHT
        await documents.aclose()
        await asyncio.gather(*waiting, return_exceptions=True)


async def test_document_fetches_do_not_use_the_github_client(
    monkeypatch: pytest.MonkeyPatch, github_url: str, tmp_path: Path
) -> None:
    provider = build_provider(in_process_settings(monkeypatch, github_url, tmp_path, cimd_allow_http_loopback=True))
    await provider.github.http.aclose()  # whatever happens to GitHub's pool, documents have their own
    try:
        async with Site().running() as site:
            client = await asyncio.wait_for(provider.clients.documents.get(site.url()), 10)
        assert client.client_name == "Example Editor"
    finally:
        await provider.clients.documents.aclose()
        await provider.storage.close()


# Addresses


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254, cloud metadata
        "64:ff9b::808:808",  # NAT64 of a public address: refused all the same
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64
        "2002:a9fe:a9fe::1",  # 6to4
        "::a9fe:a9fe",  # IPv4-compatible
        "::ffff:169.254.169.254",  # IPv4-mapped
        "::ffff:0:a9fe:a9fe",  # IPv4-translated
        "2001:0:4136:e378:8000:63bf:3f57:fdf2",  # Teredo
        "169.254.169.254",
        "10.0.0.7",
        "::1",
        "fe80::1",
        "ff02::1",
    ],
)
def test_addresses_that_reach_inside_are_refused(address: str) -> None:
    assert _refused(ipaddress.ip_address(address), allow_loopback=False)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not _refused(ipaddress.ip_address(address), allow_loopback=False)


def test_only_loopback_itself_is_allowed_in_development() -> None:
    assert not _refused(ipaddress.ip_address("::1"), allow_loopback=True)
    assert not _refused(ipaddress.ip_address("127.0.0.1"), allow_loopback=True)
    assert _refused(ipaddress.ip_address("::ffff:127.0.0.1"), allow_loopback=True)
    assert _refused(ipaddress.ip_address("10.0.0.7"), allow_loopback=True)


async def test_a_nat64_literal_host_is_refused_before_any_connection() -> None:
    with pytest.raises(DocumentError, match="not on a public address"):
        await _public_address("64:ff9b::a9fe:a9fe", 443, allow_loopback=False)
