"""Metrics: Prometheus exposition (`prometheus-client`) on its own port, every label bounded by the code.

Label values come from fixed sets only: route templates, registered tool names, outcomes named here,
HTTP status codes. Never a user, token, client id or free text, so the number of series depends on
the code, not on the traffic (tests/test_observability_cardinality.py runs 50 users and 50 clients).
The auth counters are derived in one place, `on_audit_event`, from the audit events: every security
event that the audit log records is counted, and nothing else is. The per-request series are
tallies (tallies.py), plain numbers read at scrape time: a request's count and latency are one row
(`http`, `tools`, `github`). The rarer auth counts are `prometheus-client` counters.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ghmcp.config import ConfigError
from ghmcp.observe.tallies import Counts, Latencies, LowestInWindow

# audit event -> (counter, outcome). The refresh outcome "reuse" is also its own counter: it ends a session.
AUTH_EVENTS = {
    "sign_in": ("sign_ins", "ok"),
    "admission_refused": ("sign_ins", "refused"),
    "consent_given": ("consents", "given"),
    "consent_denied": ("consents", "denied"),
    "token_refreshed": ("refreshes", "ok"),
    "refresh_reuse": ("refreshes", "reuse"),
}
SIGN_IN_FAILURES = ("github_error", "github_unavailable", "denied_at_github", "invalid_state")
# Events whose outcome is one of their own fields, from a fixed set; any other value counts as "other".
OUTCOME_EVENTS = {
    "sign_in_failed": ("sign_ins", "reason", SIGN_IN_FAILURES),
    "revocation": ("revocations", "outcome", ("revoked", "unknown_token")),
}
SCOPE_REFUSALS = ("insufficient_scope", "undeclared_scope")
GRANT_END_REASONS = ("user_disconnected", "github_refused", "not_admitted")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WINDOW_SECONDS = 60


class Metrics:
    """Every metric this server exposes, in a registry of its own (not the process-wide default one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.http = _counted_and_timed(
            ("mcp_http_requests", "HTTP requests by route template, method and status"),
            ("mcp_http_request_seconds", "HTTP request latency by route template"),
            ["route", "method", "status"],
        )
        self.tools = _counted_and_timed(
            ("mcp_tool_calls", "Tool calls by tool and outcome (ok, error, refused, invalid)"),
            ("mcp_tool_call_seconds", "Tool call latency by tool"),
            ["tool", "outcome"],
        )
        self.auth = {
            name: Counter(
                f"mcp_{name}", f"{name.replace('_', '-').capitalize()} by outcome", ["outcome"], registry=registry
            )
            for name in sorted({c for c, _ in AUTH_EVENTS.values()} | {c for c, _, _ in OUTCOME_EVENTS.values()})
        }
        self.refresh_reuse = Counter(
            "mcp_refresh_reuse_detections", "Refresh tokens used twice: each revokes a whole sign-in", registry=registry
        )
        self.scope_refusals = Counter(
            "mcp_scope_refusals", "Calls refused for a scope the token lacks, by reason", ["reason"], registry=registry
        )
        self.grants_ended = Counter("mcp_grants_ended", "GitHub grants ended, by reason", ["reason"], registry=registry)
        self.github = _counted_and_timed(
            (
                "mcp_github_requests",
                "GitHub calls by route template, method and status (304: revalidated, not counted against the "
                "rate limit)",
            ),
            ("mcp_github_request_seconds", "GitHub call latency by route template"),
            ["route", "method", "status"],
        )
        self.store_seconds = Latencies(
            "mcp_store_operation_seconds", "Store operation latency by operation", ["operation"], LATENCY_BUCKETS
        )
        self.store_errors = Counts(
            "mcp_store_errors",
            "Store operations that failed, by operation and kind (unavailable, other)",
            ["operation", "kind"],
        )
        self.rate_limit = LowestInWindow(WINDOW_SECONDS)
        self.token_hits: Callable[[], int] = lambda: 0  # set to the token cache's count once it exists
        registry.register(_AtScrapeTime(self))
        self._server: Any = None

    def on_audit_event(self, name: str, fields: dict[str, Any]) -> None:
        """The one place auth events become counts: audit.py calls it for every event it records."""
        counted = AUTH_EVENTS.get(name)
        if counted is not None:
            self.auth[counted[0]].labels(counted[1]).inc()
            if name == "refresh_reuse":
                self.refresh_reuse.inc()
        elif name in OUTCOME_EVENTS:
            counter, field, outcomes = OUTCOME_EVENTS[name]
            outcome = fields.get(field)
            self.auth[counter].labels(outcome if outcome in outcomes else "other").inc()
        elif name == "scope_refused":
            reason = fields.get("reason")
            self.scope_refusals.labels(reason if reason in SCOPE_REFUSALS else "other").inc()
        elif name == "grant_killed":
            reason = fields.get("reason")
            self.grants_ended.labels(reason if reason in GRANT_END_REASONS else "other").inc()

    def serve(self, host: str, port: int) -> None:
        """Serve `/metrics` from a thread of its own; a port that cannot be bound is one sentence."""
        try:
            self._server, _ = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            problem = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc})"
            raise ConfigError(f"MCP_METRICS_PORT {port} on {host} {problem}: choose another port.") from None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _counted_and_timed(counter: tuple[str, str], histogram: tuple[str, str], labels: list[str]) -> Latencies:
    """A request's count by all `labels` and its latency by the first: one tally row per request."""
    return Latencies(*histogram, labels, LATENCY_BUCKETS, by=1, counted=counter)


class _AtScrapeTime(Collector):
    """The hot-path tallies, the rate-limit gauge and the token cache's hits, read when Prometheus scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        for tally in (metrics.http, metrics.tools, metrics.github, metrics.store_seconds, metrics.store_errors):
            yield from tally.collect()
        gauge = GaugeMetricFamily(
            "mcp_github_rate_limit_remaining_min",
            f"Lowest x-ratelimit-remaining GitHub answered in the last {WINDOW_SECONDS} s (absent: no call)",
        )
        lowest = metrics.rate_limit.lowest()
        if lowest is not None:
            gauge.add_metric([], lowest)
        yield gauge
        yield CounterMetricFamily(
            "mcp_token_cache_hits", "Access tokens answered from this process's cache", value=metrics.token_hits()
        )
