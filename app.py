"""Composition: settings in, one ASGI application out. No logic of its own lives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer, RequestStateSecurity
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import audit
import demo
from bearer import BearerGate
from consent import BrowserCookies
from crypto import Keyring, load_or_create_secret_key
from github_api import GitHubClient, new_http_client
from github_provider import GitHubOAuthProvider
from ratelimit import RateLimit, counters_for
from routes import server_routes
from scopes import DEFAULT_SCOPES, SCOPES, ScopeCheck, require_declared_scopes
from settings import ConfigError, Settings
from storage import StorageURLError, StoreUnavailable, open_storage
from storage.sqlite import sqlite_path
from tools import register_tools
from unavailable import Unavailable

logger = logging.getLogger("mcp_server")

MCP_PATHS = {"/mcp", "/sse", "/messages"}


def build_provider(settings: Settings) -> GitHubOAuthProvider:
    """The provider with its store, keys and GitHub client; raises ConfigError for bad settings."""
    try:
        storage = open_storage(
            settings.storage_url,
            unused_client_seconds=settings.unused_client_seconds,
            idle_client_seconds=settings.idle_client_seconds,
        )
    except StorageURLError as exc:
        raise ConfigError(str(exc)) from None
    github = GitHubClient(
        new_http_client(),
        settings.github_url,
        settings.github_api_url,
        settings.github_client_id,
        settings.github_client_secret.get_secret_value(),
        cache_bytes=settings.github_cache_bytes,
    )
    return GitHubOAuthProvider(settings, storage, Keyring(key_ring(settings)), github)


def key_ring(settings: Settings) -> list[str]:
    configured = settings.secret_key.get_secret_value() if settings.secret_key is not None else None
    path = sqlite_path(settings.storage_url)
    if configured is None and path is None:
        # A key generated per host would differ between replicas sharing the store.
        raise ConfigError("MCP_SECRET_KEY must be set when MCP_STORAGE_URL is not SQLite: every replica needs it.")
    return load_or_create_secret_key(configured, path.parent if path else Path("."))


async def check_startup(settings: Settings) -> None:
    """Before serving: the key ring must read the store, and allow-lists apply to existing sign-ins."""
    audit.configure(settings.audit_log)  # sign-ins ended below are audited too
    provider = build_provider(settings)
    try:
        checks = provider.keyring.check_values()
        try:
            stored = await provider.storage.key_check()
        except StoreUnavailable:
            raise ConfigError(
                "MCP_STORAGE_URL names a store that cannot be reached: start it, or fix the URL."
            ) from None
        if stored is not None and stored not in checks:
            raise ConfigError(
                "MCP_SECRET_KEY cannot read the stored data (it is not the key it was written with): "
                "restore the old key, or put the new key first and the old one after it, comma-separated."
            )
        if stored != checks[0]:
            await provider.storage.set_key_check(checks[0])
        ended = await provider.enforce_admission()
        if ended:
            logger.info("Ended %d sign-ins that the allow-lists no longer admit", ended)
    finally:
        await provider.github.http.aclose()
        await provider.documents.aclose()
        await provider.storage.close()


def build_app(settings: Settings) -> Starlette:
    audit.configure(settings.audit_log)
    provider = build_provider(settings)
    auth = AuthSettings.model_validate(
        {
            "issuer_url": settings.server_url,  # validated from a string: no trailing slash is added
            "resource_server_url": settings.resource_url,
            "validate_token_resource": True,
            "client_registration_options": ClientRegistrationOptions(
                enabled=True, valid_scopes=list(SCOPES), default_scopes=DEFAULT_SCOPES
            ),
            "revocation_options": RevocationOptions(enabled=True),
        }
    )
    # Shared keys: a request state sealed by one replica opens on every other.
    request_state = RequestStateSecurity(keys=provider.keyring.request_state_keys())
    mcp = MCPServer(settings.app_name, auth_server_provider=provider, auth=auth, request_state_security=request_state)
    mcp.middleware.append(ScopeCheck(mcp))  # the one scope decision, on what the SDK decoded
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # the SDK's log setup would print every GitHub URL
    register_tools(mcp, provider)
    require_declared_scopes(mcp)

    security = transport_security(settings)
    if settings.transport == "sse":
        app = mcp.sse_app(transport_security=security, host=settings.host)
    else:
        app = mcp.streamable_http_app(
            transport_security=security, host=settings.host, stateless_http=settings.stateless_http
        )

    gate_mcp_routes(app, provider, settings.resource_url, mcp)
    # Ours before the SDK's: they replace its /revoke and metadata routes of the same paths. The MCP
    # routes go first of all: no other route shares their paths, and SSE's /messages/ is matched on
    # every call (/mcp and /sse never reach the router: DirectToMcp hands them to their gate).
    ours = server_routes(settings, provider, BrowserCookies(settings, provider.keyring), auth, list(SCOPES))
    mcp_routes = [r for r in app.router.routes if isinstance(r, (Route, Mount)) and r.path in MCP_PATHS]
    others = [r for r in app.router.routes if r not in mcp_routes]
    app.router.routes[:] = [*mcp_routes, *ours, *others]
    app.state.provider = provider  # for benchmarks and in-process tests
    if settings.demo:
        demo.mount(app, settings)
    app.router.lifespan_context = _lifespan(app.router.lifespan_context, settings, provider)
    app.add_middleware(RequestLog)
    app.add_middleware(
        RateLimit,
        limit=settings.rate_limit,
        registration_limit=settings.registration_rate_limit,
        trusted_proxies=settings.trusted_proxies,
        counters=counters_for(provider.storage, settings.storage_url),
    )
    app.add_middleware(Unavailable, app_name=settings.app_name)
    app.add_middleware(DirectToMcp, endpoints=direct_endpoints(app))
    return app


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


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection that also admits the public host of MCP_SERVER_URL."""
    public = urlsplit(settings.server_url)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", public.netloc]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", f"{public.scheme}://{public.netloc}"]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]


def _lifespan(inner: Lifespan, settings: Settings, provider: GitHubOAuthProvider) -> Lifespan:
    """The SDK's lifespan, plus the periodic sweep and closing what `build_app` opened."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(_sweep_forever(settings, provider))
        try:
            async with inner(app):
                yield
        finally:
            sweeper.cancel()
            await provider.github.http.aclose()
            await provider.documents.aclose()
            await provider.storage.close()

    return lifespan


async def _sweep_forever(settings: Settings, provider: GitHubOAuthProvider) -> None:
    while True:
        await asyncio.sleep(settings.sweep_interval_seconds)
        try:
            removed = await provider.sweep()
        except StoreUnavailable:
            logger.warning("Sweep skipped: the store is unreachable; trying again next interval")
            continue
        except Exception:  # a busy database must not end the sweeping for good
            logger.exception("Sweep failed; trying again next interval")
            continue
        if any(removed.values()):
            logger.info("Swept expired rows: %s", removed)


class RequestLog:
    """Access log without query strings: they carry codes and states (uvicorn's own log is off).

    Lines for the MCP endpoints are DEBUG (`main.py --log-level debug` shows them): at INFO, one line per
    tool call would cost about as much CPU as authenticating it. Every other path (sign-in, tokens,
    metadata) is logged at INFO. A request that will not be logged passes through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        level = logging.DEBUG if scope["path"].rstrip("/") in MCP_PATHS else logging.INFO
        if not logger.isEnabledFor(level):
            await self.app(scope, receive, send)
            return
        status = 0

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            logger.log(level, "%s %s %s", scope["method"], scope["path"], status or "-")


class EscapingFormatter(logging.Formatter):
    """Log lines whose request-controlled parts (paths, names, URLs) cannot forge other lines.

    OWASP logging: control characters (`%0A` in a path is a real newline by then) are escaped in
    every message, from this server, the SDK or uvicorn. Tracebacks are added after, unescaped.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    return _CONTROLS.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
