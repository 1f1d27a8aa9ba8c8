"""Issue 16: what a forker meets when adding a tool, and the quick start's single consent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.mcpserver import MCPServer

import main
import tools
from ghmcp import sdk
from ghmcp.auth.records import GitHubAccessToken
from ghmcp.auth.scopes import TOOL_SCOPES, ScopeCheck
from ghmcp.storage import Grant
from ghmcp.web import build
from tests.fake_github import FakeGitHub
from tests.support import McpUser, ServerProcess, in_process_settings, tool_error
from tools import register_tools
from tools.core import READ, GitHubCaller, scoped_tool

pytestmark = pytest.mark.anyio


def test_a_tool_naming_an_unknown_scope_stops_the_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], github_url: str, tmp_path: Path
) -> None:
    def register_with_a_typo(mcp: MCPServer, provider: Any) -> None:
        register_tools(mcp, provider)
        monkeypatch.setitem(TOOL_SCOPES, "get_rate_limit", "")  # undone after the test, whatever happens

        @scoped_tool(mcp, "users")  # a typo for "user"
        async def get_rate_limit() -> str:
            return "never"

    settings = in_process_settings(monkeypatch, github_url, tmp_path)
    monkeypatch.setattr(build, "register_tools", register_with_a_typo)
    monkeypatch.setattr(main, "load_settings", lambda **_: settings)

    assert main.main(["--port", "8000"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "Configuration error: Tool get_rate_limit declares an unknown scope 'users': the scopes are user, "
        "repo:read, repo:write, repo:private (or EVERYONE for any signed-in caller)."
    ]


def test_every_module_dropped_into_tools_is_registered(
    monkeypatch: pytest.MonkeyPatch, github_url: str, tmp_path: Path
) -> None:
    extra = tmp_path / "extra_tools"
    extra.mkdir()
    (extra / "forkers_tool.py").write_text(
        "from tools.core import READ, scoped_tool\n\n\n"
        "def register(mcp, github):\n"
        '    @scoped_tool(mcp, "user", annotations=READ)\n'
        "    async def forkers_tool() -> str:\n"
        '        return "mine"\n'
    )
    monkeypatch.setattr(tools, "__path__", [*tools.__path__, str(extra)])
    monkeypatch.setitem(TOOL_SCOPES, "forkers_tool", "user")
    app = build.build_app(in_process_settings(monkeypatch, github_url, tmp_path / "data"))
    names = {tool.name for tool in sdk.tools(app.state.mcp)}
    assert "forkers_tool" in names and "get_user_profile" in names


async def test_an_endpoint_the_stand_in_lacks_is_named_in_the_tool_error(
    monkeypatch: pytest.MonkeyPatch, github: FakeGitHub, github_url: str, tmp_path: Path
) -> None:
    provider = build.build_provider(in_process_settings(monkeypatch, github_url, tmp_path))
    mcp = MCPServer("forker")
    mcp.middleware.append(ScopeCheck(mcp))
    github_caller = GitHubCaller(provider)
    monkeypatch.setitem(TOOL_SCOPES, "get_rate_limit", "user")

    @scoped_tool(mcp, "user", annotations=READ)
    async def get_rate_limit() -> Any:
        return await github_caller.call(lambda token: github_caller.api.get(token, ("rate_limit",)))

    token = github.issue_token("alice", ["read:user"]).access_token
    grant = Grant("g1", "github:1", "c", "alice", provider.keyring.encrypt(token), None, None, None, "read:user", False)
    access = GitHubAccessToken(
        token="t", client_id="c", scopes=["user"], expires_at=None, grant_id="g1", family_id="f", grant=grant
    )
    context = auth_context_var.set(AuthenticatedUser(access))
    try:
        async with Client(mcp) as client:
            result = await client.call_tool("get_rate_limit", {})
    finally:
        auth_context_var.reset(context)
        await provider.github.http.aclose()

    assert result.is_error
    missing = "GET /rate_limit is not in the demo stand-in: add it in ghmcp/standin/ (routes in oauth.py)."
    assert tool_error(result).endswith(missing)


async def test_the_default_scope_covers_reading_a_repository_without_a_step_up(
    server: ServerProcess, github: FakeGitHub
) -> None:
    async with McpUser(server) as user:
        repository = await user.call("get_repository", {"owner": "bob", "repo": "hello-world"})
        profile = await user.call("get_user_profile")
        assert not repository.is_error and not profile.is_error
        assert user.storage.tokens is not None and user.storage.tokens.scope == "user repo:read"
    assert len(github.authorize_requests) == 1  # one consent, one trip through GitHub
