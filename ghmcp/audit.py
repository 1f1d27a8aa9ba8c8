"""Audit log (`MCP_AUDIT_LOG=stdout|PATH`): one JSON line per security event, for the operator.

Events name who (GitHub login and id), which client, and the outcome, never a token, code,
state, secret or tool argument: callers pass identities only. A file is opened with O_APPEND
and every line is one `write`, so lines from several processes or threads never interleave
(no lock needed). Inside a traced request each line carries the `trace_id` of its spans, and when
metrics are on every event is also handed to the one place that counts it (`observe()`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import get_current_span

from ghmcp.config import ConfigError

_write: Callable[[str], None] | None = None
_target: str | None = None
_counter: Callable[[str, dict[str, Any]], None] | None = None


def configure(target: str) -> None:
    """At startup: "" is off, "stdout" is standard output, anything else a file path (opened once)."""
    global _write, _target
    if target == _target:
        return
    if not target:
        _write = None
    elif target == "stdout":
        _write = _to_stdout
    else:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # identities: owner-only
        except OSError as exc:
            raise ConfigError(f"MCP_AUDIT_LOG cannot be opened for appending ({exc.strerror}): fix the path.") from None
        _write = lambda line: _write_all(fd, line.encode())  # noqa: E731
    _target = target


def observe(counter: Callable[[str, dict[str, Any]], None] | None) -> None:
    """Hand every event, logged or not, to `counter` as well (ghmcp/observe/metrics.py); None stops it."""
    global _counter
    _counter = counter


def enabled() -> bool:
    return _write is not None


def event(name: str, **fields: Any) -> None:
    """Record `name` with `fields` (JSON-serialisable identities and outcomes only)."""
    if _counter is not None:
        _counter(name, fields)
    if _write is None:
        return
    record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": name, **fields}
    context = get_current_span().get_span_context()
    if context.is_valid:
        record["trace_id"] = format(context.trace_id, "032x")
    _write(json.dumps(record, separators=(",", ":"), default=str) + "\n")


def _to_stdout(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


def _write_all(fd: int, data: bytes) -> None:
    while data:  # a regular file takes the whole line at once; the loop only guards a short write
        data = data[os.write(fd, data) :]
