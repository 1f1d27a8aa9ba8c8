"""Admission (issue 3): MCP_ALLOWED_GITHUB_USERS / MCP_ALLOWED_GITHUB_ORGS decide who may sign in.

The check runs at the GitHub callback with the user's own token; a refused user sees a page
whose only way out sends `access_denied` to the client, and leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import time
from html import unescape
from pathlib import Path

import httpx2
import pytest

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    CLIENT_REDIRECT,
    ServerProcess,
    approve_sign_in,
    authorize_request,
    exchange_code,
    mcp_status,
    open_consent,
    query,
    refresh_grant,
    register_client,
    server_db,
    sign_in_tokens,
    submit_consent,
    table_rows,
    through_github,
)

pytestmark = pytest.mark.anyio

BOB = "github:2002"


@pytest.fixture(scope="module")
def users_server(start_module_server: StartServer) -> ServerProcess:
    # Case and spaces as people type them.
    return start_module_server(env={"MCP_ALLOWED_GITHUB_USERS": " ALICE , carol "})


@pytest.fixture(scope="module")
def orgs_server(start_module_server: StartServer) -> ServerProcess:
    return start_module_server(env={"MCP_ALLOWED_GITHUB_ORGS": "acme"})


async def signs_in(http: httpx2.AsyncClient, server: ServerProcess) -> None:
    """A full sign-in whose code really buys tokens."""
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    auth = authorize_request(server.url, client_id, CLIENT_REDIRECT)
    params = await approve_sign_in(http, auth)
    assert params["iss"] == server.url and params["state"] == auth.state
    tokens = await exchange_code(http, server.url, auth, params["code"])
    assert tokens.status_code == 200, tokens.text


async def assert_refused(github: FakeGitHub, http: httpx2.AsyncClient, server: ServerProcess) -> None:
    """Bob's sign-in ends on the refusal page, and neither the server nor GitHub keeps anything of it."""
    github.sign_in("bob")
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT], "Bob's Editor")
    auth = authorize_request(server.url, client_id, CLIENT_REDIRECT, state="bob-state")
    to_github = await submit_consent(http, await open_consent(http, auth), "approve")

    page = await through_github(http, to_github.headers["location"])

    assert page.status_code == 403
    assert "location" not in page.headers
    assert "not allowed" in page.text and "bob" in page.text
    (link,) = re.findall(r'<a class="button" href="([^"]+)">Back to Bob&#39;s Editor</a>', page.text)
    assert unescape(link).startswith(CLIENT_REDIRECT)
    assert query(unescape(link)) == {
        "error": "access_denied",
        "error_description": "This GitHub account is not allowed",
        "state": "bob-state",
        "iss": server.url,  # RFC 9207: on error responses too
    }
    db = server.data_dir / "mcp.sqlite3"
    assert [r for r in table_rows(db, "grants") if r["subject"] == BOB] == []
    assert [r for r in table_rows(db, "consents") if r["client_id"] == client_id] == []
    assert [r for r in table_rows(db, "codes") if json.loads(r["record"])["client_id"] == client_id] == []
    assert [r for r in table_rows(db, "pending") if json.loads(r["record"])["client_id"] == client_id] == []
    assert github.live_tokens_for("bob") == []  # revoked at GitHub
    assert len(github.revocations) == 1


async def test_listed_user_gets_in_and_others_are_refused(
    github: FakeGitHub, users_server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    await signs_in(http, users_server)
    assert github.revocations == []
    async with httpx2.AsyncClient(timeout=10) as bobs_browser:
        await assert_refused(github, bobs_browser, users_server)


async def test_org_member_gets_in_and_outsiders_are_refused(
    github: FakeGitHub, orgs_server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    await signs_in(http, orgs_server)
    assert github.count("/user/memberships/orgs/acme") == 1  # checked with alice's own token
    async with httpx2.AsyncClient(timeout=10) as bobs_browser:
        await assert_refused(github, bobs_browser, orgs_server)


async def test_read_org_is_requested_from_github_only_when_orgs_are_configured(
    github: FakeGitHub, users_server: ServerProcess, orgs_server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    for server in (users_server, orgs_server):
        client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
        auth = authorize_request(server.url, client_id, CLIENT_REDIRECT, scope="user repo:write")
        await approve_sign_in(http, auth)

    users_request, orgs_request = github.authorize_requests
    assert users_request["scope"].split() == ["public_repo", "read:user"]
    assert orgs_request["scope"].split() == ["public_repo", "read:org", "read:user"]


async def test_everyone_gets_in_when_no_list_is_configured(
    github: FakeGitHub, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    github.sign_in("bob")
    await signs_in(http, server)
    assert github.count("/user/memberships/orgs/acme") == 0
    assert "read:org" not in github.authorize_requests[0]["scope"].split()


async def test_numeric_ids_admit_and_a_re_registered_login_is_refused(
    github: FakeGitHub, start_server: StartServer, http: httpx2.AsyncClient
) -> None:
    server = start_server(env={"MCP_ALLOWED_GITHUB_USERS": "2002, alice"})
    github.sign_in("bob")  # admitted by his numeric id
    await signs_in(http, server)
    github.sign_in("alice")  # admitted by login; the login is now pinned to account 1001
    async with httpx2.AsyncClient(timeout=10) as alices_browser:
        await signs_in(alices_browser, server)

    # alice renames her account; someone else registers the free login "alice".
    github.users.pop("alice")
    github.add_user("alice", id=6666, name="Not Alice")
    github.sign_in("alice")
    async with httpx2.AsyncClient(timeout=10) as impostor:
        client_id = await register_client(impostor, server.url, [CLIENT_REDIRECT], "Impostor")
        auth = authorize_request(server.url, client_id, CLIENT_REDIRECT)
        to_github = await submit_consent(impostor, await open_consent(impostor, auth), "approve")
        page = await through_github(impostor, to_github.headers["location"])
    assert page.status_code == 403 and "not allowed" in page.text
    assert [r for r in table_rows(server.data_dir / "mcp.sqlite3", "grants") if r["subject"] == "github:6666"] == []


async def test_at_start_sign_ins_the_lists_no_longer_admit_are_ended(
    github: FakeGitHub, start_server: StartServer, tmp_path: Path
) -> None:
    data = tmp_path / "shared"
    first = start_server(data)
    alice = await sign_in_tokens(first)
    github.sign_in("bob")
    bob = await sign_in_tokens(first)
    [alices_github_token] = github.live_tokens_for("alice")
    first.stop()

    second = start_server(data, env={"MCP_ALLOWED_GITHUB_USERS": "bob"}, port=first.port)

    assert await mcp_status(second, alice.access) == 401
    assert (await refresh_grant(alice.client, alice.refresh)).json()["error"] == "invalid_grant"
    assert alices_github_token in github.revocations and github.live_tokens_for("alice") == []
    assert await mcp_status(second, bob.access) == 200
    assert "Ended 1 sign-ins" in second.log()


async def test_every_refresh_re_checks_org_membership(github: FakeGitHub, start_server: StartServer) -> None:
    server = start_server(env={"MCP_ALLOWED_GITHUB_ORGS": "acme"})
    signed_in = await sign_in_tokens(server)
    refreshed = await refresh_grant(signed_in.client, signed_in.refresh)
    assert refreshed.status_code == 200
    checks = github.count("/user/memberships/orgs/acme")

    github.users["alice"].orgs.remove("acme")  # an org owner removes her
    refused = await refresh_grant(signed_in.client, refreshed.json()["refresh_token"])

    assert github.count("/user/memberships/orgs/acme") == checks + 1
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert await mcp_status(server, refreshed.json()["access_token"]) == 401
    assert github.live_tokens_for("alice") == []


async def test_a_sign_in_has_an_absolute_lifetime_across_refreshes(
    github: FakeGitHub, start_server: StartServer
) -> None:
    server = start_server(env={"MCP_SIGN_IN_MAX_SECONDS": "3600", "MCP_ACCESS_TOKEN_SECONDS": "3600"})
    signed_in = await sign_in_tokens(server)
    with server_db(server) as db:
        (refresh_expires,) = db.execute("SELECT MAX(expires_at) FROM tokens WHERE kind = 'refresh'").fetchone()
    assert refresh_expires <= time.time() + 3600  # not the 30-day refresh lifetime
    # Ninety minutes later (moved in the store: nobody waits that long), a refresh is refused.
    with server_db(server) as db:
        db.execute("UPDATE families SET signed_in_at = signed_in_at - 5400")
    refused = await refresh_grant(signed_in.client, signed_in.refresh)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert await mcp_status(server, signed_in.access) == 401


async def test_a_membership_check_github_cannot_answer_refuses_the_refresh_but_ends_nothing(
    github: FakeGitHub, start_server: StartServer
) -> None:
    server = start_server(env={"MCP_ALLOWED_GITHUB_ORGS": "acme"})
    signed_in = await sign_in_tokens(server)
    github.secondary_limit_next = 2  # GitHub answers the membership check with "slow down"

    refused = await refresh_grant(signed_in.client, signed_in.refresh)

    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
    assert await mcp_status(server, signed_in.access) == 200  # an outage is not "left the org"
    assert github.live_tokens_for("alice") != []
