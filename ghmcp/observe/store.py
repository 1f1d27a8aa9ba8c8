"""Store operations: a span and a latency per call that reaches SQLite or Redis, from a wrapper.

`observed_store` wraps any `Storage` without touching the backends: each public coroutine method is
timed under its own name (the names are the interface's, so the `operation` label is bounded by the
code). Arguments are never recorded: they are hashes, identities and encrypted tokens. Built only
when metrics or tracing is on; otherwise the raw store is used.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from opentelemetry.trace import SpanKind, StatusCode, Tracer

from ghmcp.observe.metrics import Metrics
from ghmcp.storage import StoreUnavailable

S = TypeVar("S")


class ObservedStore:
    """The wrapped store's public coroutine methods, timed and traced; everything else passed through."""

    def __init__(self, inner: Any, system: str, metrics: Metrics | None, tracer: Tracer | None) -> None:
        self.inner, self._system, self._metrics, self._tracer = inner, system, metrics, tracer

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if name.startswith("_") or name == "close" or not inspect.iscoroutinefunction(found):
            return found
        wrapped = self._observed(name, found)
        setattr(self, name, wrapped)  # looked up once: later calls find it on the instance
        return wrapped

    def _observed(self, operation: str, method: Callable[..., Any]) -> Callable[..., Any]:
        metrics, tracer = self._metrics, self._tracer
        attributes = {"db.system.name": self._system, "db.operation.name": operation}

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                if tracer is None:
                    return await method(*args, **kwargs)
                with tracer.start_as_current_span(
                    f"store {operation}", kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
                ) as span:
                    try:
                        return await method(*args, **kwargs)
                    except Exception as exc:
                        span.set_status(StatusCode.ERROR)
                        span.set_attribute("error.type", type(exc).__qualname__)
                        raise
            except Exception as exc:
                if metrics is not None:
                    metrics.store_errors.add(operation, "unavailable" if isinstance(exc, StoreUnavailable) else "other")
                raise
            finally:
                if metrics is not None:
                    metrics.store_seconds.observe(time.perf_counter() - started, operation)

        return call


def observed_store(store: S, system: str, metrics: Metrics | None, tracer: Tracer | None) -> S:
    """`store` with every operation timed and traced (typed as the store: it answers the same calls)."""
    return cast(S, ObservedStore(store, system, metrics, tracer))


def unwrapped(store: Any) -> Any:
    """The store under the wrapper, for code that asks which backend it is (the Redis rate-limit counters)."""
    return store.inner if isinstance(store, ObservedStore) else store
