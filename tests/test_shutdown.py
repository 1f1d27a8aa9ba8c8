"""Shutdown: SIGTERM (docker stop, systemd, kill) and Ctrl+C let in-flight requests finish within a bound,
close the store, remove the demo's temporary directory, and exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from ghmcp.web.serve import GRACEFUL_SHUTDOWN_SECONDS
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import ServerProcess, sign_in_tokens

pytestmark = pytest.mark.anyio

STOPPED_WITHIN = GRACEFUL_SHUTDOWN_SECONDS + 5  # the bound, plus closing the store and leaving Python


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_demo_removes_its_temporary_directory(tmp_path: Path, stop: signal.Signals) -> None:
    server = ServerProcess("", tmp_path, demo=True)
    server.start()
    try:
        found = re.search(r"the store and its key are temporary, in (\S+), removed at exit", server.log())
        assert found is not None, server.log()
        data_dir = Path(found.group(1))
        assert (data_dir / "mcp.sqlite3").exists()
        assert server.process is not None
        server.process.send_signal(stop)
        assert server.process.wait(timeout=STOPPED_WITHIN) == 0, server.log()
    finally:
        server.stop()
    assert not data_dir.exists()
    assert "Application shutdown complete" in server.log()


async def test_sigterm_answers_an_in_flight_tool_call_then_exits_0(
    start_server: StartServer, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server()
    async with slow_tool_call(server, github, monkeypatch, github_seconds=2) as (call, process):
        process.send_signal(signal.SIGTERM)
        response = await asyncio.wait_for(call, 10)
        answered = time.monotonic()
        assert response.status_code == 200 and '\\"login\\": \\"alice\\"' in response.text, response.text
        assert await asyncio.to_thread(process.wait, STOPPED_WITHIN) == 0, server.log()
        assert time.monotonic() - answered < 3  # the client's open event stream did not hold it to the bound
    # The store was closed: SQLite folds its write-ahead log back into the file when the last connection closes.
    assert not (server.data_dir / "mcp.sqlite3-wal").exists()
    assert "Application shutdown complete" in server.log()


async def test_sigterm_ends_a_request_that_outlasts_the_bound(
    start_server: StartServer, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server()
    async with slow_tool_call(server, github, monkeypatch, github_seconds=60) as (call, process):
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, STOPPED_WITHIN) == 0, server.log()
        assert time.monotonic() - signalled >= GRACEFUL_SHUTDOWN_SECONDS - 1  # it was given its time
        with pytest.raises(httpx2.HTTPError):
            (await call).raise_for_status()  # cut off, not answered
    assert "timeout graceful shutdown exceeded" in server.log()
    assert not (server.data_dir / "mcp.sqlite3-wal").exists()


@contextlib.asynccontextmanager
async def slow_tool_call(
    server: ServerProcess, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, github_seconds: float
) -> AsyncIterator[tuple[asyncio.Task[httpx2.Response], subprocess.Popen[bytes]]]:
    """A `get_user_profile` call in flight on an MCP session of its own, its GitHub request held for
    `github_seconds`, its answer streamed (protocol 2025-06-18), beside the event stream such a client holds
    open; yields the call's task (its HTTP response) and the server's process."""
    assert server.process is not None
    async with httpx2.AsyncClient(timeout=STOPPED_WITHIN + 5) as http:
        headers = await _open_session(http, server, (await sign_in_tokens(server, scope="user")).access)
        stream_open = asyncio.Event()
        stream = asyncio.create_task(_hold_event_stream(http, server.mcp_url, headers, stream_open))
        await asyncio.wait_for(stream_open.wait(), 10)
        monkeypatch.setattr(github, "latency_seconds", github_seconds)
        github.requests.clear()
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_user_profile"}}
        call = asyncio.create_task(http.post(server.mcp_url, json=body, headers=headers))
        try:
            deadline = time.monotonic() + 10
            while ("GET", "/user") not in github.requests:  # the call reached GitHub: it is in flight
                assert time.monotonic() < deadline and not call.done(), server.log()
                await asyncio.sleep(0.02)
            yield call, server.process
        finally:
            call.cancel()
            stream.cancel()


async def _hold_event_stream(
    http: httpx2.AsyncClient, url: str, headers: dict[str, str], opened: asyncio.Event
) -> None:
    """The GET stream for server-initiated messages that clients keep open, read until the server ends it."""
    with contextlib.suppress(httpx2.HTTPError):  # ended by the server: an incomplete chunked body
        async with http.stream("GET", url, headers=headers | {"Accept": "text/event-stream"}) as response:
            assert response.status_code == 200
            opened.set()
            async for _ in response.aiter_raw():
                pass


async def _open_session(http: httpx2.AsyncClient, server: ServerProcess, bearer: str) -> dict[str, str]:
    """`initialize` and `notifications/initialized` by hand: the headers of every later request."""
    headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json, text/event-stream"}
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}
    init = await http.post(
        server.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}, headers=headers
    )
    assert init.status_code == 200, init.text
    headers |= {"Mcp-Session-Id": init.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-06-18"}
    ready = await http.post(
        server.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    )
    assert ready.status_code == 202, ready.text
    return headers
