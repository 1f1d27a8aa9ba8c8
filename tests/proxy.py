"""A round-robin HTTP reverse proxy in front of several replicas, as a load balancer without
sticky sessions would be: every request goes to the next replica, streams passed through. With a
bearer token it is the conformance run's signed-in front door: it adds the token and forwards the
`Host` header as sent, so the server still judges the host the caller named."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator

import httpx2
import uvicorn
from starlette.types import Receive, Scope, Send

HOP_BY_HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"upgrade"}


class RoundRobin:
    def __init__(self, bearer: str | None = None) -> None:
        self.http = httpx2.AsyncClient(timeout=30)
        self.bearer = bearer
        self.route_to([])

    def route_to(self, upstreams: list[str]) -> None:
        """The replicas' base URLs (set after the proxy listens: they need its URL as MCP_SERVER_URL)."""
        self.upstreams = itertools.cycle(upstreams)
        self.counts: dict[str, int] = dict.fromkeys(upstreams, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        upstream = next(self.upstreams)
        self.counts[upstream] += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        query = f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
        dropped = HOP_BY_HOP if self.bearer is None else HOP_BY_HOP - {b"host"} | {b"authorization"}
        headers = [(k, v) for k, v in scope["headers"] if k not in dropped]
        if self.bearer is not None:
            headers.append((b"authorization", f"Bearer {self.bearer}".encode()))
        request = self.http.build_request(
            scope["method"], f"{upstream}{scope['path']}{query}", headers=headers, content=body
        )
        response = await self.http.send(request, stream=True)
        # A caller that hangs up ends the relay too: an open stream would otherwise outlive it.
        relay = asyncio.create_task(_relay(response, send))
        hang_up = asyncio.create_task(_disconnected(receive))
        try:
            await asyncio.wait({relay, hang_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            relay.cancel()
            hang_up.cancel()
            await asyncio.gather(relay, hang_up, return_exceptions=True)
            await response.aclose()
        if not relay.cancelled():
            relay.result()  # the relay's own failure, if any, is the request's


async def _relay(response: httpx2.Response, send: Send) -> None:
    headers = [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    async for chunk in response.aiter_raw():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@contextlib.asynccontextmanager
async def running_proxy(bearer: str | None = None) -> AsyncIterator[tuple[str, RoundRobin]]:
    """Serve a RoundRobin on a free port in this event loop; yields its URL and the proxy."""
    proxy = RoundRobin(bearer)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(proxy, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, no event)
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", proxy
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await proxy.http.aclose()
        sock.close()
