"""A round-robin HTTP reverse proxy in front of several replicas, as a load balancer without
sticky sessions would be: every request goes to the next replica, streams passed through."""

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
    def __init__(self) -> None:
        self.http = httpx2.AsyncClient(timeout=30)
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
        request = self.http.build_request(
            scope["method"],
            f"{upstream}{scope['path']}{query}",
            headers=[(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP],
            content=body,
        )
        response = await self.http.send(request, stream=True)
        try:
            headers = [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


@contextlib.asynccontextmanager
async def running_proxy() -> AsyncIterator[tuple[str, RoundRobin]]:
    """Serve a RoundRobin on a free port in this event loop; yields its URL and the proxy."""
    proxy = RoundRobin()
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
