"""Traces: the OpenTelemetry SDK, configured by the standard `OTEL_*` environment variables only.

Tracing is on when an exporter is named: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`), or
`OTEL_TRACES_EXPORTER=otlp|console`. The SDK itself reads the rest (service name and resource attributes,
sampler, batch delays, headers, timeouts). With none of them set no tracer provider is installed, and every
span (the SDK's MCP spans included) stays OpenTelemetry's no-op, so tracing costs nothing.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from ghmcp.config import ConfigError

TRACER_NAME = "ghmcp"
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted() -> str | None:
    """The exporter the environment asks for ("otlp" or "console"), or None: tracing stays off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named in ("none", ""):
        return "otlp" if not named and any(os.environ.get(name) for name in _ENDPOINTS) else None
    if named not in ("otlp", "console"):
        raise ConfigError(f"OTEL_TRACES_EXPORTER={named} is not supported: use otlp, console or none.")
    return named


def start_tracing(service_name: str) -> TracerProvider | None:
    """Install the process's tracer provider when the environment asks for one (once per process)."""
    kind = wanted()
    if kind is None:
        return None
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    )
    if kind == "otlp" and protocol.strip() != "http/protobuf":
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: use http/protobuf (a collector's port 4318)."
        )
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current  # set already (a second app in one process): OpenTelemetry allows one per process
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the app name (Resource.create reads them).
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(named))  # sampler: OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(_exporter(kind)))  # delays: OTEL_BSP_*
    trace.set_tracer_provider(provider)
    return provider


def _exporter(kind: str) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_*


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)
