"""One test per promise of the OAuth flow (issue: core). Each fails if its safeguard is removed."""

from __future__ import annotations

import sqlite3

import httpx2
import pytest

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import Browser, ManualClient, McpUser, ServerProcess, mcp_status, query

pytestmark = pytest.mark.anyio


async def callback_url_for(client: ManualClient, browser: Browser) -> str:
    """Approve consent and let GitHub redirect, but stop before our callback is visited."""
    return await browser.run(client.authorize_url(), stop_at=f"{client.server.url}/github/callback")


async def test_github_token_is_never_accepted_as_bearer(server: ServerProcess, github: FakeGitHub) -> None:
    async with McpUser(server) as user:
        await user.call("get_user_profile")
    assert user.storage.tokens is not None
    [github_token] = github.live_tokens_for("alice")
    assert await mcp_status(server, user.storage.tokens.access_token) == 200
    assert await mcp_status(server, github_token) == 401
    assert await mcp_status(server, "not-a-token") == 401


async def test_authorization_code_is_single_use(server: ServerProcess, github: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    redirect = await client.sign_in()
    first = await client.exchange(redirect["code"])
    second = await client.exchange(redirect["code"])
    assert first.status_code == 200, first.text
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"


async def test_redirect_carries_code_client_state_and_issuer(server: ServerProcess, github: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    redirect = await client.sign_in(state="my-own-state")
    assert redirect["state"] == "my-own-state"
    assert redirect["iss"] == server.url
    assert len(redirect["code"]) >= 32


async def test_client_state_is_never_forwarded_to_github(server: ServerProcess, github: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    await client.sign_in(state="client-chosen-state")
    sent = github.authorize_requests[-1]
    assert sent["state"] != "client-chosen-state"
    assert "client-chosen-state" not in str(sent)
    assert len(sent["state"]) >= 43  # 256 bits, base64url: at least the 128 bits required
    assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
    assert sent["redirect_uri"] == f"{server.url}/github/callback"


async def test_github_state_is_single_use(server: ServerProcess, github: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    async with Browser() as browser:
        callback = await callback_url_for(client, browser)
        cookies = dict(browser.http.cookies.items())
        first = await browser.http.get(callback)
        assert first.status_code == 302 and "code=" in first.headers["location"]
        # Replay with the binding cookie restored: only the state's single use stops it.
        for name, value in cookies.items():
            browser.http.cookies.set(name, value)
        replay = await browser.http.get(callback)
    assert replay.status_code == 400
    assert "location" not in replay.headers


async def test_forged_callbacks_are_refused_without_redirect(server: ServerProcess, github: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    async with Browser() as browser:
        real = await callback_url_for(client, browser)
        forged = [
            f"{server.url}/github/callback",
            f"{server.url}/github/callback?code=abc",
            f"{server.url}/github/callback?code=abc&state=made-up-state",
            f"{server.url}/github/callback?error=access_denied&state=made-up-state",
        ]
        responses = [await browser.http.get(url) for url in forged]
        # The real state in another browser (no binding cookie) is refused too.
        async with httpx2.AsyncClient() as other_browser:
            responses.append(await other_browser.get(real))
        # ...and the real flow still completes in the right browser afterwards.
        completed = await browser.http.get(real)
    for response in responses:
        assert response.status_code == 400
        assert "location" not in response.headers
    assert completed.status_code == 302 and "code=" in completed.headers["location"]


async def test_expired_state_is_refused(server: ServerProcess, github: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    async with Browser() as browser:
        callback = await callback_url_for(client, browser)
        with sqlite3.connect(server.data_dir / "mcp.sqlite3") as db:
            db.execute("UPDATE pending SET expires_at = 0")
        response = await browser.http.get(callback)
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_denial_at_github_reaches_client_as_access_denied(server: ServerProcess, github: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    github.deny_next = True
    redirect = await client.sign_in(state="st-42")
    assert redirect["error"] == "access_denied"
    assert redirect["state"] == "st-42"
    assert "code" not in redirect


async def test_failed_github_code_exchange_gives_no_code(server: ServerProcess, github: FakeGitHub) -> None:
    """GitHub reports a bad code with HTTP 200 and {"error": ...}: that must count as failure."""
    client = await ManualClient.register(server)
    async with Browser() as browser:
        callback = await callback_url_for(client, browser)
        github_code = query(callback)["code"]
        # Someone presents GitHub's single-use code first (without the PKCE verifier): that burns it.
        async with httpx2.AsyncClient() as http:
            burnt = await http.post(
                f"{server.github_url}/login/oauth/access_token",
                data={"client_id": github.client_id, "client_secret": github.client_secret, "code": github_code},
                headers={"Accept": "application/json"},
            )
        assert burnt.status_code == 200 and burnt.json()["error"] == "bad_verification_code"
        response = await browser.http.get(callback)
    assert response.status_code == 302
    redirect = query(response.headers["location"])
    assert redirect["error"] == "server_error"
    assert "code" not in redirect


async def test_foreign_resource_is_refused(server: ServerProcess, github: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    redirect = await client.sign_in(resource="https://other.example.com/mcp")
    assert redirect["error"] == "invalid_target"
    assert github.count("/login/oauth/authorize") == 0


async def test_metadata_issuer_and_resource(server: ServerProcess) -> None:
    async with httpx2.AsyncClient() as http:
        asm = (await http.get(f"{server.url}/.well-known/oauth-authorization-server")).json()
        prm = (await http.get(f"{server.url}/.well-known/oauth-protected-resource/mcp")).json()
    assert asm["issuer"] == server.url  # no trailing slash: clients compare it string-exactly
    assert asm["registration_endpoint"] == f"{server.url}/register"
    assert asm["revocation_endpoint"] == f"{server.url}/revoke"
    assert asm["code_challenge_methods_supported"] == ["S256"]
    assert prm["resource"] == f"{server.url}/mcp"
    assert prm["authorization_servers"] == [server.url]


async def test_sse_resource_is_the_sse_endpoint(start_server: StartServer) -> None:
    server = start_server(transport="sse")
    async with httpx2.AsyncClient() as http:
        prm = (await http.get(f"{server.url}/.well-known/oauth-protected-resource/sse")).json()
    assert prm["resource"] == f"{server.url}/sse"


async def test_no_secret_reaches_the_log(server: ServerProcess, github: FakeGitHub) -> None:
    async with McpUser(server) as user:
        await user.call("get_user_profile")
        await user.call("list_my_repositories")
    assert user.storage.tokens is not None and user.storage.tokens.refresh_token
    visited = " ".join(user.browser.visited)
    secrets = [
        user.storage.tokens.access_token,
        user.storage.tokens.refresh_token,
        *github.live_tokens_for("alice"),
        github.client_secret,
        *(query(url).get("state", "") for url in user.browser.visited if "/github/callback" in url),
        *(query(url).get("code", "") for url in user.browser.visited if "/github/callback" in url),
    ]
    log = server.log()
    assert "/github/callback" in visited and "GET /github/callback 302" in log
    for secret in filter(None, secrets):
        assert secret not in log


async def test_iss_is_on_every_authorization_response(server: ServerProcess, github: FakeGitHub) -> None:
    """RFC 9207: success, the user's Deny at GitHub, a failed GitHub sign-in and /authorize's own
    errors all carry `iss`, and the metadata says so, so that clients enforce it."""
    client = await ManualClient.register(server)
    assert (await client.sign_in())["iss"] == server.url
    github.deny_next = True
    denied = await client.sign_in()
    assert denied["error"] == "access_denied" and denied["iss"] == server.url
    async with httpx2.AsyncClient(timeout=10) as http:
        bad_scope = await http.get(client.authorize_url(scope="admin"))
        metadata = (await http.get(f"{server.url}/.well-known/oauth-authorization-server")).json()
    assert query(bad_scope.headers["location"]) == {
        "error": "invalid_scope",
        "error_description": query(bad_scope.headers["location"])["error_description"],
        "state": "client-state-123",
        "iss": server.url,
    }
    assert metadata["authorization_response_iss_parameter_supported"] is True


async def test_a_malformed_github_user_fails_closed(server: ServerProcess, github: FakeGitHub) -> None:
    github.users["alice"].id = "not-a-number"  # type: ignore[assignment]  # what a broken proxy might answer
    client = await ManualClient.register(server)
    answer = await client.sign_in()
    assert answer["error"] == "server_error" and answer["iss"] == server.url and "code" not in answer
    assert github.live_tokens_for("alice") == [] and len(github.revocations) == 1  # the fresh token is revoked
    with sqlite3.connect(server.data_dir / "mcp.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM grants WHERE client_id = ?", (client.client_id,)).fetchone() == (0,)
