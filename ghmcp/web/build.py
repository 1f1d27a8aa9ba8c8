"""Composition: settings in, one ASGI application out. No logic of its own lives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer, RequestStateSecurity
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from ghmcp import audit, sdk
from ghmcp.asgi.unavailable import Unavailable
from ghmcp.auth.confirm import ConfirmWrites
from ghmcp.auth.keys import Keyring, load_or_create_secret_key
from ghmcp.auth.scopes import DEFAULT_SCOPES, SCOPES, ScopeCheck, require_declared_scopes
from ghmcp.config import ConfigError, Settings
from ghmcp.observe import Observer
from ghmcp.observe.store import unwrapped
from ghmcp.storage import StorageURLError, StoreUnavailable, open_storage
from ghmcp.storage.redis_pool import tls_refusal
from ghmcp.storage.sqlite import sqlite_path
from ghmcp.upstream.api import GitHubClient, new_http_client
from ghmcp.web import container_check, demo, identity
from ghmcp.web.access_log import MCP_PATHS, RequestLog
from ghmcp.web.consent import BrowserCookies
from ghmcp.web.mcp_routes import DirectToMcp, direct_endpoints, gate_mcp_routes
from ghmcp.web.ratelimit import RateLimit, counters_for
from ghmcp.web.routes import server_routes
from github_provider import GitHubOAuthProvider
from tools import register_tools
from tools.arguments import ArgumentErrors
from tools.resources import CACHE_HINTS

logger = logging.getLogger("mcp_server")


def build_provider(settings: Settings, observer: Observer | None = None) -> GitHubOAuthProvider:
    """The provider with its store, keys and GitHub client; raises ConfigError for bad settings. With an
    `observer` (metrics or tracing on), the store and the GitHub client are wrapped to be timed and traced."""
    try:
        storage = open_storage(
            settings.storage_url,
            unused_client_seconds=settings.unused_client_seconds,
            idle_client_seconds=settings.idle_client_seconds,
            redis_ca_file=settings.redis_ca_file,
        )
    except StorageURLError as exc:
        raise ConfigError(str(exc)) from None
    if observer is not None:
        storage = observer.store(storage, settings.storage_url)
    github = GitHubClient(
        new_http_client(observer.github_transport if observer else None),
        settings.github_url,
        settings.github_api_url,
        settings.github_client_id,
        settings.github_client_secret.get_secret_value(),
        cache_bytes=settings.github_cache_bytes,
        timeout_seconds=settings.github_timeout_seconds,
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
        except StoreUnavailable as exc:
            raise ConfigError(
                tls_refusal(exc) or "MCP_STORAGE_URL names a store that cannot be reached: start it, or fix the URL."
            ) from None
        if stored is not None and stored not in checks:
            raise ConfigError(
                "MCP_SECRET_KEY cannot read the stored data (it is not the key it was written with): "
                "restore the old key, or put the new key first and the old one after it, comma-separated."
            )
        if stored != checks[0]:
            await provider.storage.set_key_check(checks[0])
        ended = await provider.grants.enforce_admission()
        if ended:
            logger.info("Ended %d sign-ins that the allow-lists no longer admit", ended)
    finally:
        await provider.github.http.aclose()
        await provider.clients.documents.aclose()
        await provider.storage.close()


def build_app(settings: Settings) -> Starlette:
    audit.configure(settings.audit_log)
    observer = Observer.start(settings)  # None unless OTEL_* or MCP_METRICS_PORT asks: then nothing is wrapped
    provider = build_provider(settings, observer)
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
    icons = identity.icons(settings.server_url)
    mcp = MCPServer(
        settings.app_name,
        version=identity.VERSION,
        icons=icons,
        auth_server_provider=provider,
        auth=auth,
        request_state_security=request_state,
        cache_hints=CACHE_HINTS,  # tools/resources.py: what a client may reuse, and for how long
    )
    register_tools(mcp, provider)
    identity.give_tools_icons(mcp, icons)
    tool_calls = observer.tool_calls(frozenset(t.name for t in sdk.tools(mcp))) if observer else None
    mcp.middleware.extend([tool_calls] if tool_calls else [])  # outside the scope check: refusals count too
    mcp.middleware.append(ScopeCheck(mcp))  # the one scope decision, on what the SDK decoded
    mcp.middleware.append(ArgumentErrors(mcp))  # one sentence per bad argument, inside the scope check
    if settings.confirm_writes:  # the user says yes to each write, innermost: only calls that would run are asked
        mcp.middleware.append(ConfirmWrites(mcp, provider.storage, request_state.ttl))
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # the SDK's log setup would print every GitHub URL
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
    app.state.provider, app.state.mcp, app.state.observer = provider, mcp, observer  # benchmarks, in-process tests
    if settings.demo:
        demo.mount(app, settings)
    app.router.lifespan_context = _lifespan(app.router.lifespan_context, settings, provider, observer)
    app.add_middleware(RequestLog)
    app.add_middleware(
        RateLimit,
        limit=settings.rate_limit,
        registration_limit=settings.registration_rate_limit,
        trusted_proxies=settings.trusted_proxies,
        counters=counters_for(unwrapped(provider.storage), settings.storage_url),
    )
    app.add_middleware(Unavailable, app_name=settings.app_name)
    app.add_middleware(DirectToMcp, endpoints=direct_endpoints(app))
    if observer is not None:
        observer.count_token_cache_hits(lambda: provider.cache.hits)
        observer.requests(app)  # outermost: /mcp too, and every log and audit line inside its span
    return app


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection that also admits the public host of MCP_SERVER_URL."""
    public = urlsplit(settings.server_url)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", public.netloc]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", f"{public.scheme}://{public.netloc}"]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]


def _lifespan(
    inner: Lifespan, settings: Settings, provider: GitHubOAuthProvider, observer: Observer | None
) -> Lifespan:
    """The SDK's lifespan, plus the periodic sweep and closing what `build_app` opened."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logger.info("Store: %s", store_description(settings.storage_url))
        container_check.warn_if_ephemeral(settings.storage_url)  # not in check_startup: an error stays one line
        sweeper = asyncio.create_task(_sweep_forever(settings, provider))
        try:
            async with inner(app):
                yield
        finally:
            sweeper.cancel()
            await provider.github.http.aclose()
            await provider.clients.documents.aclose()
            await provider.storage.close()
            if observer is not None:
                observer.close()

    return lifespan


def store_description(url: str) -> str:
    """Where the data lives, for the start-up log: a relative SQLite URL depends on the working directory
    (`sqlite:///data/x.db` is not `/data/x.db`), so the path is resolved; a Redis URL loses its password."""
    path = sqlite_path(url)
    if path is not None:
        return f"SQLite at {path.resolve()}"
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    tls = " (TLS)" if parts.scheme == "rediss" else ""
    return f"Redis at {host}:{parts.port or 6379}/{parts.path.strip('/') or '0'}{tls}"


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
