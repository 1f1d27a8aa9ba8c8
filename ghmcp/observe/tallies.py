"""Hot-path counts kept as plain Python numbers, turned into Prometheus families only when scraped.

A tool call updates six labelled series (HTTP, tool, GitHub: a count and a latency each). In
`prometheus-client` each update takes a lock, and each latency walks the buckets in Python; with them,
metrics on cost about 3 % CPU per tool call and missed the benchmark's CPU target (docs/benchmarks.md).
Here an update is a dict lookup and one or two additions; the families, with the names, labels and
buckets a `prometheus_client.Counter` or `Histogram` would expose, are built by `collect` at scrape time.

Written only from the event loop's thread; the scrape, in the metrics server's thread, copies what it
reads (a dict or list copy is one step under the GIL), so it never sees a half-built row. A scrape may
read a latency sum one observation ahead of its buckets, which Prometheus's rate functions absorb.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric


class Counts:
    """A counter family: one integer per label values."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self._values: dict[tuple[str, ...], int] = {}

    def add(self, *values: str) -> None:
        self._values[values] = self._values.get(values, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, count in sorted(self._values.copy().items()):
            family.add_metric(values, count)
        yield family


class Latencies:
    """A histogram family: per label values, a count per bucket (not cumulative) and the sum last."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.bounds = (*buckets, math.inf)
        self._le = [repr(float(bound)) if bound != math.inf else "+Inf" for bound in self.bounds]  # as Go prints
        self._rows: dict[tuple[str, ...], list[float]] = {}

    def observe(self, seconds: float, *values: str) -> None:
        row = self._rows.get(values)
        if row is None:
            row = self._rows[values] = [0.0] * (len(self.bounds) + 1)
        row[bisect.bisect_left(self.bounds, seconds)] += 1  # the first bound >= seconds: buckets are `le`
        row[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, row in sorted((values, row[:]) for values, row in self._rows.copy().items()):
            cumulative, buckets = 0.0, []
            for le, count in zip(self._le, row, strict=False):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(list(values), buckets, row[-1])
        yield family


class LowestInWindow:
    """The lowest value seen in the last `seconds`: one slot per second, so recording is O(1) with no growth."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self._slots: list[tuple[int, float]] = [(-1, 0.0)] * seconds

    def record(self, value: float) -> None:
        second = int(time.monotonic())
        index = second % self.seconds
        at, lowest = self._slots[index]
        if at != second or value < lowest:
            self._slots[index] = (second, value)

    def lowest(self) -> float | None:
        since = int(time.monotonic()) - self.seconds
        seen = [value for at, value in self._slots[:] if at > since]
        return min(seen) if seen else None
