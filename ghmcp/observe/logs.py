"""Log lines as JSON (`MCP_LOG_FORMAT=json`): the standard library's logging, one object per line.

Every line goes through the root handler: this server's own, the access log (`web/access_log.py`), the
SDK's and uvicorn's (`serve.py` gives uvicorn no log config of its own). Inside a traced request a line
carries `trace_id` and `span_id`, the same ids as the spans and the audit line. JSON escapes control
characters, so a client-chosen path cannot start a line of its own here either.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from opentelemetry.trace import get_current_span


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"], line["span_id"] = format(context.trace_id, "032x"), format(context.span_id, "016x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def use_json_lines() -> None:
    """Switch every root handler (main.py installs one) to JSON lines."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
