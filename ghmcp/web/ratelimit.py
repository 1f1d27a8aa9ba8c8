"""Admission of anonymous traffic: per-client-address rate limits and request body bounds.

Counting is done by the `limits` library (moving window): in memory, per process, or in the
shared Redis store so that the limits hold across replicas (`counters_for`). The client's
address is decided here, for the requests that are counted or bounded (`client_origin`; MCP
requests pass straight through), and only `MCP_TRUSTED_PROXIES` decides whose
`X-Forwarded-For` is believed: uvicorn's own proxy-header handling is off.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.storage import Storage as Counters
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from starlette.types import ASGIApp, Receive, Scope, Send

from ghmcp.asgi.bodies import read_at_most, replay
from ghmcp.asgi.origin import client_origin, origin_key
from ghmcp.storage import Storage, StoreUnavailable
from ghmcp.storage.redis_store import RedisStorage as SharedStore

LIMITED = {
    ("GET", "/authorize"),
    ("POST", "/authorize"),
    ("GET", "/consent"),
    ("POST", "/consent"),
    ("POST", "/token"),
    ("POST", "/revoke"),
    ("GET", "/account/sign-in"),
    ("POST", "/account"),
    ("GET", "/github/callback"),
}
REGISTRATION = ("POST", "/register")
# Bodies of the form and JSON endpoints anyone may call; multipart is never needed there.
MAX_BODY = {path: 16 * 1024 for path in ("/consent", "/revoke", "/token", "/authorize", "/account")}
MAX_BODY["/register"] = 32 * 1024  # ten 2,000-character redirect URIs and the other fields


def counters_for(storage: Storage, storage_url: str) -> Counters:
    """Counters in the same Redis as the store (sharing its connection pool), else in this process's memory."""
    if not isinstance(storage, SharedStore):
        return MemoryStorage()
    uri = f"async+{storage_url}"
    # limits passes `connection_pool` on to redis-py, though its signature types options as scalars.
    pool: Any = storage.pool
    return RedisStorage(uri, implementation="redispy", connection_pool=pool, wrap_exceptions=True)


class RateLimit:
    def __init__(
        self, app: ASGIApp, limit: str, registration_limit: str, trusted_proxies: list[str], counters: Counters
    ) -> None:
        self.app = app
        self.item = parse(limit)
        self.registration_item = parse(registration_limit)
        self.limiter = MovingWindowRateLimiter(counters)
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Starlette answers HEAD wherever it answers GET, running the same handler: count it as GET.
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        item = self._item(method, scope["path"])
        limit = MAX_BODY.get(scope["path"]) if method == "POST" else None
        if item is None and limit is None:
            await self.app(scope, receive, send)  # MCP and metadata requests: nothing to count or bound
            return
        origin = origin_key(self.client_ip(scope))
        client_origin.set(origin)
        if item is not None and not await self._hit(item, scope["path"], origin):
            reset = (await self.limiter.get_window_stats(item, scope["path"], origin)).reset_time
            await _json_error(
                send, 429, "rate_limited", "Too many requests; slow down.", max(1, math.ceil(reset - time.time()))
            )
            return
        if limit is None:
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").lower()
        if content_type.startswith(b"multipart/"):
            await _json_error(send, 415, "invalid_request", "Send application/x-www-form-urlencoded or JSON.")
            return
        body = await read_at_most(receive, limit)
        if body is None:
            await _json_error(send, 413, "invalid_request", f"The request body is larger than {limit} bytes.")
            return
        await self.app(scope, replay(body, receive), send)

    async def _hit(self, item: RateLimitItem, path: str, origin: str) -> bool:
        try:
            return await self.limiter.hit(item, path, origin)
        except StorageError as exc:
            raise StoreUnavailable("the rate-limit counters are unreachable") from exc

    def _item(self, method: str, path: str) -> RateLimitItem | None:
        if (method, path) == REGISTRATION:
            return self.registration_item
        return self.item if (method, path) in LIMITED else None

    def client_ip(self, scope: Scope) -> str:
        """The peer address, or the nearest untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
        peer = scope["client"][0] if scope.get("client") else "unknown"
        if not self._trusted(peer):
            return str(peer)
        forwarded = [value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"]
        hops = [h.strip() for h in ",".join(forwarded).split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return str(peer)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)


async def _json_error(send: Send, status: int, error: str, description: str, retry_after: int | None = None) -> None:
    body = json.dumps({"error": error, "error_description": description}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
