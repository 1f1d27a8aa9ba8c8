"""Issue 15 (1/8): the scope decision is taken on what the SDK executes, whatever the bytes.

A caller signed in with `user` only must never get `star_repository` (repo:write) or
`list_my_repositories` (repo:read) to run, on the 2026-07-28 path, a legacy session or SSE, however
the body is spelled: a byte-order mark, UTF-16/32, lone surrogates, escapes, duplicate keys, a
disagreeing `Mcp-Name` header, batches. What counts is what reaches GitHub: nothing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pydantic_core
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, types
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer

from ghmcp.auth import scopes
from tests.fake_github import FakeGitHub
from tests.scope_paths import Path, call_text, http_path, sse_path
from tests.support import ServerProcess, refresh_grant, sign_in_tokens

StartServer = Callable[..., ServerProcess]
ARGS = {"owner": "octocat", "repo": "hello-world"}
KINDS = ["modern", "legacy", "sse"]
GATED = {"star_repository": "repo:write", "list_my_repositories": "repo:read"}


def variants(modern: bool) -> dict[str, tuple[bytes, str]]:
    """(body, Mcp-Name header) for each spelling the issue names, all calling a tool beyond `user`."""
    plain = call_text("star_repository", ARGS, modern=modern)
    profile = call_text("get_user_profile", {}, modern=modern)
    ping = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "ping"})
    star = "star_repository"
    surrogate = plain.replace('"hello-world"', '"hello-world", "x": "S"')
    return {
        "byte-order mark": (b"\xef\xbb\xbf" + plain.encode(), star),
        "UTF-16": (plain.encode("utf-16"), star),
        "UTF-16 without BOM": (plain.encode("utf-16-le"), star),
        "UTF-32": (plain.encode("utf-32"), star),
        "lone surrogate": (plain.replace('"hello-world"', '"hello-world", "x": "\\ud800"').encode(), star),
        "encoded surrogate": (surrogate.encode().replace(b'"S"', b'"\xed\xa0\x80"'), star),
        "escaped tool name": (plain.replace('"star_repository"', '"\\u0073tar_repository"').encode(), star),
        "escaped method": (plain.replace('"tools/call"', '"tools\\/call"').encode(), star),
        "duplicate name keys": (plain.replace('"name": ', '"name": "get_user_profile", "name": ').encode(), star),
        "Mcp-Name disagrees": (plain.encode(), "get_user_profile"),
        "batch": (f"[{ping}, {plain}]".encode(), star),
        "batch after an allowed call": (f"[{profile}, {plain}]".encode(), star),
    }


def nothing_reached_github(github: FakeGitHub) -> bool:
    """No star, no repository listing, no write of any kind at the stand-in."""
    reached = [r for r in github.requests if r[0] != "GET" or r[1].startswith("/user/repos")]
    return github.users["alice"].starred == set() and not reached


@contextlib.contextmanager
def open_path(kind: str, server: ServerProcess, bearer: str) -> Iterator[Path]:
    with sse_path(server, bearer) if kind == "sse" else http_path(kind, server, bearer) as path:
        yield path


def server_for(kind: str, server: ServerProcess, start_server: StartServer) -> ServerProcess:
    return start_server(transport="sse") if kind == "sse" else server


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_every_spelling_of_a_call_beyond_the_grant_is_refused(
    kind: str, server: ServerProcess, start_server: StartServer, github: FakeGitHub
) -> None:
    target = server_for(kind, server, start_server)
    signed_in = await sign_in_tokens(target, scope="user")
    github.requests.clear()

    def run() -> dict[str, Any]:
        with open_path(kind, target, signed_in.access) as path:
            return {
                name: path.send(body, mcp_name=header) for name, (body, header) in variants(kind == "modern").items()
            }

    answers = await anyio.to_thread.run_sync(run)

    not_refused = {name: (a.status, a.reply) for name, a in answers.items() if not a.refused}
    assert not_refused == {}
    assert nothing_reached_github(github), github.requests


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_refresh_narrowed_to_user_cannot_write(
    kind: str, server: ServerProcess, start_server: StartServer, github: FakeGitHub
) -> None:
    target = server_for(kind, server, start_server)
    signed_in = await sign_in_tokens(target, scope="user repo:write")
    narrowed = await refresh_grant(signed_in.client, signed_in.refresh, scope="user")
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "user"
    body = call_text("star_repository", ARGS, modern=kind == "modern").encode()

    def run() -> list[Any]:
        with open_path(kind, target, narrowed.json()["access_token"]) as path:
            return [path.send(body), path.send(b"\xef\xbb\xbf" + body)]

    answers = await anyio.to_thread.run_sync(run)

    assert all(a.refused for a in answers), answers
    assert github.users["alice"].starred == set()


# The property: whatever the bytes, if any of the SDK's decoders would read a gated call the token
# lacks, the server refuses and nothing reaches GitHub.

DECODERS: list[Callable[[bytes], Any]] = [
    json.loads,  # the 2026-07-28 path
    pydantic_core.from_json,  # legacy Streamable HTTP
    lambda body: types.jsonrpc_message_adapter.validate_json(body, by_name=False).model_dump(),  # SSE
]


def gated_reading(body: bytes) -> bool:
    """Whether some SDK decoder reads `body` as calling a tool this caller (scope `user`) lacks."""
    for decode in DECODERS:
        try:
            decoded = decode(body)
        except Exception:  # noqa: S112 (a decoder that refuses the body dispatches nothing)
            continue
        for message in decoded if isinstance(decoded, list) else [decoded]:
            params = message.get("params") if isinstance(message, dict) else None
            if message.get("method") == "tools/call" and isinstance(params, dict) and params.get("name") in GATED:
                return True
    return False


def _escape_some(text: str, mask: list[bool]) -> str:
    return (
        "".join(f"\\u{ord(c):04x}" if escape else c for c, escape in zip(text, mask, strict=False)) + text[len(mask) :]
    )


@st.composite
def bodies(draw: st.DrawFn, modern: bool) -> tuple[bytes, str]:
    tool = draw(st.sampled_from(sorted(GATED)))
    space = st.text(alphabet=" \t\r\n", max_size=3)
    name = _escape_some(tool, draw(st.lists(st.booleans(), max_size=len(tool))))
    method = _escape_some("tools/call", draw(st.lists(st.booleans(), max_size=10)))
    if draw(st.booleans()):
        method = method.replace("/", "\\/")
    name_members = [f'"name":"{name}"']
    decoy = draw(st.sampled_from(["", "before", "after"]))
    if decoy:
        position = 0 if decoy == "before" else 1
        name_members.insert(position, '"name":"get_user_profile"')
    extra = draw(st.sampled_from(["", ',"x":"\\ud800"', ',"x":"\\udc00\\ud800"', ',"x":"\\u0000"']))
    arguments = '{"owner":"octocat","repo":"hello-world"' + extra + "}"
    meta = f',"_meta":{json.dumps(scopes_envelope())}' if modern else ""
    params = "{" + ",".join([*name_members, f'"arguments":{arguments}']) + meta + "}"
    members = ['"jsonrpc":"2.0"', '"id":9', f'"method":"{method}"', f'"params":{params}']
    message = "{" + draw(space) + (draw(space) + "," + draw(space)).join(members) + draw(space) + "}"
    if draw(st.booleans()):
        message = '[{"jsonrpc":"2.0","id":2,"method":"ping"},' + message + "]"
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"]))
    header = draw(st.sampled_from([tool, "get_user_profile"]))
    return draw(space).encode(encoding) + message.encode(encoding, "surrogatepass"), header


def scopes_envelope() -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.timeout(300)
async def test_no_decoding_of_any_body_runs_a_tool_beyond_the_grant(
    kind: str, server: ServerProcess, start_server: StartServer, github: FakeGitHub
) -> None:
    target = server_for(kind, server, start_server)
    signed_in = await sign_in_tokens(target, scope="user")
    github.requests.clear()
    checked = []

    def run() -> None:
        with open_path(kind, target, signed_in.access) as path:

            @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
            @given(bodies(kind == "modern"))
            def each(case: tuple[bytes, str]) -> None:
                body, header = case
                answer = path.send(body, mcp_name=header)
                assert answer.status < 500, (body, answer)
                if gated_reading(body):
                    checked.append(body)
                    assert answer.refused, (body, answer)
                assert nothing_reached_github(github), (body, github.requests)

            each()

    await anyio.to_thread.run_sync(run)
    assert len(checked) >= 20  # most generated bodies are read as a gated call by some decoder


# The central check alone, with no HTTP fast path in front: an SDK server and its in-memory client.


def _caller(granted: list[str] | None) -> AuthenticatedUser | None:
    if granted is None:
        return None
    return AuthenticatedUser(AccessToken(token="t", client_id="c", scopes=granted, expires_at=None))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tool", "granted", "runs"),
    [
        ("needs_write", ["user"], False),
        ("needs_write", None, False),  # no caller at all: fails closed
        ("needs_write", ["user", "repo:write"], True),
        ("undeclared", ["user", "repo:write", "repo:read", "repo:private"], False),
        ("for_everyone", ["user"], True),
    ],
)
async def test_the_sdk_middleware_decides_on_its_own(
    monkeypatch: pytest.MonkeyPatch, tool: str, granted: list[str] | None, runs: bool
) -> None:
    mcp = MCPServer("scope-check")
    mcp.middleware.append(scopes.ScopeCheck(mcp))
    ran: list[str] = []

    def tool_named(name: str) -> Callable[[], str]:
        def run() -> str:
            ran.append(name)
            return "done"

        return run

    for name in ("needs_write", "undeclared", "for_everyone"):
        mcp.tool(name=name)(tool_named(name))
    monkeypatch.setitem(scopes.TOOL_SCOPES, "needs_write", "repo:write")
    monkeypatch.setitem(scopes.TOOL_SCOPES, "for_everyone", scopes.EVERYONE)

    context = auth_context_var.set(_caller(granted))
    try:
        async with Client(mcp) as client:
            if runs:
                result = await client.call_tool(tool, {})
                assert not result.is_error
            else:
                with pytest.raises(Exception, match="Forbidden"):
                    await client.call_tool(tool, {})
    finally:
        auth_context_var.reset(context)
    assert ran == ([tool] if runs else [])
