"""GitHub calls: one span and one count per request, from a wrapper around the HTTP client's transport.

Installed by `ghmcp.upstream.api.new_http_client(transport=...)` only when metrics or tracing is on.
A span names the route template (`/repos/{owner}/{repo}/issues/{number}`), never the URL: owners, repos
and paths are tool arguments, and the query string may carry a code (the OAuth token exchange).
"""

from __future__ import annotations

import functools
import time

import httpx2
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from ghmcp.observe.metrics import Metrics

# Path words kept as they are; anything else in a path is a placeholder or makes the route "other".
_WORDS = frozenset(
    "api v3 demo-github login oauth access_token applications grant token user users orgs memberships repos "
    "contents issues pulls comments files commits branches labels releases reviews search repositories code "
    "starred readme rate_limit".split()
)
# The placeholders that follow a word (`repos` is followed by an owner and a repo).
_NAMES = {"repos": ("owner", "repo"), "starred": ("owner", "repo"), "users": ("user",), "orgs": ("org",)}
_NAMES["applications"] = ("client_id",)
MAX_SEGMENTS = 10
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})


def route_template(raw_path: bytes) -> str:
    """The route template of a GitHub API path; "other" for any path these rules do not know."""
    return _template(raw_path.split(b"?", 1)[0])  # the query (it may carry a code) is never kept


@functools.lru_cache(maxsize=1024)  # every GitHub call asks; a tool's paths repeat
def _template(path: bytes) -> str:
    parts = [part for part in path.decode("ascii", "replace").split("/") if part]
    template: list[str] = []
    index = 0
    while index < len(parts):
        word = parts[index]
        if len(template) >= MAX_SEGMENTS:
            return "other"
        if word == "contents":
            template.append("contents/{path}" if index + 1 < len(parts) else word)
            break  # a file path of any depth is one placeholder
        if word.isdigit():
            template.append("{number}")
        elif word in _WORDS:
            names = _NAMES.get(word, ())[: len(parts) - index - 1]
            template += [word, *(f"{{{name}}}" for name in names)]
            index += len(names)
        else:
            return "other"
        index += 1
    return "/" + "/".join(template)


class ObservedTransport(httpx2.AsyncBaseTransport):
    """Counts and traces every GitHub request, then hands it to the real transport unchanged."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, metrics: Metrics | None, tracer: Tracer | None) -> None:
        self.inner, self.metrics, self.tracer = inner, metrics, tracer

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        route = route_template(request.url.raw_path)
        method = request.method if request.method in METHODS else "other"
        started = time.perf_counter()
        status = "error"  # no answer: refused, reset or timed out
        try:
            if self.tracer is None:
                response = await self.inner.handle_async_request(request)
            else:
                response = await self._traced(self.tracer, request, route, method)
            status = str(response.status_code)
        finally:
            if self.metrics is not None:
                self.metrics.github.observe(time.perf_counter() - started, route, method, status)
        if self.metrics is not None:
            remaining = _remaining(response)
            if remaining is not None:
                self.metrics.rate_limit.record(remaining)
        return response

    async def _traced(self, tracer: Tracer, request: httpx2.Request, route: str, method: str) -> httpx2.Response:
        attributes = {"http.request.method": method, "url.template": route, "server.address": request.url.host}
        with tracer.start_as_current_span(
            f"GitHub {method} {route}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            response = await self.inner.handle_async_request(request)
            span.set_attribute("http.response.status_code", response.status_code)
            span.set_attribute("github.not_modified", response.status_code == 304)
            remaining = _remaining(response)
            if remaining is not None:
                span.set_attribute("github.ratelimit.remaining", remaining)
            if response.status_code >= 400:
                span.set_status(StatusCode.ERROR)
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _remaining(response: httpx2.Response) -> int | None:
    value = response.headers.get("x-ratelimit-remaining")
    return int(value) if value is not None and value.isdigit() else None
