"""Observability: OpenTelemetry traces, Prometheus metrics, JSON logs; each off until configured.

    observer = Observer.start(settings)  # None without an OTEL_* exporter and MCP_METRICS_PORT: nothing installed
    new_http_client(observer.github_transport)  # a span and a count per GitHub call
    observer.store(storage, url)          # a span and a latency per store operation
    mcp.middleware.append(observer.tool_calls(names))  # tool calls by tool and outcome
    observer.requests(app)                # outermost ASGI layer: a span per request, requests by route and status
    observer.close()                      # at shutdown: flush spans, stop the metrics server
    logs.use_json_lines()                 # MCP_LOG_FORMAT=json

Modules: `tracing.py` (the OTEL_* set-up), `metrics.py` (every metric, the auth counts from audit events),
`tallies.py` (the per-request counts, plain numbers read at scrape time),
`github.py`, `store.py`, `http_requests.py`, `tool_calls.py` (the wrappers), `logs.py`. docs/observability.md
lists the metric names and spans.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx2
from mcp.server.context import ServerMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from starlette.applications import Starlette

from ghmcp import audit
from ghmcp.config import Settings
from ghmcp.observe.github import ObservedTransport
from ghmcp.observe.http_requests import ObservedRequests, RouteLabels
from ghmcp.observe.metrics import Metrics
from ghmcp.observe.store import observed_store
from ghmcp.observe.tool_calls import ToolMetrics
from ghmcp.observe.tracing import start_tracing, tracer

S = TypeVar("S")


class Observer:
    """What is on (metrics, tracing or both) and the wrappers that feed them."""

    def __init__(self, metrics: Metrics | None, provider: TracerProvider | None) -> None:
        self.metrics, self.provider = metrics, provider
        self.tracer: Tracer | None = tracer() if provider is not None else None

    @classmethod
    def start(cls, settings: Settings) -> Observer | None:
        """Tracing if the OTEL_* environment names an exporter, metrics if MCP_METRICS_PORT is set."""
        provider = start_tracing(settings.app_name)
        metrics = None
        if settings.metrics_port is not None:
            metrics = Metrics()
            metrics.serve(settings.metrics_host, settings.metrics_port)
            audit.observe(metrics.on_audit_event)
        return cls(metrics, provider) if metrics is not None or provider is not None else None

    def count_token_cache_hits(self, hits: Callable[[], int]) -> None:
        if self.metrics is not None:
            self.metrics.token_hits = hits

    def github_transport(self, inner: httpx2.AsyncBaseTransport) -> httpx2.AsyncBaseTransport:
        return ObservedTransport(inner, self.metrics, self.tracer)

    def store(self, storage: S, storage_url: str) -> S:
        system = "redis" if storage_url.startswith(("redis://", "rediss://")) else "sqlite"
        return observed_store(storage, system, self.metrics, self.tracer)

    def tool_calls(self, tool_names: frozenset[str]) -> ServerMiddleware[Any] | None:
        return ToolMetrics(self.metrics, tool_names) if self.metrics is not None else None

    def requests(self, app: Starlette) -> None:
        app.add_middleware(
            ObservedRequests, labels=RouteLabels(app.router.routes), metrics=self.metrics, tracer=self.tracer
        )

    def close(self) -> None:
        if self.metrics is not None:
            audit.observe(None)
            self.metrics.close()
        if self.provider is not None:
            self.provider.force_flush()
