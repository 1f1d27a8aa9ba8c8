"""Observability test helpers: a real Prometheus (Debian's package) and an OTLP/HTTP receiver.

Absent `prometheus`: its tests skip, except under CI=true where they fail (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support import free_port, unavailable

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def require_prometheus() -> None:
    if not Path(PROMETHEUS).exists():
        unavailable("prometheus is missing (install Debian's prometheus package to run the metrics tests)")


class Prometheus:
    """`prometheus` on a free loopback port, scraping `target` every second."""

    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            f"scrape_configs: [{{job_name: mcp, static_configs: [{{targets: ['{target}']}}]}}]\n"
        )
        self.log = (directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait(lambda: httpx2.get(f"{self.url}/-/ready", timeout=1).status_code == 200, "ready")

    def query(self, promql: str) -> float | None:
        """The single value of an instant query, None when it has no result."""
        answer = httpx2.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5).json()
        assert answer["status"] == "success", answer
        results = answer["data"]["result"]
        return float(results[0]["value"][1]) if results else None

    def wait_for(self, promql: str, expected: float) -> None:
        """Until the next scrapes show `expected` (bounded): the counters are read from Prometheus itself."""
        self._wait(lambda: self.query(promql) == expected, f"{promql} == {expected} (now {self.query(promql)})")

    def _wait(self, ready: Any, what: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {Path(self.log.name).read_text()}")
            with contextlib.suppress(httpx2.HTTPError):
                if ready():
                    return
            time.sleep(0.2)
        raise AssertionError(f"prometheus: not {what} within {seconds} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.log.close()


@contextlib.contextmanager
def running_prometheus(directory: Path, target: str) -> Iterator[Prometheus]:
    require_prometheus()
    prometheus = Prometheus(directory, target)
    try:
        yield prometheus
    finally:
        prometheus.stop()


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: keeps every export's raw bytes (unless `keep` is False: a benchmark's
    sink, which only counts them)."""

    def __init__(self, keep: bool = True) -> None:
        self.bodies: list[bytes] = []
        self.received = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.received += 1
                    if keep:
                        receiver.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()
                self.wfile.write(b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[dict[str, Any]]:
        """Every span received: name, ids (hex), parent id, attributes."""
        found = []
        with self.lock:
            bodies = list(self.bodies)
        for body in bodies:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        found.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                            }
                        )
        return found

    def raw(self) -> bytes:
        with self.lock:
            return b"".join(self.bodies)

    def wait_for(
        self, name: str, seconds: float = 30, match: Callable[[dict[str, Any]], bool] = lambda span: True
    ) -> dict[str, Any]:
        """The first span of that name (and `match`), once exported: spans come in batches, an outer span last."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [span for span in self.spans() if span["name"] == name and match(span)]
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no span {name!r} within {seconds} s: {json.dumps(self.spans())[:2000]}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def series_count(metrics_url: str) -> int:
    """How many series the metrics endpoint exposes (sample lines, comments aside)."""
    text = httpx2.get(metrics_url, timeout=5).text
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))
