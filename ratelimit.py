"""Per-client-IP rate limits on the endpoints an attacker can call without a token.

Counting is done by the `limits` library (moving window, in memory: per process).
"""

from __future__ import annotations

import ipaddress
import json
import math
import time

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

LIMITED = {
    ("POST", "/register"),
    ("GET", "/authorize"),
    ("POST", "/authorize"),
    ("POST", "/consent"),
    ("POST", "/token"),
    ("GET", "/github/callback"),
}


class RateLimit:
    def __init__(self, app: ASGIApp, limit: str, trusted_proxies: list[str]) -> None:
        self.app = app
        self.item = parse(limit)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette answers HEAD wherever it answers GET, running the same handler: count it as GET.
        method = "GET" if scope.get("method") == "HEAD" else scope.get("method")
        if scope["type"] == "http" and (method, scope["path"]) in LIMITED:
            ip = self.client_ip(scope)
            if not self.limiter.hit(self.item, scope["path"], ip):
                reset = self.limiter.get_window_stats(self.item, scope["path"], ip).reset_time
                await _too_many(send, max(1, math.ceil(reset - time.time())))
                return
        await self.app(scope, receive, send)

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


async def _too_many(send: Send, retry_after: int) -> None:
    body = json.dumps({"error": "rate_limited", "error_description": "Too many requests; slow down."}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
