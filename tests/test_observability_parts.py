"""Issue 18: off means nothing installed; the label rules that keep every series bounded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ghmcp import audit
from ghmcp.config import ConfigError
from ghmcp.observe.github import route_template
from ghmcp.observe.metrics import LATENCY_BUCKETS, Metrics
from ghmcp.observe.tallies import Counts, Latencies, LowestInWindow
from ghmcp.observe.tracing import start_tracing
from ghmcp.storage.sqlite import SQLiteStorage
from ghmcp.web import build
from tests.support import in_process_settings


def test_without_otel_variables_or_a_metrics_port_nothing_is_installed(
    monkeypatch: pytest.MonkeyPatch, github_url: str, tmp_path: Path
) -> None:
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    app = build.build_app(in_process_settings(monkeypatch, github_url, tmp_path))
    assert app.state.observer is None
    assert type(app.state.provider.storage) is SQLiteStorage  # the raw store: no wrapper, no cost
    assert "ObservedRequests" not in [getattr(m.cls, "__name__", "") for m in app.user_middleware]
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


def test_an_unsupported_exporter_setting_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported"):
        start_tracing("test")


@pytest.mark.parametrize(
    ("path", "template"),
    [
        (b"/repos/alice/secret-repo/issues/12?token=x", "/repos/{owner}/{repo}/issues/{number}"),
        (b"/repos/alice/r/contents/a/b/c.md?ref=main", "/repos/{owner}/{repo}/contents/{path}"),
        (b"/login/oauth/access_token?code=abc", "/login/oauth/access_token"),
        (b"/user/memberships/orgs/acme", "/user/memberships/orgs/{org}"),
        (b"/api/v3/search/issues?q=private", "/api/v3/search/issues"),
        (b"/repos/alice/r/some-new-endpoint", "other"),
        (b"/" + b"/".join([b"user"] * 20), "other"),
    ],
)
def test_github_routes_are_templates_never_values(path: bytes, template: str) -> None:
    assert route_template(path) == template


def test_the_rate_limit_gauge_is_the_lowest_of_the_last_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("ghmcp.observe.tallies.time.monotonic", lambda: now[0])
    window = LowestInWindow(60)
    assert window.lowest() is None
    window.record(4000)
    window.record(4990)
    now[0] += 30
    window.record(4500)
    assert window.lowest() == 4000
    now[0] += 31  # the 4000 is now older than a minute
    assert window.lowest() == 4500


def test_auth_counts_come_from_audit_events_even_with_the_audit_log_off() -> None:
    metrics = Metrics()
    audit.configure("")
    audit.observe(metrics.on_audit_event)
    try:
        audit.event("refresh_reuse", login="alice", client_id="c")
        audit.event("grant_killed", grant_id="g", reason="something-a-client-chose")
    finally:
        audit.observe(None)
    assert metrics.registry.get_sample_value("mcp_refresh_reuse_detections_total") == 1
    assert metrics.registry.get_sample_value("mcp_refreshes_total", {"outcome": "reuse"}) == 1
    assert metrics.registry.get_sample_value("mcp_grants_ended_total", {"reason": "other"}) == 1


def test_the_hot_path_tallies_expose_what_prometheus_client_would_for_the_same_calls() -> None:
    """Same names, labels, `le` bounds, cumulative buckets, counts and sums as a Counter and a Histogram."""
    # One row per (tool, outcome) gives both families: the counter by both labels, the histogram by tool.
    latencies = Latencies(
        "mcp_tool_call_seconds",
        "Tool call latency",
        ["tool", "outcome"],
        LATENCY_BUCKETS,
        by=1,
        counted=("mcp_tool_calls", "Tool calls"),
    )
    counts = Counts("mcp_store_errors", "Store errors", ["operation", "kind"])
    theirs = CollectorRegistry()
    counter = Counter("mcp_tool_calls", "Tool calls", ["tool", "outcome"], registry=theirs)
    histogram = Histogram(
        "mcp_tool_call_seconds", "Tool call latency", ["tool"], buckets=LATENCY_BUCKETS, registry=theirs
    )
    errors = Counter("mcp_store_errors", "Store errors", ["operation", "kind"], registry=theirs)
    calls = [("a", "ok", 0.0004), ("a", "ok", 0.001), ("a", "error", 0.3), ("b", "ok", 12.0), ("b", "refused", 0.0025)]
    for tool, outcome, seconds in calls:
        latencies.observe(seconds, tool, outcome)
        counter.labels(tool, outcome).inc()
        histogram.labels(tool).observe(seconds)
    for operation, kind in [("get_token", "unavailable"), ("get_token", "unavailable"), ("put_client", "other")]:
        counts.add(operation, kind)
        errors.labels(operation, kind).inc()

    class Ours(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from latencies.collect()
            yield from counts.collect()

    ours = CollectorRegistry()
    ours.register(Ours())

    def samples(registry: CollectorRegistry) -> list[tuple[str, list[tuple[str, str]], float]]:
        found = [s for m in registry.collect() for s in m.samples if not s.name.endswith("_created")]
        return sorted((s.name, sorted(s.labels.items()), s.value) for s in found)

    assert samples(ours) == samples(theirs)
    assert ("mcp_tool_call_seconds_bucket", [("le", "0.001"), ("tool", "a")], 2.0) in samples(ours)
    assert ("mcp_tool_call_seconds_bucket", [("le", "+Inf"), ("tool", "b")], 2.0) in samples(ours)
    assert ("mcp_tool_calls_total", [("outcome", "ok"), ("tool", "a")], 2.0) in samples(ours)
    assert ("mcp_store_errors_total", [("kind", "unavailable"), ("operation", "get_token")], 2.0) in samples(ours)
