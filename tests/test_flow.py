"""End to end: the SDK's own OAuth client signs in through the fake GitHub and calls tools."""

from __future__ import annotations

import httpx2
import pytest

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import McpUser, MemoryTokens, ServerProcess, Transport

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_sign_in_and_get_profile_on_both_transports(
    start_server: StartServer, github: FakeGitHub, transport: Transport
) -> None:
    server = start_server(transport=transport)
    async with McpUser(server) as user:
        async with user.connect() as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("get_user_profile", {})
    assert {"get_user_profile", "list_my_repositories", "star_repository"} <= tools
    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["login"] == "alice"
    assert result.structured_content["id"] == 1001
    assert result.structured_content["email"] == "alice@example.com"


async def test_two_users_of_one_client_each_see_their_own_profile(
    start_server: StartServer, github: FakeGitHub
) -> None:
    """The tutorial bug: looking up 'any GitHub token of this client' shows users each other's accounts."""
    server = start_server()
    async with McpUser(server) as alice:
        first = await alice.call("get_user_profile")
        assert alice.storage.client_info is not None
        github.sign_in("bob")
        async with McpUser(server, MemoryTokens(alice.storage.client_info)) as bob:  # the same registered client
            second = await bob.call("get_user_profile")
            again = await alice.call("get_user_profile")
    assert bob.storage.client_info is not None
    assert bob.storage.client_info.client_id == alice.storage.client_info.client_id
    assert first.structured_content["login"] == "alice"
    assert second.structured_content["login"] == "bob"
    assert again.structured_content["login"] == "alice"


async def test_issued_tokens_are_the_servers_own(start_server: StartServer, github: FakeGitHub) -> None:
    server = start_server()
    async with McpUser(server) as user:
        await user.call("get_user_profile")
    tokens = user.storage.tokens
    assert tokens is not None and tokens.refresh_token is not None
    github_tokens = set(github.live_tokens_for("alice"))
    assert github_tokens, "the server holds a GitHub token for alice"
    assert tokens.access_token not in github_tokens
    assert not tokens.access_token.startswith(("gho_", "ghu_"))
    assert tokens.expires_in is not None and 3500 <= tokens.expires_in <= 3600


async def test_github_unreachable_is_a_clear_tool_error(start_server: StartServer, github: FakeGitHub) -> None:
    server = start_server()
    async with McpUser(server) as user:
        await user.call("get_user_profile")
        # Point the running server's GitHub at a closed port by stopping and restarting it elsewhere.
        server.stop()
        server.env["MCP_GITHUB_API_URL"] = "http://127.0.0.1:9"
        server.start()
        result = await user.call("get_user_profile")
    assert result.is_error is True
    text = result.content[0].text
    assert "GitHub is unreachable" in text
    assert "Traceback" not in text


async def test_healthz(server: ServerProcess) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
