"""Refresh tokens (issue 4): rotation, reuse detection, the retry grace window, scopes, lifetimes.

Each refresh rotates the whole pair (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2). A retry of the
same refresh token within MCP_REFRESH_GRACE_SECONDS gets the same new pair (the tokens are
derived from the presented one), so a client whose answer was lost is not punished; any
other reuse revokes the family.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support import (
    ManualClient,
    ServerProcess,
    SignedIn,
    bearer_client,
    mcp_status,
    refresh_grant,
    server_db,
    sign_in_tokens,
    tool_call_request,
)

pytestmark = pytest.mark.anyio


StartServer = Callable[..., ServerProcess]
NO_GRACE = {"MCP_REFRESH_GRACE_SECONDS": "0"}


def family_state(server: ServerProcess, signed_in: SignedIn) -> tuple[int, int, int]:
    """(generation, revoked, token rows) of the one family a sign-in created."""
    with server_db(server) as db:
        family_id, generation, revoked = db.execute(
            "SELECT family_id, generation, revoked FROM families WHERE client_id = ?", (signed_in.client.client_id,)
        ).fetchone()
        (rows,) = db.execute("SELECT COUNT(*) FROM tokens WHERE family_id = ?", (family_id,)).fetchone()
    return int(generation), int(revoked), int(rows)


async def test_refresh_rotates_both_tokens_and_retires_the_old_access_token(server: ServerProcess) -> None:
    first = await sign_in_tokens(server)
    assert await mcp_status(server, first.access) == 200
    assert await mcp_status(server, first.refresh) == 401  # a refresh token is no bearer token
    assert (await refresh_grant(first.client, first.access)).status_code == 400  # and vice versa

    response = await refresh_grant(first.client, first.refresh)
    assert response.status_code == 200, response.text
    second = response.json()

    assert second["access_token"] != first.access
    assert second["refresh_token"] != first.refresh
    assert await mcp_status(server, first.access) == 401
    assert await mcp_status(server, second["access_token"]) == 200
    # And the new refresh token rotates in turn.
    third = await refresh_grant(first.client, second["refresh_token"])
    assert third.status_code == 200, third.text
    assert await mcp_status(server, second["access_token"]) == 401
    assert await mcp_status(server, third.json()["access_token"]) == 200


async def test_reuse_outside_the_grace_window_revokes_the_whole_family(start_server: StartServer) -> None:
    server = start_server(env=NO_GRACE)
    first = await sign_in_tokens(server)
    second = (await refresh_grant(first.client, first.refresh)).json()
    assert await mcp_status(server, second["access_token"]) == 200

    replay = await refresh_grant(first.client, first.refresh)  # e.g. an attacker holding the old token

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # RFC 9700 §4.14.2: the legitimate holder's newer tokens die too.
    assert await mcp_status(server, second["access_token"]) == 401
    assert (await refresh_grant(first.client, second["refresh_token"])).status_code == 400
    assert family_state(server, first)[1] == 1


async def test_retry_within_the_grace_window_gets_the_same_pair(server: ServerProcess) -> None:
    first = await sign_in_tokens(server)
    answer = await refresh_grant(first.client, first.refresh)
    retry = await refresh_grant(first.client, first.refresh)  # the first answer was "lost"

    assert answer.status_code == retry.status_code == 200, retry.text
    assert retry.json()["access_token"] == answer.json()["access_token"]
    assert retry.json()["refresh_token"] == answer.json()["refresh_token"]
    assert retry.json()["scope"] == answer.json()["scope"]
    assert await mcp_status(server, answer.json()["access_token"]) == 200
    assert family_state(server, first) == (1, 0, 4)  # one rotation: the first pair and one new pair

    # Once the new refresh token has been used, the grandparent is plain reuse, grace or not.
    newer = await refresh_grant(first.client, answer.json()["refresh_token"])
    assert newer.status_code == 200
    assert (await refresh_grant(first.client, first.refresh)).status_code == 400
    assert await mcp_status(server, newer.json()["access_token"]) == 401


async def test_reuse_of_an_older_refresh_token_is_still_caught_after_a_sweep(start_server: StartServer) -> None:
    server = start_server(env={"MCP_SWEEP_INTERVAL_SECONDS": "1"})
    first = await sign_in_tokens(server)
    second = (await refresh_grant(first.client, first.refresh)).json()
    third = (await refresh_grant(first.client, second["refresh_token"])).json()
    deadline = time.monotonic() + 10
    while "Swept expired rows" not in server.log():  # the sweep removed the superseded access tokens
        assert time.monotonic() < deadline, "no sweep within 10 s"
        await asyncio.sleep(0.1)

    replay = await refresh_grant(first.client, first.refresh)  # two generations old

    assert replay.status_code == 400
    assert await mcp_status(server, third["access_token"]) == 401


async def test_concurrent_refreshes_rotate_once_and_both_get_the_same_pair(server: ServerProcess) -> None:
    first = await sign_in_tokens(server)

    answers = await asyncio.gather(*(refresh_grant(first.client, first.refresh) for _ in range(2)))

    # The loser is treated as a retry within the grace window: it receives the winner's pair.
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    pairs = {(a.json()["access_token"], a.json()["refresh_token"]) for a in answers}
    assert len(pairs) == 1
    assert family_state(server, first) == (1, 0, 4)  # exactly one rotation, one new pair stored
    assert await mcp_status(server, pairs.pop()[0]) == 200


async def test_concurrent_refreshes_without_grace_count_as_reuse(start_server: StartServer) -> None:
    server = start_server(env=NO_GRACE)
    first = await sign_in_tokens(server)

    answers = await asyncio.gather(*(refresh_grant(first.client, first.refresh) for _ in range(2)))

    # Without a grace window the loser gets invalid_grant and reuse detection revokes the family,
    # so the winner's pair is dead too: the client has to sign in again.
    assert sorted(a.status_code for a in answers) == [200, 400]
    winner = next(a.json() for a in answers if a.status_code == 200)
    assert await mcp_status(server, winner["access_token"]) == 401
    generation, revoked, _ = family_state(server, first)
    assert (generation, revoked) == (1, 1)


async def test_a_refresh_token_only_works_for_its_own_client(server: ServerProcess) -> None:
    first = await sign_in_tokens(server)
    other = await ManualClient.register(server)

    response = await refresh_grant(other, first.refresh)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert family_state(server, first)[:2] == (0, 0)  # untouched: the owner can still refresh
    assert (await refresh_grant(first.client, first.refresh)).status_code == 200


async def test_subject_resource_and_scopes_carry_over(server: ServerProcess) -> None:
    first = await sign_in_tokens(server, scope="user repo:read")
    async with bearer_client(server, first.access) as client:
        before = await client.call_tool("get_user_profile", {})
    response = await refresh_grant(first.client, first.refresh)
    refreshed = response.json()

    assert refreshed["scope"] == "user repo:read"
    # The resource carried over, or the bearer middleware (validate_token_resource) would answer 401;
    # the subject carried over, or the tool would not know who is calling.
    async with bearer_client(server, refreshed["access_token"]) as client:
        after = await client.call_tool("get_user_profile", {})
        repos = await client.call_tool("list_my_repositories", {})
    assert not before.is_error and not after.is_error and not repos.is_error
    assert after.structured_content == before.structured_content
    assert after.structured_content is not None and after.structured_content["login"] == "alice"
    with server_db(server) as db:
        subjects = db.execute("SELECT DISTINCT subject, resource FROM families").fetchall()
    assert subjects == [("github:1001", server.mcp_url)]


async def test_an_mcp_session_survives_a_refresh(server: ServerProcess) -> None:
    """Sessions are bound to (client, issuer, subject): a refresh that lost the subject would get 404."""
    first = await sign_in_tokens(server)
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {first.access}"}, timeout=30) as http,
        Client(streamable_http_client(server.mcp_url, http_client=http)) as client,
    ):
        assert not (await client.call_tool("get_user_profile", {})).is_error
        refreshed = (await refresh_grant(first.client, first.refresh)).json()
        http.headers["Authorization"] = f"Bearer {refreshed['access_token']}"  # same session, new token
        result = await client.call_tool("get_user_profile", {})
    assert not result.is_error


async def test_refresh_may_narrow_scopes_but_not_widen_them(server: ServerProcess) -> None:
    first = await sign_in_tokens(server, scope="user repo:read")

    widened = await refresh_grant(first.client, first.refresh, scope="user repo:read repo:write")
    assert widened.status_code == 400
    assert widened.json()["error"] == "invalid_scope"

    narrowed = await refresh_grant(first.client, first.refresh, scope="user")
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "user"
    access = narrowed.json()["access_token"]
    assert (await tool_call_request(server, access, "list_my_repositories")).status_code == 403
    # The family keeps the narrowed set: the next refresh cannot get repo:read back.
    again = await refresh_grant(first.client, narrowed.json()["refresh_token"], scope="user repo:read")
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_scope"


async def test_lifetimes_come_from_settings(start_server: StartServer) -> None:
    env = {"MCP_ACCESS_TOKEN_SECONDS": "60", "MCP_REFRESH_TOKEN_SECONDS": "3600", "MCP_CODE_SECONDS": "30"}
    server = start_server(env=env)
    started = time.time()
    first = await sign_in_tokens(server)
    refreshed = (await refresh_grant(first.client, first.refresh)).json()
    finished = time.time()

    assert 0 < first.tokens["expires_in"] <= 60
    assert 0 < refreshed["expires_in"] <= 60
    with server_db(server) as db:
        (code_expiry,) = db.execute("SELECT expires_at FROM codes").fetchone()
        expiries = dict(db.execute("SELECT kind, MAX(expires_at) FROM tokens GROUP BY kind").fetchall())
    assert started + 30 <= code_expiry + 1 and code_expiry <= finished + 30
    assert expiries["access"] <= finished + 60
    assert started + 3600 <= expiries["refresh"] + 1 and expiries["refresh"] <= finished + 3600


async def test_an_expired_access_token_is_refused_and_the_refresh_token_still_works(server: ServerProcess) -> None:
    first = await sign_in_tokens(server)
    with server_db(server) as db:
        db.execute("UPDATE tokens SET expires_at = ? WHERE kind = 'access'", (time.time() - 1,))

    assert await mcp_status(server, first.access) == 401
    response = await refresh_grant(first.client, first.refresh)
    assert response.status_code == 200, response.text
    assert await mcp_status(server, response.json()["access_token"]) == 200
