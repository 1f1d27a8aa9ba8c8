"""Scopes (issue 4): per-tool scopes answered with RFC 6750 challenges the SDK client can act on,
least-privilege GitHub scopes, and the scope vocabulary in both metadata documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx2
import pytest

from tests.fake_github import FakeGitHub
from tests.support import (
    ManualClient,
    McpUser,
    ServerProcess,
    bearer_client,
    sign_in_tokens,
    tool_call_request,
)

pytestmark = pytest.mark.anyio

StartServer = Callable[..., ServerProcess]
ALL_SCOPES = ["user", "repo:read", "repo:write", "repo:private"]


def challenge(response: httpx2.Response) -> dict[str, str]:
    """The parameters of a `WWW-Authenticate: Bearer ...` header."""
    header = response.headers["www-authenticate"]
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def metadata_url(server: ServerProcess) -> str:
    return f"{server.url}/.well-known/oauth-protected-resource/mcp"


@pytest.mark.parametrize("bearer", [None, "not-a-token"])
async def test_the_401_challenge_names_the_default_scope(server: ServerProcess, bearer: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)

    assert response.status_code == 401
    params = challenge(response)
    assert params["error"] == "invalid_token"
    assert params["scope"] == "user repo:read"
    assert params["resource_metadata"] == metadata_url(server)


@pytest.mark.parametrize(
    ("granted", "tool", "wanted"),
    [
        ("user", "list_my_repositories", "user repo:read"),
        ("user", "star_repository", "user repo:write"),
        ("repo:read", "get_user_profile", "repo:read user"),
        ("user repo:read", "star_repository", "user repo:read repo:write"),
    ],
)
async def test_a_tool_needing_a_missing_scope_gets_403_insufficient_scope(
    server: ServerProcess, granted: str, tool: str, wanted: str
) -> None:
    signed_in = await sign_in_tokens(server, scope=granted)
    arguments = {"owner": "octocat", "repo": "hello-world"} if tool == "star_repository" else {}

    response = await tool_call_request(server, signed_in.access, tool, arguments)

    assert response.status_code == 403
    params = challenge(response)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == wanted  # what was granted plus what is missing (RFC 6750 §3.1)
    assert params["resource_metadata"] == metadata_url(server)


async def test_tools_within_the_granted_scopes_answer(server: ServerProcess, github: FakeGitHub) -> None:
    signed_in = await sign_in_tokens(server, scope="user repo:write")
    async with bearer_client(server, signed_in.access) as client:
        profile = await client.call_tool("get_user_profile", {})
        star = await client.call_tool("star_repository", {"owner": "octocat", "repo": "hello-world"})
    assert not profile.is_error and not star.is_error
    assert github.users["alice"].starred == {"octocat/hello-world"}


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_the_sdk_client_steps_up_to_the_scope_a_tool_needs(
    start_server: StartServer, github: FakeGitHub, transport: str
) -> None:
    server = start_server(transport=transport)
    async with McpUser(server) as user:
        assert not (await user.call("get_user_profile")).is_error
        assert user.storage.tokens is not None and user.storage.tokens.scope == "user repo:read"
        assert len(github.authorize_requests) == 1

        # 403 insufficient_scope -> the SDK re-authorizes with the union of scopes -> the retry succeeds.
        result = await user.call("star_repository", {"owner": "octocat", "repo": "hello-world"})

        assert not result.is_error
        assert github.users["alice"].starred == {"octocat/hello-world"}
        assert user.storage.tokens is not None and user.storage.tokens.scope is not None
        assert set(user.storage.tokens.scope.split()) == {"user", "repo:read", "repo:write"}
        assert len(github.authorize_requests) == 2  # the step-up went through GitHub once more
        assert not (await user.call("get_user_profile")).is_error


@pytest.mark.parametrize(
    ("mcp_scope", "github_scope"),
    [
        ("user", "read:user"),
        ("repo:read", ""),
        ("user repo:read", "read:user"),
        ("repo:write", "public_repo"),
        ("user repo:read repo:write", "public_repo read:user"),
        ("repo:read repo:private", "repo"),
    ],
)
async def test_only_the_needed_github_scopes_are_requested(
    server: ServerProcess, github: FakeGitHub, mcp_scope: str, github_scope: str
) -> None:
    signed_in = await sign_in_tokens(server, scope=mcp_scope)

    assert github.authorize_requests[-1].get("scope", "") == github_scope
    assert signed_in.tokens["scope"] == mcp_scope


async def test_the_default_scope_is_what_needs_no_extra_github_permission(
    server: ServerProcess, github: FakeGitHub
) -> None:
    signed_in = await sign_in_tokens(server)  # no scope parameter at /authorize
    assert signed_in.tokens["scope"] == "user repo:read"
    assert github.authorize_requests[-1]["scope"] == "read:user"


async def test_admission_by_organisation_adds_read_org(start_server: StartServer, github: FakeGitHub) -> None:
    server = start_server(env={"MCP_ALLOWED_GITHUB_ORGS": "acme"})
    await sign_in_tokens(server, scope="repo:read")
    assert github.authorize_requests[-1]["scope"] == "read:org"


async def test_unknown_scopes_are_refused(server: ServerProcess, github: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    answer = await client.sign_in(scope="user admin:org")
    assert answer.get("error") == "invalid_scope"
    assert "code" not in answer
    assert github.authorize_requests == []


async def test_both_metadata_documents_advertise_the_scopes(server: ServerProcess) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        authorization_server = (await http.get(f"{server.url}/.well-known/oauth-authorization-server")).json()
        protected_resource = (await http.get(metadata_url(server))).json()

    assert authorization_server["scopes_supported"] == ALL_SCOPES
    assert protected_resource["scopes_supported"] == ALL_SCOPES
    assert protected_resource["resource"] == server.mcp_url


async def test_the_scope_check_reads_the_body_as_the_sdk_does(server: ServerProcess) -> None:
    """A body the scope layer cannot parse must be one the SDK refuses too (no 500, no bypass)."""
    signed_in = await sign_in_tokens(server, scope="user")
    call = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"star_repository","arguments":{"x":%s}}}'
    headers = {
        "Authorization": f"Bearer {signed_in.access}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    async with httpx2.AsyncClient(timeout=10) as http:
        for value in ["[" * 5000 + "]" * 5000, '"\\ud800"', "NaN"]:
            response = await http.post(server.mcp_url, content=call % value, headers=headers)
            assert response.status_code in (400, 403), (value[:10], response.status_code)
