"""Hot-path counts kept as plain Python numbers, turned into Prometheus families only when scraped.

A tool call is counted and timed three times (its HTTP request, the tool call, its GitHub call). In
`prometheus-client` each of those six updates takes a lock, and each latency walks the buckets in
Python; with them, metrics on cost about 3 % CPU per tool call and missed the benchmark's CPU target
(docs/benchmarks.md). Here a request's count and latency are one row: one dict lookup and two
additions. The families, with the names, labels and buckets a `prometheus_client.Counter` or
`Histogram` would expose, are built by `collect` at scrape time.

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
    """A histogram family by its first `by` labels and, when `counted` names one, a counter family by all of them.

    Both come from one row per label values (a count per bucket, not cumulative, and the sum last), so
    a request that is counted and timed costs one dict lookup and two additions, not two updates.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        buckets: Sequence[float],
        *,
        by: int | None = None,
        counted: tuple[str, str] | None = None,
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.by = len(self.labels) if by is None else by
        self.counted = counted
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
        rows = sorted((values, row[:]) for values, row in self._rows.copy().items())
        if self.counted is not None:
            counter = CounterMetricFamily(*self.counted, labels=self.labels)
            for values, row in rows:
                counter.add_metric(values, sum(row[:-1]))
            yield counter
        merged: dict[tuple[str, ...], list[float]] = {}
        for values, row in rows:
            into = merged.setdefault(values[: self.by], [0.0] * len(row))
            into[:] = [a + b for a, b in zip(into, row, strict=True)]
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels[: self.by])
        for values, row in merged.items():
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
