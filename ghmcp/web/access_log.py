"""What the server logs about requests: an access line without query strings, and nothing forged.

Query strings carry OAuth codes and states, so uvicorn's own access log is off and `RequestLog`
writes the line instead. Every message is escaped (`EscapingFormatter`): a path or a name sent by
a client cannot start a line of its own.
"""

from __future__ import annotations

import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("mcp_server")

MCP_PATHS = {"/mcp", "/sse", "/messages"}


class RequestLog:
    """Access log without query strings: they carry codes and states (uvicorn's own log is off).

    Lines for the MCP endpoints are DEBUG (`main.py --log-level debug` shows them): at INFO, one line per
    tool call would cost about as much CPU as authenticating it. Every other path (sign-in, tokens,
    metadata) is logged at INFO. A request that will not be logged passes through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        level = logging.DEBUG if scope["path"].rstrip("/") in MCP_PATHS else logging.INFO
        if not logger.isEnabledFor(level):
            await self.app(scope, receive, send)
            return
        status = 0

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            logger.log(level, "%s %s %s", scope["method"], scope["path"], status or "-")


class EscapingFormatter(logging.Formatter):
    """Log lines whose request-controlled parts (paths, names, URLs) cannot forge other lines.

    OWASP logging: control characters (`%0A` in a path is a real newline by then) are escaped in
    every message, from this server, the SDK or uvicorn. Tracebacks are added after, unescaped.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    return _CONTROLS.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
