"""Serving the built app: the listening sockets, uvicorn, and a shutdown that lets answers finish.

main.py binds here rather than leaving it to uvicorn, so that a taken port is one sentence (uvicorn
would first log its startup, then a bare errno, and exit 3). SIGTERM and Ctrl+C end the server
alike: requests under way get `GRACEFUL_SHUTDOWN_SECONDS` to be answered, then the store closes.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
from typing import Any

import uvicorn
from sse_starlette.sse import AppStatus
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from ghmcp.config import FLAGS, ConfigError, Settings

# How long in-flight requests get to finish after SIGTERM or Ctrl+C before they are cancelled: under the
# 10 s that `docker stop` waits before SIGKILL, so the store is still closed in time.
GRACEFUL_SHUTDOWN_SECONDS = 8

logger = logging.getLogger("mcp_server")


def listen(settings: Settings, flags: dict[str, Any]) -> list[socket.socket]:
    """Bind here rather than in uvicorn, so that a taken port is one sentence (uvicorn would first log its
    startup, then a bare errno, and exit 3). Bound as uvicorn's asyncio would: every address the host
    resolves to, IPv6 sockets IPv6 only."""
    sockets: list[socket.socket] = []
    try:
        passive = socket.getaddrinfo(
            settings.host or None, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in set(passive):
            sockets.append(sock := socket.socket(family, kind, proto))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen()  # now, not in uvicorn: of two servers binding at once, the second fails here
    except OSError as exc:  # socket.gaierror included
        for sock in sockets:
            sock.close()
        raise ConfigError(_listen_problem(exc, settings, flags)) from None
    return sockets


def _listen_problem(exc: OSError, settings: Settings, flags: dict[str, Any]) -> str:
    where = f"Port {settings.port} on {settings.host}"
    port_by, host_by = _chosen_by("port", settings, flags), _chosen_by("host", settings, flags)
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{settings.host} is not an address of this machine ({host_by}): use 127.0.0.1, 0.0.0.0 or one of its own."
        )
    if exc.errno == errno.EADDRINUSE:
        return f"{where} is already in use ({port_by}): stop the other server or choose another port."
    if exc.errno == errno.EACCES:
        return f"{where} needs administrator rights ({port_by}): choose a port from 1024 up."
    return f"{where} cannot be listened on ({host_by}, {port_by}): {exc.strerror or exc}."


def _chosen_by(field: str, settings: Settings, flags: dict[str, Any]) -> str:
    """The flag or setting that chose this value, for a sentence naming what the person actually typed."""
    if flags[field] is not None:
        return FLAGS[field]
    setting = f"MCP_{field.upper()}"
    return setting if field in settings.model_fields_set else f"the default; {FLAGS[field]} or {setting} changes it"


def serve(app: Starlette, settings: Settings, sockets: list[socket.socket], log_level: str) -> None:
    path = "/mcp" if settings.transport == "streamable-http" else "/sse"
    logger.info("MCP endpoint: %s%s", settings.server_url, path)
    bound = [sock.getsockname() for sock in sockets]
    addresses = ", ".join(f"http://{f'[{a[0]}]' if ':' in a[0] else a[0]}:{a[1]}" for a in bound)
    logger.info("Listening on %s (Press CTRL+C to quit)", addresses)
    # Everything built so far (modules, the SDK, templates) lives as long as the process: frozen, it
    # is left out of every later garbage collection, which would otherwise walk it each time.
    gc.freeze()
    requests = RequestsInFlight(app, stream_path=path)
    # log_config=None: uvicorn logs through the root handler above, escaped like every other line.
    # access_log=False: uvicorn would log query strings, which carry OAuth codes and states.
    # proxy_headers=False: only MCP_TRUSTED_PROXIES decides whose X-Forwarded-For is believed (ratelimit.py).
    config = uvicorn.Config(
        requests,
        access_log=False,
        log_config=None,
        log_level=log_level,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    AppStatus.enable_automatic_graceful_drain = False  # DrainingServer ends the streams instead
    DrainingServer(config, requests).run(sockets=sockets)


class RequestsInFlight:
    """Knows when every request under way has been answered, the event streams clients hold open (GET on the
    MCP endpoint) aside."""

    def __init__(self, app: ASGIApp, stream_path: str) -> None:
        self.app, self.stream_path, self.count = app, stream_path, 0
        self.answered = asyncio.Event()
        self.answered.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] == "GET" and scope["path"] == self.stream_path):
            return await self.app(scope, receive, send)
        self.count += 1
        self.answered.clear()
        try:
            await self.app(scope, receive, send)
        finally:
            self.count -= 1
            if not self.count:
                self.answered.set()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose shutdown ends the event streams clients hold open only once every other request
    has been answered. sse_starlette would end every stream at the signal, cutting off the answers that the
    SDK streams to calls in progress; left open, a client's idle stream would hold shutdown to its bound.
    (With `--transport sse` answers travel on the stream itself: calls in progress there are still cut off.)"""

    def __init__(self, config: uvicorn.Config, requests: RequestsInFlight) -> None:
        super().__init__(config)
        self.requests = requests

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        ending = asyncio.create_task(self._end_streams_when_answered())
        try:
            await super().shutdown(sockets)
        finally:
            ending.cancel()

    async def _end_streams_when_answered(self) -> None:
        await self.requests.answered.wait()
        AppStatus.should_exit = True
