"""Tool calls by tool and outcome, with a latency histogram: an SDK middleware outside the scope check.

It sits first among this server's middleware (inside the SDK's own OpenTelemetry span), so a call the
scope check refuses is counted as `refused` and one the argument check refuses as `invalid`. The tool
label is a registered tool name or `unknown`: a client cannot add series by inventing names.
"""

from __future__ import annotations

import time
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, CallToolResult
from pydantic import ValidationError

from ghmcp.observe.metrics import Metrics


class ToolMetrics:
    def __init__(self, metrics: Metrics, tool_names: frozenset[str]) -> None:
        self.metrics, self.tool_names = metrics, tool_names

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        name = ctx.params.get("name") if ctx.params else None
        tool = name if isinstance(name, str) and name in self.tool_names else "unknown"
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await call_next(ctx)
            outcome = "error" if _is_error(result) else "ok"
            return result
        except MCPError as exc:
            # The scope check refuses with INVALID_REQUEST ("Forbidden: ..."), bad arguments are INVALID_PARAMS.
            outcome = {INVALID_REQUEST: "refused", INVALID_PARAMS: "invalid"}.get(exc.error.code, "failed")
            raise
        except ValidationError:
            outcome = "invalid"
            raise
        finally:
            self.metrics.tools.observe(time.perf_counter() - started, tool, outcome)


def _is_error(result: Any) -> bool:
    """As the SDK's span reads it: the model, or the wire form's `isError`."""
    if isinstance(result, CallToolResult):
        return result.is_error
    return isinstance(result, dict) and result.get("isError") is True
