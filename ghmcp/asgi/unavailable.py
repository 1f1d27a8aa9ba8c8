"""The store is unreachable (Redis lost while serving): 503 with Retry-After, never a 500.

Nothing is cached or retried here: the next request tries the store again, so serving resumes
by itself when the store is back.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ghmcp.asgi import pages
from ghmcp.storage import StoreUnavailable

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
BROWSER_PAGES = {"/consent", "/github/callback"}
HEADERS = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}


class Unavailable:
    def __init__(self, app: ASGIApp, app_name: str) -> None:
        self.app = app
        self.app_name = app_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except StoreUnavailable as exc:
            if started:
                raise
            await answer(scope, receive, send, exc, self.response(scope["path"]))

    def response(self, path: str) -> Response:
        if path not in BROWSER_PAGES:
            return json_response()
        page = pages.message(
            self.app_name,
            "Temporarily unavailable",
            "The server cannot reach its storage right now. Please try again in a few seconds.",
            503,
        )
        page.headers.update(HEADERS)
        return page


async def answer(scope: Scope, receive: Receive, send: Send, exc: StoreUnavailable, response: Response) -> None:
    """Log the outage and send the 503: here, and in bearer.py for the MCP calls that bypass this layer."""
    logger.warning("%s %s: store unavailable (%s); answered 503", scope["method"], scope["path"], exc)
    await response(scope, receive, send)


def json_response() -> Response:
    """The 503 for API callers (OAuth endpoints, MCP calls)."""
    body = {"error": "temporarily_unavailable", "error_description": "The store is unreachable; retry shortly."}
    return JSONResponse(body, 503, HEADERS)
