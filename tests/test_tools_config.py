"""Which tools exist: MCP_READ_ONLY, MCP_TOOLS, honest annotations, and tools without a declared
scope stopping the server (at startup) or refused (at call time)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from starlette.types import Message, Receive, Scope, Send

from ghmcp.auth.bearer import BearerGate
from ghmcp.auth.scopes import DECLARED, TOOL_SCOPES
from ghmcp.config import ConfigError
from ghmcp.web import build
from tests.fake_github import FakeGitHub
from tests.support import (
    ServerProcess,
    authorize_request,
    in_process_settings,
    open_consent,
    register_client,
    signed_in_client,
    tool_error,
)
from tests.test_config import BASE, run_main
from tools import register_tools

pytestmark = pytest.mark.anyio

StartServer = Callable[..., ServerProcess]
WRITE_TOOLS = {"create_issue", "add_issue_comment", "star_repository"}
READ_TOOLS = {
    "get_user_profile",
    "list_my_repositories",
    "get_repository",
    "get_file_contents",
    "search_repositories",
    "list_issues",
    "get_issue",
    "list_pull_requests",
    "get_pull_request",
}


async def test_every_tool_is_listed_with_honest_annotations(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == READ_TOOLS | WRITE_TOOLS
    for name, tool in tools.items():
        hints = tool.annotations
        assert hints is not None and hints.open_world_hint is True
        assert hints.read_only_hint is (name in READ_TOOLS)
        assert tool.output_schema is not None  # structured output
    assert tools["create_issue"].annotations.idempotent_hint is False  # type: ignore[union-attr]
    assert tools["star_repository"].annotations.idempotent_hint is True  # type: ignore[union-attr]
    assert tools["star_repository"].annotations.destructive_hint is False  # type: ignore[union-attr]


async def test_read_only_mode_hides_and_refuses_write_tools(start_server: StartServer, github: FakeGitHub) -> None:
    server = start_server(env={"MCP_READ_ONLY": "true"})
    async with signed_in_client(server) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        refused = await client.call_tool("create_issue", {"owner": "bob", "repo": "website", "title": "x"})
        allowed = await client.call_tool("get_repository", {"owner": "bob", "repo": "website"})
    assert listed == READ_TOOLS
    assert "create_issue" in tool_error(refused)  # the SDK's "unknown tool"
    assert not allowed.is_error
    assert github.count("/repos/bob/website/issues", "POST") == 0


async def test_the_tool_allow_list(start_server: StartServer, github: FakeGitHub) -> None:
    server = start_server(env={"MCP_TOOLS": "get_repository, star_repository"})
    async with signed_in_client(server) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        refused = await client.call_tool("list_issues", {"owner": "bob", "repo": "website"})
    assert listed == {"get_repository", "star_repository"}
    assert tool_error(refused)
    assert github.count("/repos/bob/website/issues") == 0


@pytest.mark.parametrize(
    "env",
    [{"MCP_TOOLS": "get_repository,no_such_tool"}, {"MCP_TOOLS": "create_issue", "MCP_READ_ONLY": "true"}],
)
def test_a_bad_tool_selection_stops_the_server(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_main(tmp_path, BASE | env)
    assert result.returncode == 2
    assert "MCP_TOOLS" in result.stderr and "Traceback" not in result.stderr


def plain_tool(mcp: MCPServer) -> None:
    @mcp.tool()
    async def sneaky() -> str:
        return "ran"


def plain_prompt(mcp: MCPServer) -> None:
    @mcp.prompt()
    def hello() -> str:
        return "hi"


@pytest.mark.parametrize(
    ("add", "message"),
    [
        (plain_tool, "Tool sneaky declares no scope: use @scoped_tool"),
        (plain_prompt, "Prompt hello declares no scope: add it with its scope to scopes.DECLARED"),
    ],
)
def test_anything_without_a_declared_scope_stops_the_server(
    monkeypatch: pytest.MonkeyPatch,
    github_url: str,
    tmp_path: Path,
    add: Callable[[MCPServer], None],
    message: str,
) -> None:
    def register_and_add(mcp: MCPServer, provider: Any) -> None:
        register_tools(mcp, provider)
        add(mcp)

    monkeypatch.setattr(build, "register_tools", register_and_add)
    with pytest.raises(ConfigError, match=message):
        build.build_app(in_process_settings(monkeypatch, github_url, tmp_path))


async def call_through_gate(mcp: MCPServer, tool: str, method: str = "tools/call") -> tuple[int, bool]:
    """(HTTP status, whether the wrapped app ran) for a call of `tool` by a `user`-scoped caller."""
    ran = False
    sent: list[Message] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal ran
        ran = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": tool}}).encode()

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    async def verify(token: str) -> AccessToken | None:
        return AccessToken(token=token, client_id="c", scopes=["user"], resource="https://mcp.example/mcp")

    scope: Scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": [(b"authorization", b"Bearer t")]}
    await BearerGate(inner, verify, "https://mcp.example/mcp", "https://mcp.example/meta", mcp)(scope, receive, send)
    return sent[0]["status"], ran


async def test_a_registered_tool_without_a_declared_scope_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    mcp = MCPServer("gate")

    @mcp.tool()
    async def sneaky() -> str:
        return "ran"

    @mcp.tool()
    async def declared() -> str:
        return "ran"

    monkeypatch.setitem(TOOL_SCOPES, "declared", "user")

    assert await call_through_gate(mcp, "sneaky") == (403, False)
    assert await call_through_gate(mcp, "declared") == (200, True)
    assert await call_through_gate(mcp, "no_such_tool") == (200, True)  # the SDK answers "unknown tool"


async def test_the_consent_page_warns_what_githubs_repo_scope_grants(
    server: ServerProcess, github: FakeGitHub, http: httpx2.AsyncClient
) -> None:
    redirect = "https://notes.example.com/oauth/callback"
    client_id = await register_client(http, server.url, [redirect])
    page = await open_consent(http, authorize_request(server.url, client_id, redirect, scope="repo:read repo:private"))
    assert "full read and write access to all your private repositories" in page.text


async def test_prompts_are_gated_like_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    mcp = MCPServer("gate")
    plain_prompt(mcp)
    assert await call_through_gate(mcp, "hello", "prompts/get") == (403, False)
    monkeypatch.setitem(DECLARED["prompts/get"], "hello", "repo:write")
    assert await call_through_gate(mcp, "hello", "prompts/get") == (403, False)  # insufficient_scope
    monkeypatch.setitem(DECLARED["prompts/get"], "hello", "user")
    assert await call_through_gate(mcp, "hello", "prompts/get") == (200, True)
