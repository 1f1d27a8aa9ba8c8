"""Reading an ASGI request body once, with a size bound, and handing it on to the app unchanged.

Both the per-endpoint body limits (ratelimit.py) and the per-tool scope check (scopes.py) need
to look at a body before the app does.
"""

from __future__ import annotations

from starlette.types import Message, Receive


async def read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes (counted as it arrives)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        if not message.get("more_body", False):
            return b"".join([*chunks, chunk]) if chunks else chunk  # most bodies arrive in one message
        chunks.append(chunk)


def replay(body: bytes, receive: Receive) -> Receive:
    """Hand the already-read body to the app, then pass through (so disconnects still arrive)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
