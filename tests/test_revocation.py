"""Revocation (issue 4): RFC 7009 /revoke for public and confidential clients, authorization-code
replay, and what happens to the user's GitHub token when their last sign-in is revoked.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Literal

import httpx2
import pytest
from mcp.server.auth.provider import TokenError
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl

from ghmcp.auth.keys import Keyring, token_hash
from ghmcp.auth.records import GitHubAuthorizationCode
from ghmcp.config import Settings
from ghmcp.storage import Grant
from ghmcp.storage.sqlite import SQLiteStorage
from ghmcp.upstream.api import GitHubClient
from github_provider import GitHubOAuthProvider
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    ManualClient,
    ServerProcess,
    mcp_status,
    refresh_grant,
    revoke_request,
    sign_in_tokens,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("which", ["access", "refresh"])
async def test_a_public_client_revokes_the_whole_family_with_either_token(
    server: ServerProcess, which: Literal["access", "refresh"]
) -> None:
    signed_in = await sign_in_tokens(server)
    token = signed_in.access if which == "access" else signed_in.refresh

    # No client_secret field at all: the SDK's own handler would answer 400 here.
    response = await revoke_request(server, signed_in.client.client_id, token, token_type_hint=f"{which}_token")

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert await mcp_status(server, signed_in.access) == 401
    refreshed = await refresh_grant(signed_in.client, signed_in.refresh)
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


async def test_revoking_after_a_refresh_kills_the_current_pair(server: ServerProcess) -> None:
    signed_in = await sign_in_tokens(server)
    current = (await refresh_grant(signed_in.client, signed_in.refresh)).json()

    response = await revoke_request(server, signed_in.client.client_id, current["access_token"])

    assert response.status_code == 200
    assert await mcp_status(server, current["access_token"]) == 401
    assert (await refresh_grant(signed_in.client, current["refresh_token"])).status_code == 400


async def test_unknown_tokens_get_200(server: ServerProcess) -> None:
    client = await ManualClient.register(server)
    response = await revoke_request(server, client.client_id, "not-a-token-this-server-issued")
    assert response.status_code == 200  # RFC 7009 §2.2


async def test_another_clients_token_is_left_alone(server: ServerProcess) -> None:
    victim = await sign_in_tokens(server)
    other = await ManualClient.register(server)

    response = await revoke_request(server, other.client_id, victim.access)

    # RFC 7009 §2.1: only the client the token was issued to may revoke it. The answer is the same
    # 200 as for an unknown token, so the endpoint reveals nothing about other clients' tokens.
    assert response.status_code == 200
    assert await mcp_status(server, victim.access) == 200


async def test_a_confidential_client_must_present_its_secret(server: ServerProcess) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        registered = await http.post(
            f"{server.url}/register",
            json={"redirect_uris": [ManualClient.redirect_uri], "token_endpoint_auth_method": "client_secret_post"},
        )
    assert registered.status_code == 201, registered.text
    client = ManualClient(server, registered.json()["client_id"])
    secret = registered.json()["client_secret"]
    code = (await client.sign_in())["code"]
    tokens = await client.token(
        grant_type="authorization_code",
        code=code,
        redirect_uri=client.redirect_uri,
        code_verifier=client.verifier,
        client_secret=secret,
    )
    access = tokens.json()["access_token"]

    wrong = await revoke_request(server, client.client_id, access, client_secret="wrong-secret")
    missing = await revoke_request(server, client.client_id, access)

    assert wrong.status_code == missing.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert await mcp_status(server, access) == 200
    right = await revoke_request(server, client.client_id, access, client_secret=secret)
    assert right.status_code == 200
    assert await mcp_status(server, access) == 401


async def test_revoking_the_last_sign_in_revokes_the_github_token(server: ServerProcess, github: FakeGitHub) -> None:
    signed_in = await sign_in_tokens(server)
    [github_token] = github.live_tokens_for("alice")

    response = await revoke_request(server, signed_in.client.client_id, signed_in.refresh)

    assert response.status_code == 200
    assert github.revocations == [github_token]
    assert github.live_tokens_for("alice") == []


async def test_a_failing_github_revocation_does_not_break_revoke(server: ServerProcess, github: FakeGitHub) -> None:
    signed_in = await sign_in_tokens(server)
    github.fail_revocations = True

    warnings = server.log().count("Could not revoke a GitHub token at GitHub")

    response = await revoke_request(server, signed_in.client.client_id, signed_in.access)

    assert response.status_code == 200
    assert github.count("/applications/fake-client-id/token", "DELETE") == 1  # it was attempted
    assert github.revocations == []
    assert await mcp_status(server, signed_in.access) == 401
    assert server.log().count("Could not revoke a GitHub token at GitHub") == warnings + 1


async def test_the_github_token_is_kept_while_another_sign_in_of_the_same_client_lives(
    server: ServerProcess, github: FakeGitHub
) -> None:
    first = await sign_in_tokens(server)
    second = await sign_in_tokens(server, client=first.client)
    # The second sign-in replaced the grant's GitHub token and revoked the one it replaced.
    assert len(github.revocations) == 1
    [github_token] = github.live_tokens_for("alice")

    assert (await revoke_request(server, first.client.client_id, first.access)).status_code == 200

    assert await mcp_status(server, first.access) == 401
    assert await mcp_status(server, second.access) == 200
    assert github.live_tokens_for("alice") == [github_token]
    assert github.revocations[1:] == []

    assert (await revoke_request(server, first.client.client_id, second.refresh)).status_code == 200
    assert github.revocations[1:] == [github_token]


async def test_a_new_sign_in_revokes_the_github_token_it_replaces(server: ServerProcess, github: FakeGitHub) -> None:
    first = await sign_in_tokens(server)
    [old_github_token] = github.live_tokens_for("alice")

    second = await sign_in_tokens(server, client=first.client)

    assert github.revocations == [old_github_token]
    assert old_github_token not in github.live_tokens_for("alice")
    assert len(github.live_tokens_for("alice")) == 1
    # Both sign-ins share the grant, which now holds the new GitHub token.
    for access in (first.access, second.access):
        assert await mcp_status(server, access) == 200


async def test_a_replayed_code_revokes_every_token_issued_from_it(server: ServerProcess, github: FakeGitHub) -> None:
    signed_in = await sign_in_tokens(server)
    rotated = (await refresh_grant(signed_in.client, signed_in.refresh)).json()

    replay = await signed_in.client.exchange(signed_in.code)

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: the tokens the code produced, and their descendants, die.
    assert await mcp_status(server, rotated["access_token"]) == 401
    assert (await refresh_grant(signed_in.client, rotated["refresh_token"])).status_code == 400
    assert len(github.revocations) == 1  # that was the user's last sign-in with this client


async def test_a_replayed_code_leaves_other_sign_ins_alone(server: ServerProcess) -> None:
    first = await sign_in_tokens(server)
    second = await sign_in_tokens(server, client=first.client)

    assert (await first.client.exchange(first.code)).status_code == 400

    assert await mcp_status(server, first.access) == 401
    assert await mcp_status(server, second.access) == 200


async def test_concurrent_exchanges_of_one_code_leave_no_live_token(server: ServerProcess) -> None:
    client = await ManualClient.register(server)
    code = (await client.sign_in())["code"]

    answers = await asyncio.gather(client.exchange(code), client.exchange(code))

    # One exchange wins; the other is a replay, which revokes what the winner got.
    assert sorted(a.status_code for a in answers) == [200, 400]
    winner = next(a.json() for a in answers if a.status_code == 200)
    assert await mcp_status(server, winner["access_token"]) == 401


async def test_a_replay_that_loses_the_race_to_the_first_use_still_revokes(
    tmp_path: Path, github: FakeGitHub, github_url: str
) -> None:
    """Both presentations pass `load_authorization_code` before either is exchanged (two replicas)."""
    settings = Settings.model_validate(  # what the test relies on is given explicitly
        {
            "github_client_id": "fake-client-id",
            "github_client_secret": "fake-client-secret",
            "github_url": github_url,
            "github_api_url": github_url,
            "storage_url": f"sqlite:///{tmp_path / 'mcp.sqlite3'}",
        }
    )
    storage = SQLiteStorage(tmp_path / "mcp.sqlite3")
    keyring = Keyring(["test-secret-key-that-is-long-enough-0123456789"])
    async with httpx2.AsyncClient(timeout=10) as http:
        github_client = GitHubClient(http, github_url, github_url, "fake-client-id", "fake-client-secret")
        provider = GitHubOAuthProvider(settings, storage, keyring, github_client)
        client = OAuthClientInformationFull(
            client_id="client", redirect_uris=[AnyUrl(ManualClient.redirect_uri)], token_endpoint_auth_method="none"
        )
        grant = Grant("", "github:1001", "client", "alice", keyring.encrypt("gho_x"), None, None, None, "", False)
        grant_id, _ = await storage.upsert_grant(grant)
        code = GitHubAuthorizationCode(
            code="",
            scopes=["user"],
            expires_at=time.time() + 60,
            client_id="client",
            code_challenge="challenge",
            redirect_uri=AnyUrl(ManualClient.redirect_uri),
            redirect_uri_provided_explicitly=True,
            resource=settings.resource_url,
            subject="github:1001",
            grant_id=grant_id,
        )
        await storage.save_code(token_hash("the-code"), code.model_dump(mode="json"), grant_id, code.expires_at)
        first = await provider.load_authorization_code(client, "the-code")
        second = await provider.load_authorization_code(client, "the-code")
        assert first is not None and second is not None

        tokens = await provider.exchange_authorization_code(client, first)
        assert await provider.load_access_token(tokens.access_token) is not None
        with pytest.raises(TokenError):
            await provider.exchange_authorization_code(client, second)

        assert await provider.load_access_token(tokens.access_token) is None
        await storage.close()


async def test_revoking_between_callback_and_token_spares_the_grant_the_new_code_needs(
    server: ServerProcess, github: FakeGitHub
) -> None:
    first = await sign_in_tokens(server)
    params = await first.client.sign_in()  # a second sign-in: its code is not exchanged yet
    assert "code" in params

    assert (await revoke_request(server, first.client.client_id, first.refresh)).status_code == 200

    second = await first.client.exchange(params["code"])
    assert second.status_code == 200, second.text
    assert await mcp_status(server, second.json()["access_token"]) == 200
    assert github.grant_revocations == []


async def test_the_users_last_grant_deletes_the_github_authorization(
    start_server: StartServer, github: FakeGitHub
) -> None:
    server = start_server()  # alice has no sign-ins from other tests here
    editor = await sign_in_tokens(server)
    inspector = await sign_in_tokens(server)  # another client: the user's second grant
    [editor_github, inspector_github] = github.live_tokens_for("alice")

    assert (await revoke_request(server, editor.client.client_id, editor.access)).status_code == 200
    # One of two grants: only its own token goes; GitHub keeps the authorization for the other.
    assert github.revocations == [editor_github] and github.grant_revocations == []
    assert await mcp_status(server, inspector.access) == 200

    assert (await revoke_request(server, inspector.client.client_id, inspector.access)).status_code == 200
    # The last one: the whole authorization goes, so GitHub asks for consent again next time.
    assert github.grant_revocations == ["alice"]
    assert github.count("/applications/fake-client-id/grant", "DELETE") == 1
    assert github.live_tokens_for("alice") == [] and inspector_github in github.revocations
