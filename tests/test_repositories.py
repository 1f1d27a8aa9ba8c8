"""Per-grant repositories (issue 19): a grant limited to some repositories reaches nothing else.

The grant's choice is written in the store before the first MCP request (so no cached copy of it
exists yet); tests/test_repositories_consent.py makes the same choice on the consent page.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, PromptReference

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub, FakeRepo
from tests.support import ServerProcess, bearer_client, refresh_grant, server_db, sign_in_tokens, tool_error

pytestmark = pytest.mark.anyio

OCTOCAT_ID = 583231
HELLO = {"owner": "octocat", "repo": "hello-world"}
DOTFILES = {"owner": "alice", "repo": "dotfiles"}


def entry(owner: str, repo: str | None, owner_id: int) -> dict[str, Any]:
    repo_id = zlib.crc32(f"{owner}/{repo}".encode()) if repo else None  # the stand-in's ids (shapes.repo_id)
    return {"owner": owner, "repo": repo, "owner_id": owner_id, "repo_id": repo_id}


ONLY_HELLO = [entry("octocat", "hello-world", OCTOCAT_ID), entry("alice", "hello-world", 1001)]


@pytest.fixture
def octocat(github: FakeGitHub) -> FakeGitHub:
    github.add_user("octocat", id=OCTOCAT_ID)
    github.sign_in("alice")
    return github


@asynccontextmanager
async def limited_client(server: ServerProcess, entries: list[dict[str, Any]] | None) -> AsyncIterator[Client]:
    """alice signed in, her grant limited to `entries` (None: every repository) before its first use."""
    signed_in = await sign_in_tokens(server, scope="user repo:read repo:write")
    if entries is not None:
        with server_db(server) as db:
            limit = (json.dumps(entries), signed_in.client.client_id)
            db.execute("UPDATE grants SET repositories = ? WHERE client_id = ?", limit)
    async with bearer_client(server, signed_in.access) as client:
        yield client


def named(github: FakeGitHub, name: str) -> list[tuple[str, str]]:
    return [(m, p) for m, p in github.requests if name in p.lower()]


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_repository", DOTFILES),
    ("get_file_contents", DOTFILES | {"path": "README.md"}),
    ("list_issues", DOTFILES),
    ("get_issue", DOTFILES | {"number": 1}),
    ("list_pull_requests", DOTFILES),
    ("create_issue", DOTFILES | {"title": "exfiltrated"}),
    ("add_issue_comment", DOTFILES | {"number": 1, "body": "exfiltrated"}),
    ("star_repository", DOTFILES),
    ("get_repository", {"owner": "Alice", "repo": "DOTFILES"}),
    ("search_repositories", {"query": "dot repo:alice/dotfiles"}),
    ("search_repositories", {"query": "dot user:bob"}),
]


async def test_a_limited_grant_reaches_nothing_outside_its_repositories(
    server: ServerProcess, octocat: FakeGitHub
) -> None:
    async with limited_client(server, ONLY_HELLO) as client:
        allowed = await client.call_tool("get_repository", {"owner": "OctoCat", "repo": "Hello-World"})
        errors = {f"{tool} {args}": tool_error(await client.call_tool(tool, args)) for tool, args in CALLS}
        with pytest.raises(MCPError) as resource:
            await client.read_resource("github://repos/alice/dotfiles/readme")
    assert not allowed.is_error, allowed
    for text in errors.values():
        assert "Refused:" in text and f"{server.url}/account" in text, text
    assert "alice/dotfiles is not among the repositories this sign-in may reach" in errors[f"get_repository {DOTFILES}"]
    assert "alice/dotfiles" in str(resource.value) and resource.value.error.code == INVALID_PARAMS
    assert named(octocat, "alice/dotfiles") == []  # the stand-in's log: nothing named it
    assert [i.title for i in octocat.users["alice"].repos[1].issues if i.title == "exfiltrated"] == []


async def test_listings_and_search_are_filtered_to_the_grant(server: ServerProcess, octocat: FakeGitHub) -> None:
    async with limited_client(server, ONLY_HELLO) as client:
        mine = (await client.call_tool("list_my_repositories", {})).structured_content
        found = (await client.call_tool("search_repositories", {"query": "hello"})).structured_content
        completed = await client.complete(
            PromptReference(type="ref/prompt", name="triage_issues"), {"name": "repo", "value": ""}
        )
    assert mine is not None and found is not None
    assert [r["full_name"] for r in mine["repositories"]] == ["alice/hello-world"]
    assert mine["limited_to_grant"] is True
    assert sorted(r["full_name"] for r in found["repositories"]) == ["alice/hello-world", "octocat/hello-world"]
    assert found["limited_to_grant"] is True
    assert completed.completion.values == ["hello-world"]


async def test_a_refreshed_token_keeps_the_grants_repositories(server: ServerProcess, octocat: FakeGitHub) -> None:
    signed_in = await sign_in_tokens(server, scope="user repo:read")
    with server_db(server) as db:
        limit = (json.dumps(ONLY_HELLO), signed_in.client.client_id)
        db.execute("UPDATE grants SET repositories = ? WHERE client_id = ?", limit)
    refreshed = await refresh_grant(signed_in.client, signed_in.refresh)
    async with bearer_client(server, refreshed.json()["access_token"]) as client:
        refused = await client.call_tool("get_repository", DOTFILES)
    assert "alice/dotfiles is not among" in tool_error(refused)


async def test_an_all_grant_lists_everything_without_a_note(server: ServerProcess, octocat: FakeGitHub) -> None:
    async with limited_client(server, None) as client:
        mine = (await client.call_tool("list_my_repositories", {})).structured_content
        dotfiles = await client.call_tool("get_repository", DOTFILES)
    assert mine is not None and mine["limited_to_grant"] is False and len(mine["repositories"]) > 1
    assert not dotfiles.is_error


async def test_an_owner_entry_covers_its_repositories_by_owner_id(server: ServerProcess, octocat: FakeGitHub) -> None:
    async with limited_client(server, [entry("octocat", None, OCTOCAT_ID)]) as client:
        hello = await client.call_tool("get_repository", {"owner": "OCTOCAT", "repo": "hello-world"})
        other = await client.call_tool("get_repository", DOTFILES)
    assert not hello.is_error
    assert "alice/dotfiles is not among" in tool_error(other)


async def test_a_name_taken_over_after_a_rename_is_refused_by_id(server: ServerProcess, octocat: FakeGitHub) -> None:
    async with limited_client(server, ONLY_HELLO) as client:
        assert not (await client.call_tool("get_repository", HELLO)).is_error
        octocat.rename_repo("octocat", "hello-world", "hello-world-renamed")
        octocat.users["octocat"].repos.append(FakeRepo("hello-world", description="Someone else's", id=424242))
        # Another grant (another verification cache key) sees the new repository under the old name.
    async with limited_client(server, ONLY_HELLO) as client:
        taken = await client.call_tool("get_repository", HELLO)
        issue = await client.call_tool("create_issue", HELLO | {"title": "leak"})
    assert "octocat/hello-world now names a different repository than the one chosen" in tool_error(taken)
    assert "now names a different repository" in tool_error(issue)
    assert octocat.count("/repos/octocat/hello-world/issues", "POST") == 0


async def test_the_server_bound_limits_a_grant_that_chose_all(start_server: StartServer, octocat: FakeGitHub) -> None:
    server = start_server(env={"MCP_ALLOWED_REPOSITORIES": "octocat/*,alice/Hello-World"})
    async with limited_client(server, None) as client:
        hello = await client.call_tool("get_repository", {"owner": "alice", "repo": "hello-world"})
        octo = await client.call_tool("get_repository", HELLO)
        dotfiles = await client.call_tool("get_repository", DOTFILES)
        mine = (await client.call_tool("list_my_repositories", {})).structured_content
    assert not hello.is_error and not octo.is_error
    assert "alice/dotfiles is not among" in tool_error(dotfiles)
    assert mine is not None and [r["full_name"] for r in mine["repositories"]] == ["alice/hello-world"]
    assert named(octocat, "alice/dotfiles") == []


async def test_a_refusal_is_audited_without_arguments(start_server: StartServer, octocat: FakeGitHub) -> None:
    server = start_server(env={"MCP_AUDIT_LOG": "audit.log"})
    async with limited_client(server, ONLY_HELLO) as client:
        tool_error(await client.call_tool("create_issue", DOTFILES | {"title": "secret-title"}))
    lines = [json.loads(line) for line in (server.data_dir / "audit.log").read_text().splitlines()]
    refused = [line for line in lines if line["event"] == "repository_refused"]
    assert len(refused) == 1
    assert {k: refused[0][k] for k in ("tool", "login", "owner", "repo")} == {
        "tool": "create_issue",
        "login": "alice",
        "owner": "alice",
        "repo": "dotfiles",
    }
    assert "secret-title" not in (server.data_dir / "audit.log").read_text()


async def test_a_repository_path_outside_any_call_fails_closed() -> None:
    """A forker's code that reaches GitHub without `github.call` (so without a boundary) is refused."""
    import httpx2

    from ghmcp.upstream.api import GitHubClient
    from ghmcp.upstream.boundary import RepositoryRefused

    sent: list[str] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent.append(str(request.url))
        return httpx2.Response(200, json=[])

    transport = httpx2.MockTransport(answer)
    api = GitHubClient(
        httpx2.AsyncClient(transport=transport), "https://gh.example", "https://api.gh.example", "i", "s"
    )
    for path in [("repos", "alice", "dotfiles"), ("user", "starred", "alice", "dotfiles"), ("repositories", "1")]:
        with pytest.raises(RepositoryRefused):
            await api.get("token", path)
    with pytest.raises(RepositoryRefused):
        await api.paginate("token", ("search", "issues"), {"q": "secret"}, 10)
    listed = [
        {"full_name": "alice/dotfiles", "id": 1, "owner": {"id": 1001}},
        {"type": "PushEvent", "repo": {"id": 1, "name": "alice/dotfiles"}},
        {"login": "not-a-repository"},
    ]
    api.http = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda request: httpx2.Response(200, json=listed)))
    assert await api.get("token", ("user", "repos")) == [{"login": "not-a-repository"}]
    assert sent == []


async def test_graphql_and_hidden_climbs_are_refused_for_a_limited_grant() -> None:
    """A GraphQL body can name any repository; a segment holding '/../' could climb out of one."""
    import httpx2

    from ghmcp.auth.repositories import Bound, Boundary, decode
    from ghmcp.upstream.api import GitHubClient
    from ghmcp.upstream.boundary import EVERYTHING, RepositoryRefused, within
    from ghmcp.upstream.errors import GitHubInvalidInput

    sent: list[str] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent.append(str(request.url))
        return httpx2.Response(200, json={"data": {}})

    api = GitHubClient(httpx2.AsyncClient(transport=httpx2.MockTransport(answer)), "https://g", "https://a.g", "i", "s")
    limited = Boundary("g", decode(json.dumps(ONLY_HELLO)), Bound())
    with within(limited):
        with pytest.raises(RepositoryRefused, match="GraphQL"):
            await api.send("token", "POST", ("graphql",), {"query": '{ repository(owner: "alice") { id } }'})
        with pytest.raises(GitHubInvalidInput):
            await api.get("token", ("repos", "octocat", "hello-world", "contents", "../../alice/dotfiles"))
        with pytest.raises(RepositoryRefused, match="not a GitHub owner/repository name"):
            await api.get("token", ("REPOS", "octocat", "hello-world?x"))
    assert sent == []
    with within(EVERYTHING):
        assert await api.send("token", "POST", ("graphql",), {"query": "{ viewer { login } }"}) == {"data": {}}
