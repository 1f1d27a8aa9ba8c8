"""GitHub having a bad day, switched on at run time by a test: slow, answering 502, or dropping connections.

The switch is a Python handle on the stand-in (`StandInState.fail`), not an HTTP endpoint: nothing
on the network can reach it, so a `--demo` server cannot be told to fail. A fault may be limited to
a path prefix, so one path can be stuck while the others answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from starlette.types import Receive, Scope, Send

from ghmcp.standin.http import page

POLL_SECONDS = 0.02


@dataclass
class Fault:
    """`slow`: answer after `seconds` (or as soon as the fault is switched off); `502`: GitHub's
    "Bad Gateway" page; `drop`: the status line and headers, then the connection closes.
    `times`: only that many requests suffer it (a single dropped keep-alive connection, say)."""

    kind: Literal["slow", "502", "drop"]
    prefix: str = "/"
    seconds: float = 30.0
    times: int | None = None

    def hit(self, path: str) -> bool:
        """Whether this request suffers the fault. Only the serving thread calls it: no lock needed."""
        if not path.startswith(self.prefix) or self.times == 0:
            return False
        if self.times is not None:
            self.times -= 1
        return True


async def act_out(fault: Fault, still_on: Callable[[], bool], scope: Scope, receive: Receive, send: Send) -> bool:
    """Play `fault` on one request; True when it answered (or dropped) the request itself."""
    if fault.kind == "slow":
        until = time.monotonic() + fault.seconds
        # Polled: the test switches the fault off from its own thread, where no asyncio.Event can be set.
        while still_on() and time.monotonic() < until:  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)
        return False  # late, then the real answer
    if fault.kind == "502":
        await page(502, "Bad Gateway", "GitHub is having trouble; try again shortly.")(scope, receive, send)
        return True
    # An ASGI server closes the connection of an app that returns before its response is complete
    # (uvicorn: "ASGI callable returned without completing response"): the client sees a real drop.
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})
    return True
