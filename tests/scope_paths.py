"""Raw MCP request paths for the scope tests: the 2026-07-28 request, a legacy session, an SSE session.

Each sends a body as bytes, untouched, so a test can try encodings and spellings the SDK's own
client would never produce, and answers what the server said to that body.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2

from tests.support import ServerProcess

MODERN = "2026-07-28"
LEGACY = "2025-06-18"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


@dataclass
class Answer:
    """What the server said: the HTTP status, and the JSON-RPC reply where there was one."""

    status: int
    reply: dict[str, Any] | None

    @property
    def refused(self) -> bool:
        """A 4xx, or a JSON-RPC error: the call did not run."""
        return 400 <= self.status < 500 or (self.reply is not None and "error" in self.reply)


def call_text(tool: str, arguments: dict[str, Any], *, modern: bool) -> str:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if modern:
        params["_meta"] = ENVELOPE
    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params})


def _reply(response: httpx2.Response) -> dict[str, Any] | None:
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        text = data[-1] if data else ""
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class Path(Protocol):
    def send(self, body: bytes, *, mcp_name: str = "star_repository") -> Answer: ...


class ModernPath:
    """2026-07-28: every request self-contained, with the routing headers the body must agree with."""

    def __init__(self, http: httpx2.Client, server: ServerProcess) -> None:
        self.http, self.server = http, server

    def send(self, body: bytes, *, mcp_name: str = "star_repository") -> Answer:
        headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": mcp_name}
        response = self.http.post(self.server.mcp_url, content=body, headers=headers)
        return Answer(response.status_code, _reply(response))


class LegacyPath:
    """Streamable HTTP before 2026-07-28: one initialized session, reused for every body."""

    def __init__(self, http: httpx2.Client, server: ServerProcess) -> None:
        self.http, self.server = http, server
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
        }
        response = http.post(server.mcp_url, json=initialize, headers={"MCP-Protocol-Version": LEGACY})
        assert response.status_code == 200, response.text
        self.session = response.headers["mcp-session-id"]
        self._post(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())

    def _post(self, body: bytes, **headers: str) -> httpx2.Response:
        session = {"Mcp-Session-Id": self.session, "MCP-Protocol-Version": LEGACY}
        return self.http.post(self.server.mcp_url, content=body, headers=session | headers)

    def send(self, body: bytes, *, mcp_name: str = "star_repository") -> Answer:
        response = self._post(body, **{"Mcp-Name": mcp_name})
        return Answer(response.status_code, _reply(response))


class SsePath:
    """SSE: the stream is read in a thread; a body's answer is the reply to its id on the stream."""

    def __init__(self, http: httpx2.Client, server: ServerProcess, stream: queue.Queue[dict[str, Any]], url: str):
        self.http, self.server, self.stream, self.url = http, server, stream, url
        self._next_id = 100

    def _exchange(self, body: bytes) -> Answer:
        response = self.http.post(self.url, content=body)
        if response.status_code != 202:
            return Answer(response.status_code, None)
        # Messages run in order of arrival: once a ping sent after the body is answered, the body's
        # own reply (if it made one) is already in the queue.
        self._next_id += 1
        ping = self._next_id
        self.http.post(self.url, json={"jsonrpc": "2.0", "id": ping, "method": "ping"})
        replies = []
        while True:
            message = self.stream.get(timeout=10)
            if message.get("id") == ping:
                break
            replies.append(message)
        errors = [r for r in replies if "error" in r]
        return Answer(202, errors[0] if errors else (replies[0] if replies else None))

    def send(self, body: bytes, *, mcp_name: str = "star_repository") -> Answer:
        return self._exchange(body)


@contextmanager
def sse_path(server: ServerProcess, bearer: str) -> Iterator[SsePath]:
    """An initialized SSE session; the stream is closed and its reader joined on exit."""
    headers = {"Authorization": f"Bearer {bearer}"}
    stream: queue.Queue[dict[str, Any]] = queue.Queue()
    endpoint: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    reader_http = httpx2.Client(headers=headers, timeout=httpx2.Timeout(10, read=None))

    def read() -> None:
        try:
            listen()
        except httpx2.HTTPError:
            if not stop.is_set():  # closed by the test on exit: expected
                raise

    def listen() -> None:
        with reader_http.stream("GET", server.mcp_url, headers={"Accept": "text/event-stream"}) as response:
            event = ""
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                    if event == "endpoint":
                        endpoint.put(data)
                    else:
                        stream.put(json.loads(data))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with httpx2.Client(headers=headers, timeout=10) as http:
        url = server.url + endpoint.get(timeout=10)
        path = SsePath(http, server, stream, url)
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
        }
        http.post(url, json=initialize)
        assert stream.get(timeout=10)["id"] == 1
        http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        try:
            yield path
        finally:
            stop.set()
            reader_http.close()
            reader.join(timeout=10)


@contextmanager
def http_path(kind: str, server: ServerProcess, bearer: str) -> Iterator[Path]:
    headers = {
        "Authorization": f"Bearer {bearer}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    with httpx2.Client(headers=headers, timeout=10) as http:
        yield ModernPath(http, server) if kind == "modern" else LegacyPath(http, server)
