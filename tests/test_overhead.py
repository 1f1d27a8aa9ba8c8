"""Issue 5: authentication at the price of the plain SDK, without weakening a promise.

Revocation stays exact on this process and is honoured within a second on other replicas
(token_cache.py), the scope check skips only parses that provably find nothing, the benchmark
runs, and a tool call costs one upstream request. Nothing here is timed except the replica bound.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from starlette.types import Message

from ghmcp.auth import scopes
from ghmcp.auth.bearer import BearerGate
from ghmcp.auth.records import GitHubAccessToken
from ghmcp.auth.token_cache import TokenCache
from ghmcp.storage import Grant
from ghmcp.web import build
from ghmcp.web.access_log import RequestLog
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    ROOT,
    ServerProcess,
    bearer_client,
    in_process_settings,
    mcp_status,
    refresh_grant,
    revoke_request,
    sign_in_tokens,
)

pytestmark = pytest.mark.anyio

REPLICA_BOUND_SECONDS = 1.0


def replicas(start_server: StartServer, tmp_path: Path) -> tuple[ServerProcess, ServerProcess]:
    """Two replicas of one deployment: the same SQLite file, the same public URL (so tokens fit both)."""
    a = start_server(tmp_path / "shared")
    b = start_server(tmp_path / "shared", env={"MCP_SERVER_URL": a.url})
    return a, b


async def warm(server: ServerProcess, access: str) -> None:
    """A few accepted requests, so the server holds the token in its cache."""
    for _ in range(3):
        assert await mcp_status(server, access) == 200


async def seconds_until_refused(server: ServerProcess, access: str, limit: float = 5.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if await mcp_status(server, access) == 401:
            return time.monotonic() - start
    return limit


@pytest.mark.parametrize("change", ["revoke", "rotate"])
async def test_a_revoked_or_rotated_token_is_refused_here_at_once_and_on_another_replica_within_a_second(
    start_server: StartServer, tmp_path: Path, change: str
) -> None:
    a, b = replicas(start_server, tmp_path)
    signed_in = await sign_in_tokens(a)
    await warm(a, signed_in.access)
    await warm(b, signed_in.access)

    if change == "revoke":
        assert (await revoke_request(a, signed_in.client.client_id, signed_in.access)).status_code == 200
    else:
        rotated = await refresh_grant(signed_in.client, signed_in.refresh)
        assert rotated.status_code == 200
        assert await mcp_status(b, rotated.json()["access_token"]) == 200

    assert await mcp_status(a, signed_in.access) == 401  # the next request on the same process
    assert await seconds_until_refused(b, signed_in.access) < REPLICA_BOUND_SECONDS


async def test_an_upstream_revocation_ends_a_cached_token_on_the_next_request(
    server: ServerProcess, github: FakeGitHub
) -> None:
    signed_in = await sign_in_tokens(server)
    await warm(server, signed_in.access)
    github.revoke_authorization("alice")
    async with bearer_client(server, signed_in.access) as client:
        result = await client.call_tool("get_user_profile", {})
    assert result.is_error  # GitHub said 401: the grant is killed on this process...

    assert await mcp_status(server, signed_in.access) == 401  # ...and the cached token with it


async def test_one_upstream_request_per_tool_call(server: ServerProcess, github: FakeGitHub) -> None:
    signed_in = await sign_in_tokens(server)
    async with bearer_client(server, signed_in.access) as client:
        await client.call_tool("get_user_profile", {})  # first call: nothing is warm yet
        before = len(github.requests)
        for _ in range(5):
            result = await client.call_tool("get_user_profile", {})
            assert not result.is_error
    assert github.requests[before:] == [("GET", "/user")] * 5


def test_the_benchmark_runs() -> None:
    """A smoke run of bench/bench_overhead.py, so it never rots (its figures are not checked)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_overhead.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = ["tools/call calls/s", "tools/call cpu/call", "ping calls/s", "added p50 @50ms", "per tool call: 1.000"]
    for line in printed:
        assert line in done.stdout, done.stdout


# The scope check's fast path: it may skip the parse only when the parse would find no tool call.

ESCAPED = [
    rb'{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"star_repository"}}',
    rb'{"jsonrpc":"2.0","id":1,"method":"\u0074ools/call","params":{"name":"star_repository"}}',
    rb'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools\u002fcall",'
    rb'"params":{"name":"star_repository"}}]',
]
PLAIN = [
    rb'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"star_repository"}}',
    rb'{"jsonrpc":"2.0","id":1,"method":"ping"}',
    rb'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"tools/cal"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\xff"}}',
    b"",
    b"not json",
]


@pytest.mark.parametrize("body", ESCAPED + PLAIN)
def test_the_scope_check_skips_a_parse_only_when_it_would_find_nothing(body: bytes) -> None:
    assert scopes._may_be_gated(body) or scopes._gated_calls(body) in ([], None)


NOT_PLAIN_UTF8 = [
    b"\xef\xbb\xbf" + PLAIN[1],
    PLAIN[1].decode().encode("utf-16-le"),
    PLAIN[1].decode().encode("utf-32"),
    PLAIN[1].replace(b'"ping"', b'"ping","x":"\xed\xa0\x80"'),
]


@pytest.mark.parametrize("body", NOT_PLAIN_UTF8)
def test_a_body_other_than_plain_utf8_is_always_parsed_and_refused(body: bytes) -> None:
    """Issue 15: the SDK's json.loads reads these; the strict parse does not, so the gate refuses them."""
    assert scopes._may_be_gated(body)
    assert scopes._gated_calls(body) is None


@pytest.mark.parametrize("body", ESCAPED)
def test_escaped_tool_calls_are_still_checked(body: bytes) -> None:
    assert scopes._may_be_gated(body)
    assert scopes._gated_calls(body) == [("tools/call", "star_repository")]


async def test_an_escaped_tool_call_without_its_scope_gets_403(server: ServerProcess) -> None:
    signed_in = await sign_in_tokens(server, scope="user")
    headers = {
        "Authorization": f"Bearer {signed_in.access}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    async with httpx2.AsyncClient(timeout=10) as http:
        for body in ESCAPED:
            response = await http.post(server.mcp_url, content=body, headers=headers)
            assert response.status_code == 403, body


async def test_the_scope_layer_passes_a_skipped_body_through_unchanged() -> None:
    seen: list[bytes] = []

    async def app(scope: object, receive: object, send: object) -> None:
        seen.append((await receive())["body"])  # type: ignore[operator]

    async def verify(token: str) -> AccessToken | None:
        return AccessToken(token=token, client_id="c", scopes=["user"], resource="http://x/mcp")

    layer = BearerGate(app, verify, "http://x/mcp", "http://x/.well-known/oauth-protected-resource", MCPServer("u"))
    body = rb'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    chunks: list[Message] = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.request", "body": body[10:]},
    ]

    async def receive() -> Message:
        return chunks.pop(0)

    async def send(message: Message) -> None:
        raise AssertionError(f"answered {message}")

    await layer({"type": "http", "method": "POST", "headers": [(b"authorization", b"Bearer t")]}, receive, send)
    assert seen == [body]


# The cache itself.


def test_the_grant_carried_with_an_access_token_is_the_same_object_and_in_no_dump_or_repr() -> None:
    """The grant rides with the cached token so a tool call reads no store; its ciphertexts never print."""
    grant = Grant("g1", "github:1", "c", "alice", "gAAAA-token-ciphertext", "gAAAA-refresh", None, None, "", False)
    access = GitHubAccessToken(
        token="t", client_id="c", scopes=["user"], expires_at=None, grant_id="g1", family_id="f", grant=grant
    )
    assert access.grant is grant  # not validated into a copy: one object per cached token
    assert "grant" not in access.model_dump() and "gAAAA" not in access.model_dump_json()
    assert "gAAAA" not in repr(access) and "gAAAA" not in str(access)


def test_a_cached_record_is_trusted_only_for_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("ghmcp.auth.token_cache.time.monotonic", lambda: now[0])
    cache: TokenCache[str] = TokenCache(lambda enc: enc, ttl=0.5)
    cache.put("h", "record", cache.epoch)
    now[0] += 0.4
    assert cache.get("h") == "record"
    now[0] += 0.2
    assert cache.get("h") is None


def test_a_store_read_that_began_before_an_invalidation_is_not_kept() -> None:
    cache: TokenCache[str] = TokenCache(lambda enc: enc)
    epoch = cache.epoch  # a store read starts...
    cache.invalidate()  # ...a revocation lands meanwhile...
    cache.put("h", "read before the revocation", epoch)
    assert cache.get("h") is None


def test_decrypted_github_tokens_follow_the_ciphertext_and_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    decrypted: list[str] = []

    def decrypt(enc: str) -> str:
        decrypted.append(enc)
        return f"plain-{enc}"

    monkeypatch.setattr("ghmcp.auth.token_cache.MAX_ENTRIES", 2)
    cache: TokenCache[str] = TokenCache(decrypt)
    assert cache.github_token("g1", "v1") == "plain-v1"
    assert cache.github_token("g1", "v1") == "plain-v1"
    assert decrypted == ["v1"]  # once per grant and ciphertext
    assert cache.github_token("g1", "v2") == "plain-v2"  # a refreshed token is never served stale
    cache.github_token("g2", "a")
    cache.github_token("g3", "b")
    assert len(cache._github) == 2 and "g1" not in cache._github
    cache.invalidate()
    assert not cache._github


# The access log.


async def run_logged(path: str) -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]

    async def send(message: Message) -> None:
        return None

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"code=secret"}
    await RequestLog(app)(scope, receive, send)


async def test_mcp_requests_are_logged_at_debug_and_other_paths_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mcp_server"):
        await run_logged("/mcp")
        await run_logged("/token")
    assert [r.getMessage() for r in caplog.records] == ["POST /token 200"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="mcp_server"):
        await run_logged("/mcp")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.DEBUG, "POST /mcp 200")]


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
async def test_mcp_calls_skip_the_anonymous_layers_but_keep_their_debug_access_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture, level: int
) -> None:
    """app.DirectToMcp: /mcp goes straight to its gate, which still refuses, and at DEBUG is still logged."""
    settings = in_process_settings(monkeypatch, "http://127.0.0.1:9", tmp_path)
    with caplog.at_level(level, logger="mcp_server"):
        asgi = build.build_app(settings)
        transport = httpx2.ASGITransport(app=asgi)
        async with httpx2.AsyncClient(transport=transport, base_url=settings.server_url) as http:
            refused = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            metadata = await http.get("/.well-known/oauth-authorization-server")
    assert refused.status_code == 401 and "resource_metadata=" in refused.headers["www-authenticate"]
    assert metadata.status_code == 200
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "mcp_server"]
    expected = [(logging.DEBUG, "POST /mcp 401")] if level == logging.DEBUG else []
    assert lines == [*expected, (logging.INFO, "GET /.well-known/oauth-authorization-server 200")]
