"""The MCP endpoints' path through the app: straight to the bearer gate, with the methods they take.

MCP calls are the hot path: every tool call of every user. `build.py` puts `BearerGate` in place of
the SDK's three bearer layers and hands `/mcp` and `/sse` to it directly (`DirectToMcp`), past the
layers that have nothing to do for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.mcpserver import MCPServer
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ghmcp.auth.bearer import BearerGate
from ghmcp.web.access_log import MCP_PATHS, RequestLog
from github_provider import GitHubOAuthProvider

logger = logging.getLogger("mcp_server")


def direct_endpoints(app: Starlette) -> dict[str, ASGIApp]:
    """The gated MCP endpoints by exact path (`/mcp`, `/sse`; SSE's `/messages/` mount stays routed)."""
    routes = [r for r in app.router.routes if isinstance(r, Route) and r.path in MCP_PATHS]
    # The router would answer 405 to a method a route does not take (GET only for /sse): so do we.
    endpoints = {r.path: r.app if r.methods is None else MethodsOnly(r.app, r.methods) for r in routes}
    if logger.isEnabledFor(logging.DEBUG):  # main.py --log-level debug: their access lines too
        endpoints = {path: RequestLog(endpoint) for path, endpoint in endpoints.items()}
    return endpoints


class DirectToMcp:
    """MCP calls go straight to their gate (bearer.py); every other request on through the app.

    MCP calls are the hot path: every tool call of every user. The layers in between have nothing
    to do for them: RateLimit neither counts nor bounds MCP paths, RequestLog writes their lines
    only at DEBUG, the gate answers a store outage with the same 503 as Unavailable, and Starlette's
    router would only find the same endpoint by the same path. Errors still reach Starlette's
    ServerErrorMiddleware, which wraps this layer.
    """

    def __init__(self, app: ASGIApp, endpoints: dict[str, ASGIApp]) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get(scope["path"]) if scope["type"] == "http" else None
        await (endpoint or self.app)(scope, receive, send)


class MethodsOnly:
    """405 with `Allow` to any method the route does not take, as Starlette's router answers."""

    def __init__(self, app: ASGIApp, methods: Iterable[str]) -> None:
        self.app = app
        self.methods = frozenset(methods)
        self.allow = ", ".join(sorted(self.methods)).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in self.methods:
            await self.app(scope, receive, send)
            return
        headers = [(b"allow", self.allow), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 405, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def gate_mcp_routes(app: Starlette, provider: GitHubOAuthProvider, resource_url: str, mcp: MCPServer) -> None:
    """Put bearer.BearerGate in place of the SDK's three bearer layers: the same checks, one ASGI hop.

    The SDK's two app-wide layers go (no other route reads `scope["user"]`); its per-endpoint
    `RequireAuthMiddleware` is unwrapped, and the gate wraps every MCP endpoint whatever it finds.
    """
    sdk_layers: tuple[object, ...] = (AuthenticationMiddleware, AuthContextMiddleware)
    app.user_middleware[:] = [m for m in app.user_middleware if m.cls not in sdk_layers]
    metadata = str(build_resource_metadata_url(AnyHttpUrl(resource_url)))
    for route in app.router.routes:
        if isinstance(route, (Route, Mount)) and route.path in MCP_PATHS:
            inner = route.app.app if isinstance(route.app, RequireAuthMiddleware) else route.app
            route.app = BearerGate(inner, provider.load_access_token, resource_url, metadata, mcp)
