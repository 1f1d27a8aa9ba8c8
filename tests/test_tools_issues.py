"""Issue and pull-request tools end to end: values, pull requests left out of issue lists,
comments, writes with scope step-up, and GitHub's validation errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fake_github import FakeComment, FakeGitHub
from tests.support import McpUser, ServerProcess, sign_in_tokens, signed_in_client, tool_call_request, tool_error

pytestmark = pytest.mark.anyio

StartServer = Callable[..., ServerProcess]


async def test_list_issues_leaves_pull_requests_out_and_filters(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        open_issues = await client.call_tool("list_issues", {"owner": "bob", "repo": "hello-world"})
        bugs = await client.call_tool(
            "list_issues", {"owner": "bob", "repo": "hello-world", "state": "all", "labels": ["bug"]}
        )
    assert open_issues.structured_content is not None and bugs.structured_content is not None
    assert [i["number"] for i in open_issues.structured_content["issues"]] == [3, 1]  # #2 is a pull request
    assert [i["number"] for i in bugs.structured_content["issues"]] == [4, 1]
    assert bugs.structured_content["issues"][1]["labels"] == ["bug"]


async def test_list_issues_pages_past_pull_requests_up_to_the_limit(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        result = await client.call_tool("list_issues", {"owner": "bob", "repo": "hello-world", "limit": 2})
    assert result.structured_content is not None
    assert [i["number"] for i in result.structured_content["issues"]] == [3, 1]
    assert github.count("/repos/bob/hello-world/issues") == 2  # page 1 held #3 and the pull request #2


async def test_get_issue_with_comments_kept_as_data(server: ServerProcess, github: FakeGitHub) -> None:
    issue = github.users["bob"].repos[0].issues[0]
    issue.comments.extend(FakeComment(200 + n, "bob", f"comment {n}") for n in range(3))
    async with signed_in_client(server) as client:
        result = await client.call_tool("get_issue", {"owner": "bob", "repo": "hello-world", "number": 1})
        limited = await client.call_tool(
            "get_issue", {"owner": "bob", "repo": "hello-world", "number": 1, "comments_limit": 1}
        )
    details = result.structured_content
    assert details is not None
    assert details["title"] == "Crash on start" and details["body"] == "It crashes."
    assert details["is_pull_request"] is False
    assert [c["body"] for c in details["comment_list"]] == [
        "Same here",
        "Fixed?",
        "comment 0",
        "comment 1",
        "comment 2",
    ]
    assert details["comment_list"][0]["author"] == "bob"
    assert limited.structured_content is not None and len(limited.structured_content["comment_list"]) == 1


async def test_pull_requests(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        listed = await client.call_tool("list_pull_requests", {"owner": "bob", "repo": "hello-world"})
        pull = await client.call_tool("get_pull_request", {"owner": "bob", "repo": "hello-world", "number": 2})
        not_a_pull = await client.call_tool("get_pull_request", {"owner": "bob", "repo": "hello-world", "number": 1})
    assert listed.structured_content is not None
    assert [p["number"] for p in listed.structured_content["pull_requests"]] == [2]
    details = pull.structured_content
    assert details is not None
    assert (details["title"], details["head"], details["base"], details["changed_files"]) == (
        "Add a feature",
        "feature",
        "main",
        1,
    )
    assert details["files"] == [{"filename": "src/main.py", "status": "modified", "additions": 3, "deletions": 1}]
    assert "not found, or you have no access" in tool_error(not_a_pull).lower()


async def test_create_issue_and_comment(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        created = await client.call_tool(
            "create_issue",
            {"owner": "bob", "repo": "website", "title": "Typo", "body": "On the home page", "labels": ["docs"]},
        )
        comment = await client.call_tool(
            "add_issue_comment", {"owner": "bob", "repo": "website", "number": 1, "body": "I can fix it"}
        )
    assert created.structured_content is not None
    assert (created.structured_content["number"], created.structured_content["author"]) == (1, "alice")
    assert comment.structured_content is not None and comment.structured_content["body"] == "I can fix it"
    stored = github.users["bob"].repos[3].issues[0]
    assert (stored.title, stored.body, stored.labels) == ("Typo", "On the home page", ["docs"])
    assert [c.body for c in stored.comments] == ["I can fix it"]


async def test_githubs_validation_message_is_passed_on(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        result = await client.call_tool("create_issue", {"owner": "bob", "repo": "website", "title": " "})
    message = tool_error(result)
    assert "Validation Failed" in message and "title missing_field" in message
    assert github.users["bob"].repos[3].issues == []


@pytest.mark.parametrize("tool", ["create_issue", "add_issue_comment", "star_repository"])
async def test_write_tools_need_repo_write(server: ServerProcess, github: FakeGitHub, tool: str) -> None:
    signed_in = await sign_in_tokens(server, scope="user repo:read")
    arguments = {"owner": "bob", "repo": "website", "title": "x", "number": 1, "body": "x"}
    response = await tool_call_request(server, signed_in.access, tool, arguments)
    assert response.status_code == 403
    assert 'scope="user repo:read repo:write"' in response.headers["www-authenticate"]
    assert github.count("/repos/bob/website/issues", "POST") == 0


async def test_the_sdk_client_steps_up_to_create_an_issue(server: ServerProcess, github: FakeGitHub) -> None:
    async with McpUser(server, scope="user repo:read") as user:
        assert not (await user.call("list_issues", {"owner": "bob", "repo": "hello-world"})).is_error
        result = await user.call("create_issue", {"owner": "bob", "repo": "website", "title": "Stepped up"})
    assert not result.is_error
    assert user.storage.tokens is not None and user.storage.tokens.scope is not None
    assert "repo:write" in user.storage.tokens.scope.split()
    assert github.authorize_requests[-1]["scope"] == "public_repo read:user"


@pytest.mark.parametrize(
    "arguments",
    [
        {"owner": "bob", "repo": "website", "title": ""},
        {"owner": "bob", "repo": "website", "title": "x" * 257},
        {"owner": "bob", "repo": "website", "title": "x", "labels": "bug"},
        {"owner": "bob", "repo": "website", "title": "x", "labels": ["a,b"]},
        {"owner": "bob", "repo": "..", "title": "x"},
    ],
)
async def test_create_issue_input_is_checked_first(
    server: ServerProcess, github: FakeGitHub, arguments: dict[str, object]
) -> None:
    async with signed_in_client(server) as client:
        result = await client.call_tool("create_issue", arguments)
    assert tool_error(result)
    assert github.count("/repos/bob/website/issues", "POST") == 0


async def test_issue_tools_over_sse(start_server: StartServer, github: FakeGitHub) -> None:
    server = start_server(transport="sse")
    async with McpUser(server, scope="user repo:read repo:write") as user:
        issues = await user.call("list_issues", {"owner": "bob", "repo": "hello-world"})
        pull = await user.call("get_pull_request", {"owner": "bob", "repo": "hello-world", "number": 2})
        comment = await user.call(
            "add_issue_comment", {"owner": "bob", "repo": "hello-world", "number": 3, "body": "hi"}
        )
    assert issues.structured_content is not None and len(issues.structured_content["issues"]) == 2
    assert pull.structured_content is not None and pull.structured_content["number"] == 2
    assert not comment.is_error
