"""The GitHub REST client under the tools: ETag revalidation, per-user cache keys, rate limits,
error mapping, pagination and path encoding."""

from __future__ import annotations

import httpx2
import pytest

from ghmcp.upstream.api import MAX_PAGES, GitHubClient
from ghmcp.upstream.boundary import EVERYTHING, within
from ghmcp.upstream.cache import Cached, ResponseCache
from ghmcp.upstream.errors import GitHubInvalidInput
from tests.fake_github import FakeGitHub
from tests.support import ServerProcess, signed_in_client, tool_error

pytestmark = pytest.mark.anyio

WEBSITE = {"owner": "bob", "repo": "website"}


def client_for(handler: httpx2.MockTransport | None = None) -> GitHubClient:
    http = httpx2.AsyncClient(transport=handler or httpx2.MockTransport(lambda request: httpx2.Response(500)))
    return GitHubClient(http, "https://github.example", "https://api.github.example", "id", "secret")


def test_every_path_segment_is_percent_encoded_and_dot_segments_are_refused() -> None:
    api = client_for()
    url = api.api_url_for(("repos", "a/b", "c d#?"), {"ref": "x&y"})
    assert url == "https://api.github.example/repos/a%2Fb/c%20d%23%3F?ref=x%26y"
    for bad in ("..", ".", ""):
        with pytest.raises(GitHubInvalidInput):
            api.api_url_for(("user", "starred", bad, "interaction-limits"))


async def test_a_dot_dot_owner_never_becomes_a_request() -> None:
    seen: list[str] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.path)
        return httpx2.Response(204)

    api = client_for(httpx2.MockTransport(record))
    with within(EVERYTHING), pytest.raises(GitHubInvalidInput):
        await api.set_star("token", "..", "interaction-limits", True)
    assert seen == []  # without the check this was PUT /user/interaction-limits


async def test_pagination_never_follows_a_link_off_the_api_host() -> None:
    seen: list[str] = []

    def pages(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, json=[1, 2], headers={"link": '<https://evil.example/next>; rel="next"'})

    api = client_for(httpx2.MockTransport(pages))
    assert await api.paginate("token", ("user", "repos"), {}, 10) == [1, 2]
    assert seen == ["https://api.github.example/user/repos?per_page=10"]


async def test_a_filtered_listing_stops_after_max_pages() -> None:
    seen: list[str] = []

    def endless(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        link = f'<https://api.github.example/repos/o/r/issues?page={len(seen) + 1}>; rel="next"'
        return httpx2.Response(200, json=[{"pull_request": {}}], headers={"link": link})

    api = client_for(httpx2.MockTransport(endless))
    with within(EVERYTHING):
        items = await api.paginate(
            "token", ("repos", "o", "r", "issues"), {}, 5, keep=lambda i: "pull_request" not in i
        )
    assert items == [] and len(seen) == MAX_PAGES


def test_the_cache_is_bounded_by_bytes_least_recently_used_first() -> None:
    cache = ResponseCache(max_bytes=10)
    for key in "abc":
        cache.put(key, Cached(b"1234", None, '"e"', None))
    assert cache.get("a") is None and cache.size == 8
    assert cache.get("b") is not None  # b is now the most recent
    cache.put("d", Cached(b"1234", None, '"e"', None))
    assert cache.get("c") is None and cache.get("b") is not None
    cache.put("huge", Cached(b"x" * 11, None, '"e"', None))
    assert cache.get("huge") is None and cache.size <= 10


async def test_repeats_are_revalidated_and_a_change_is_seen(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        first = await client.call_tool("get_repository", WEBSITE)
        second = await client.call_tool("get_repository", WEBSITE)
        used = github.rate_used("alice")
        github.users["bob"].repos[3].description = "Changed"
        third = await client.call_tool("get_repository", WEBSITE)
    assert first.structured_content == second.structured_content
    assert github.count("/repos/bob/website") == 3
    assert github.count_304("/repos/bob/website") == 1  # the second call was a 304 from the cache
    assert third.structured_content is not None and third.structured_content["description"] == "Changed"
    assert github.rate_used("alice") == used + 1  # the 304 cost nothing, the change one unit


async def test_one_users_cache_never_answers_another(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        await client.call_tool("get_repository", WEBSITE)
    github.sign_in("bob")
    async with signed_in_client(server) as client:
        await client.call_tool("get_repository", WEBSITE)
        profile = await client.call_tool("get_user_profile", {})
    assert github.count_304("/repos/bob/website") == 0  # bob's first request was not revalidated with alice's entry
    assert profile.structured_content is not None and profile.structured_content["login"] == "bob"


async def test_writes_are_never_cached(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        for title in ("one", "two"):
            await client.call_tool("create_issue", WEBSITE | {"title": title})
    assert [i.title for i in github.users["bob"].repos[3].issues] == ["one", "two"]


async def test_a_primary_rate_limit_says_when_and_stops_requests(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        github.exhaust_rate_limit("alice", reset_in=600)
        profile_reads = github.count("/user")  # the sign-in read it once
        first = await client.call_tool("get_repository", WEBSITE)
        second = await client.call_tool("get_user_profile", {})
    assert "resets at" in tool_error(first) and "UTC" in tool_error(first)
    assert "resets at" in tool_error(second)
    assert github.count("/repos/bob/website") == 1
    assert github.count("/user") == profile_reads  # nothing is sent until the reset time


async def test_after_the_last_unit_nothing_is_sent_until_the_reset(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        github.exhaust_rate_limit("alice", reset_in=600, remaining=1)
        last = await client.call_tool("get_repository", WEBSITE)
        refused = await client.call_tool("get_repository", {"owner": "bob", "repo": "hello-world"})
    assert not last.is_error
    assert "resets at" in tool_error(refused)
    assert github.count("/repos/bob/hello-world") == 0


async def test_a_secondary_rate_limit_says_how_long_to_wait(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        github.secondary_limit_next = 30
        result = await client.call_tool("get_repository", WEBSITE)
    message = tool_error(result)
    assert "secondary rate limit" in message and "wait 3" in message  # 30 or 31 seconds


async def test_a_missing_github_scope_names_the_mcp_scope(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        github.narrow_scopes("alice", ["read:user"])
        result = await client.call_tool("create_issue", WEBSITE | {"title": "x"})
    assert "grant the repo:write scope" in tool_error(result)


async def test_not_found_says_so(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        result = await client.call_tool("get_issue", WEBSITE | {"number": 99})
    assert "Not found, or you have no access" in tool_error(result)


async def test_a_revoked_github_token_asks_to_reconnect(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        github.revoke_authorization("alice")
        result = await client.call_tool("get_repository", WEBSITE)
    assert "Reconnect" in tool_error(result)
