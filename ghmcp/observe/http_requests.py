"""HTTP requests: a server span and a count per request, labelled by route template, never by raw path.

The outermost ASGI middleware (every request passes, /mcp included), so the access log, the audit
lines and the SDK's MCP span all happen inside its span. An incoming W3C `traceparent` is continued,
as a load balancer or gateway that traces would expect. The path's query string (codes, states) and
the path itself (client-chosen) are never recorded: only the template of the route that matched.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Iterable

from opentelemetry.propagate import extract
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ghmcp.observe.metrics import Metrics

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RouteLabels:
    """Path -> route label, from the app's own routes: a fixed set, "other" for anything else."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.exact: dict[str, str] = {}
        self.mounts: list[tuple[str, str]] = []
        self.patterns: list[Route] = []
        for route in routes:
            if isinstance(route, Mount):
                self.mounts.append((route.path + "/", route.path + "/*"))
            elif isinstance(route, Route) and "{" in route.path:
                self.patterns.append(route)
            elif isinstance(route, Route):
                self.exact[route.path] = route.path
                self.exact[route.path.rstrip("/") or "/"] = route.path

    def __call__(self, path: str) -> str:
        found = self.exact.get(path) or self.exact.get(path.rstrip("/"))
        if found is not None:
            return found
        for route in self.patterns:
            if route.path_regex.match(path):
                return route.path
        return next((label for prefix, label in self.mounts if path.startswith(prefix)), "other")


class ObservedRequests:
    def __init__(self, app: ASGIApp, labels: RouteLabels, metrics: Metrics | None, tracer: Tracer | None) -> None:
        self.app, self.labels, self.metrics, self.tracer = app, labels, metrics, tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.labels(scope["path"])
        method = scope["method"] if scope["method"] in METHODS else "other"
        status = 0  # set by the response's start message

        def record(message: Message) -> Awaitable[None]:
            # A plain function handing back `send`'s awaitable: no coroutine of its own per message.
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        started = time.perf_counter()
        try:
            if self.tracer is None:
                await self.app(scope, receive, record)
            else:
                with self._span(self.tracer, scope, route, method) as span:
                    try:
                        await self.app(scope, receive, record)
                    finally:
                        span.set_attribute("http.response.status_code", status)
                        if status >= 500 or not status:
                            span.set_status(StatusCode.ERROR)
        finally:
            if self.metrics is not None:
                self.metrics.http.observe(time.perf_counter() - started, route, method, str(status or "none"))

    @staticmethod
    def _span(tracer: Tracer, scope: Scope, route: str, method: str) -> contextlib.AbstractContextManager[Span]:
        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope["headers"]
            if key in (b"traceparent", b"tracestate")
        }
        attributes = {"http.request.method": method, "http.route": route, "url.scheme": scope.get("scheme", "http")}
        return tracer.start_as_current_span(
            f"{method} {route}",
            context=extract(carrier),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
        )
