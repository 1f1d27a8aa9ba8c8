"""The user's GitHub token behind the MCP tokens (issue 4): GitHub App tokens are refreshed before
they expire, a refused refresh or an upstream revocation ends the MCP sign-in with a clear
"reconnect" tool error and HTTP 401 afterwards, and OAuth App tokens (no expiry) just keep working.

The server decides "about to expire" from the `expires_at` it stored, with its own clock; the
fake GitHub has its own clock. Tests therefore expire the token at the fake AND move the stored
`expires_at` in the server's SQLite file.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from mcp.types import CallToolResult, TextContent

from ghmcp.auth.keys import Keyring
from tests.fake_github import FakeGitHub
from tests.support import ManualClient, McpUser, ServerProcess, mcp_status, refresh_grant, server_db

pytestmark = pytest.mark.anyio


def client_id(user: McpUser) -> str:
    assert user.storage.client_info is not None and user.storage.client_info.client_id is not None
    return user.storage.client_info.client_id


def access_token(user: McpUser) -> str:
    assert user.storage.tokens is not None
    return user.storage.tokens.access_token


def grant(server: ServerProcess, user: McpUser) -> dict[str, Any]:
    with server_db(server) as db:
        cursor = db.execute("SELECT * FROM grants WHERE client_id = ?", (client_id(user),))
        row = cursor.fetchone()
        assert row is not None
        return dict(zip([c[0] for c in cursor.description], row, strict=True))


def expire(server: ServerProcess, user: McpUser, github: FakeGitHub) -> None:
    """GitHub's 8 hours are over: at the fake, and (30 s before the end) in the server's store."""
    github.expire_all_access_tokens()
    with server_db(server) as db:
        db.execute("UPDATE grants SET expires_at = ? WHERE client_id = ?", (time.time() + 30, client_id(user)))


def github_refreshes(github: FakeGitHub) -> int:
    return sum(1 for r in github.token_requests if r.get("grant_type") == "refresh_token")


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def login(result: CallToolResult) -> str:
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return str(result.structured_content["login"])


async def test_an_expiring_github_token_is_refreshed_before_a_tool_call(
    server: ServerProcess, user: McpUser, github: FakeGitHub
) -> None:
    github.expiring_tokens = True
    assert login(await user.call("get_user_profile")) == "alice"
    [first_token] = github.live_tokens_for("alice")
    assert first_token.startswith("ghu_")
    assert grant(server, user)["refresh_enc"] is not None

    expire(server, user, github)
    assert login(await user.call("get_user_profile")) == "alice"

    assert github_refreshes(github) == 1
    [second_token] = github.live_tokens_for("alice")
    assert second_token != first_token
    assert grant(server, user)["expires_at"] > time.time() + 7 * 3600  # GitHub's new 8 hours were stored

    # GitHub rotated the refresh token too; the new one was stored, so the next refresh works.
    expire(server, user, github)
    assert login(await user.call("get_user_profile")) == "alice"
    assert github_refreshes(github) == 2


async def test_concurrent_tool_calls_refresh_the_github_token_once(
    server: ServerProcess, user: McpUser, github: FakeGitHub
) -> None:
    github.expiring_tokens = True
    async with user.connect() as client:
        assert login(await client.call_tool("get_user_profile", {})) == "alice"
        expire(server, user, github)

        results = await asyncio.gather(*(client.call_tool("get_user_profile", {}) for _ in range(3)))

    # GitHub's refresh tokens are single use: a second refresh would have been refused.
    assert [login(r) for r in results] == ["alice"] * 3
    assert github_refreshes(github) == 1


async def test_a_refused_github_refresh_asks_to_reconnect_and_ends_the_sign_in(
    server: ServerProcess, user: McpUser, github: FakeGitHub
) -> None:
    github.expiring_tokens = True
    assert login(await user.call("get_user_profile")) == "alice"
    assert user.storage.tokens is not None
    tokens = user.storage.tokens
    expire(server, user, github)
    github.refuse_refresh = True

    result = await user.call("get_user_profile")

    assert result.is_error
    assert "Reconnect" in text(result)
    assert await mcp_status(server, tokens.access_token) == 401
    assert tokens.refresh_token is not None
    refreshed = await refresh_grant(ManualClient(server, client_id(user)), tokens.refresh_token)
    assert refreshed.status_code == 400

    # Reconnecting (the SDK client runs OAuth again on the 401) brings a fresh GitHub token.
    assert login(await user.call("get_user_profile")) == "alice"
    assert access_token(user) != tokens.access_token


async def test_oauth_app_tokens_do_not_expire(server: ServerProcess, user: McpUser, github: FakeGitHub) -> None:
    assert login(await user.call("get_user_profile")) == "alice"
    [github_token] = github.live_tokens_for("alice")
    assert github_token.startswith("gho_")
    assert grant(server, user)["expires_at"] is None

    github.advance_clock(90 * 24 * 3600)

    assert login(await user.call("get_user_profile")) == "alice"
    assert github_refreshes(github) == 0
    assert github.live_tokens_for("alice") == [github_token]


async def test_an_upstream_revocation_is_noticed(server: ServerProcess, user: McpUser, github: FakeGitHub) -> None:
    assert login(await user.call("get_user_profile")) == "alice"
    tokens = user.storage.tokens
    assert tokens is not None and tokens.refresh_token is not None
    github.revoke_authorization("alice")  # the user revoked the app in their GitHub settings

    result = await user.call("get_user_profile")

    assert result.is_error
    assert "Reconnect" in text(result)
    assert await mcp_status(server, tokens.access_token) == 401
    refreshed = await refresh_grant(ManualClient(server, client_id(user)), tokens.refresh_token)
    assert refreshed.status_code == 400
    # Signing in again works.
    assert login(await user.call("get_user_profile")) == "alice"


async def test_a_github_token_replaced_on_another_replica_is_retried_not_taken_for_a_revocation(
    server: ServerProcess, user: McpUser, github: FakeGitHub
) -> None:
    """A tool call takes the GitHub token from the grant read with the MCP token (up to
    token_cache.TTL_SECONDS old). When another replica has meanwhile replaced it (a refresh, a new
    sign-in) and the old one is gone at GitHub, the 401 must lead to the stored token, not end the grant."""
    assert login(await user.call("get_user_profile")) == "alice"  # this process now holds the grant as read
    old_token = Keyring([server.environment()["MCP_SECRET_KEY"]]).decrypt(grant(server, user)["token_enc"])
    assert old_token is not None
    new_token = github.issue_token("alice", ["read:user"]).access_token
    with server_db(server) as db:  # what another replica's refresh writes
        new_enc = Keyring([server.environment()["MCP_SECRET_KEY"]]).encrypt(new_token)
        db.execute("UPDATE grants SET token_enc = ? WHERE client_id = ?", (new_enc, client_id(user)))
    github.revoke_token(old_token)
    before = github.count("/user", "GET")

    assert login(await user.call("get_user_profile")) == "alice"

    assert github.count("/user", "GET") - before in (1, 2)  # 2: the copy in memory was refused, then the stored one
    assert not grant(server, user)["dead"]
    assert await mcp_status(server, access_token(user)) == 200
