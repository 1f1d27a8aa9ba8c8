"""Redis failing under running replicas (real redis-server): after a restart no request fails on a
connection that died while Redis was away, and a reply lost mid-request is a 503 that never runs a
single-use step twice."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ghmcp.storage import lua
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.redis_support import running_redis
from tests.support import ManualClient, ServerProcess, bearer_client, mcp_status, sign_in_tokens
from tests.test_replicas import start_pair

pytestmark = pytest.mark.anyio

WARM = 8  # concurrent requests per replica: several pooled connections each


async def profile_login(server: ServerProcess, access: str) -> str:
    async with bearer_client(server, access) as client:
        result = await client.call_tool("get_user_profile", {})
    assert result.is_error is False and result.structured_content is not None, result
    return str(result.structured_content["login"])


async def test_after_a_redis_restart_every_request_on_warm_replicas_succeeds(
    start_server: StartServer, github: FakeGitHub, tmp_path: Path
) -> None:
    with running_redis(tmp_path / "redis") as redis_server:
        a, b = start_pair(start_server, redis_server.url)
        signed = await sign_in_tokens(a)
        for server in (a, b):  # warm both pools: store, token cache misses and rate-limit counters
            assert await asyncio.gather(*(mcp_status(server, signed.access) for _ in range(WARM))) == [200] * WARM
            await asyncio.gather(*(ManualClient.register(server) for _ in range(WARM)))

        await asyncio.to_thread(redis_server.stop)  # the replicas keep running: their idle connections die
        await asyncio.to_thread(redis_server.start)  # same port, same data (append-only file)

        for server in (a, b):
            # Registration passes the rate limiter's counters first, then the store.
            await asyncio.gather(*(ManualClient.register(server) for _ in range(WARM)))
            assert await asyncio.gather(*(mcp_status(server, signed.access) for _ in range(WARM))) == [200] * WARM
            client = await ManualClient.register(server)
            params = await client.sign_in(resource=a.mcp_url)  # the deployment's one public URL is A's
            fresh = await client.exchange(params["code"])
            assert fresh.status_code == 200, fresh.text
            assert await profile_login(server, fresh.json()["access_token"]) == "alice"
            assert await profile_login(server, signed.access) == "alice"


class LossyProxy:
    """A TCP proxy in front of Redis that can lose one reply: once the client has sent the script
    `watched`, the next reply to it never arrives, and `on_loss` runs (Redis ran the script)."""

    def __init__(self, redis_port: int, watched: str, on_loss: Callable[[], Awaitable[None]]) -> None:
        self.redis_port = redis_port
        self.sha = hashlib.sha1((lua.PRELUDE + watched).encode()).hexdigest().encode()  # noqa: S324 (Redis's script id)
        self.on_loss = on_loss
        self.sent = 0  # how many times the watched script went to Redis
        self.armed = False

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        except OSError:  # Redis is down: so is the proxy's connection
            writer.close()
            return
        lose_next = asyncio.Event()

        async def to_redis() -> None:
            while data := await reader.read(65536):
                if self.sha in data:
                    self.sent += 1
                    if self.armed:
                        self.armed = False
                        lose_next.set()
                upstream_writer.write(data)
                await upstream_writer.drain()

        async def to_client() -> None:
            while data := await upstream_reader.read(65536):
                if lose_next.is_set():
                    await self.on_loss()
                    return
                writer.write(data)
                await writer.drain()

        with contextlib.suppress(OSError, asyncio.CancelledError):  # cancelled: the test ended first
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(to_redis()), asyncio.ensure_future(to_client())],
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in pending:
                task.cancel()
        for w in (writer, upstream_writer):
            w.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.close()


@pytest.mark.parametrize("loss", ["connection", "redis"])
async def test_a_code_exchange_whose_reply_is_lost_is_a_503_and_is_never_redeemed_twice(
    start_server: StartServer, github: FakeGitHub, tmp_path: Path, loss: str
) -> None:
    """`connection`: the reply is lost on the way and Redis is up, so a resend would reach it.
    `redis`: Redis dies after running the exchange, before replying."""
    with running_redis(tmp_path / "redis") as redis_server:

        async def lose() -> None:
            if loss == "redis":
                await asyncio.to_thread(redis_server.stop)

        proxy = LossyProxy(redis_server.port, lua.REDEEM_CODE, lose)
        async with proxy.running() as url:
            server = await asyncio.to_thread(start_server, env={"MCP_STORAGE_URL": url})  # the proxy runs here
            client = await ManualClient.register(server)
            await sign_in_tokens(server, client=client)  # Redis knows the script now: no NOSCRIPT round
            before = proxy.sent
            assert before > 0  # the proxy recognises the script as redis-py sends it
            code = (await client.sign_in())["code"]

            proxy.armed = True
            lost = await client.exchange(code)
            assert lost.status_code == 503, lost.text
            assert lost.json()["error"] == "temporarily_unavailable"
            assert proxy.sent == before + 1  # sent once, never resent

            if loss == "redis":
                await asyncio.to_thread(redis_server.start)
            retried = await client.exchange(code)
            # RFC 6749 §4.1.2: a code is used once; the exchange Redis ran stays the only one.
            assert retried.status_code == 400 and retried.json()["error"] == "invalid_grant", retried.text
            assert (await sign_in_tokens(server, client=client)).access  # and the server works on
