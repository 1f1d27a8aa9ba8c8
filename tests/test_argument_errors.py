"""A bad tool argument gets one sentence naming the argument and the rule, for every tool, a forker's too."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AfterValidator

from ghmcp.web import build
from tests.fake_github import FakeGitHub
from tests.support import ServerProcess, in_process_settings, sign_in_tokens, signed_in_client, tool_call_request
from tools.arguments import ArgumentErrors

pytestmark = pytest.mark.anyio

BOB = {"owner": "bob", "repo": "website"}
OWNER = "Invalid argument `owner`: must be a GitHub user or organisation such as 'octocat'."
# (tool, a bad value for one argument, its sentence, the sentence for no arguments at all)
CASES = [
    ("list_my_repositories", {"per_page": 101}, "Invalid argument `per_page`: must be at most 100.", None),
    ("get_repository", {"owner": "-bob", "repo": "website"}, OWNER, "Missing arguments `owner` and `repo`."),
    (
        "get_file_contents",
        BOB | {"path": "docs/../../secrets"},
        "Invalid argument `path`: must be a path inside the repository such as 'docs/README.md'"
        " (no '.', '..' or '//').",
        "Missing arguments `owner` and `repo`.",
    ),
    ("search_repositories", {"query": ""}, "Invalid argument `query`: must not be empty.", "Missing argument `query`."),
    (
        "star_repository",
        BOB | {"star": "maybe"},
        "Invalid argument `star`: must be true or false.",
        "Missing arguments `owner` and `repo`.",
    ),
    (
        "list_issues",
        BOB | {"state": "stale"},
        "Invalid argument `state`: must be 'open', 'closed' or 'all'.",
        "Missing arguments `owner` and `repo`.",
    ),
    (
        "get_issue",
        BOB | {"number": 0},
        "Invalid argument `number`: must be at least 1.",
        "Missing arguments `owner`, `repo` and `number`.",
    ),
    (
        "create_issue",
        BOB | {"title": "x" * 257},
        "Invalid argument `title`: must be at most 256 characters long.",
        "Missing arguments `owner`, `repo` and `title`.",
    ),
    (
        "add_issue_comment",
        BOB | {"number": 1, "body": ""},
        "Invalid argument `body`: must not be empty.",
        "Missing arguments `owner`, `repo`, `number` and `body`.",
    ),
    (
        "list_pull_requests",
        BOB | {"limit": 101},
        "Invalid argument `limit`: must be at most 100.",
        "Missing arguments `owner` and `repo`.",
    ),
    (
        "get_pull_request",
        {"owner": "bob", "repo": "..", "number": 2},
        "Invalid argument `repo`: must be a repository name such as 'hello-world'.",
        "Missing arguments `owner`, `repo` and `number`.",
    ),
]
PYDANTIC = ("Input should", "Value error", "validation error", "pydantic", "Error executing", "[type=")


def one_sentence(result: Any) -> str:
    """The error text, checked: one line, one sentence, no pydantic wording, no URL."""
    assert result.is_error, result
    assert len(result.content) == 1
    text = str(result.content[0].text)
    assert "\n" not in text and text.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", text), text
    assert not any(word in text for word in PYDANTIC) and "http" not in text, text
    return text


@pytest.mark.parametrize(("tool", "bad", "sentence", "missing"), CASES, ids=[case[0] for case in CASES])
async def test_a_bad_or_missing_argument_is_one_sentence(
    server: ServerProcess, github: FakeGitHub, tool: str, bad: dict[str, Any], sentence: str, missing: str | None
) -> None:
    async with signed_in_client(server) as client:
        before = len(github.requests)
        assert one_sentence(await client.call_tool(tool, bad)) == sentence
        if missing is not None:  # list_my_repositories needs no argument
            assert one_sentence(await client.call_tool(tool, {})) == missing
        assert len(github.requests) == before  # refused before anything reached GitHub


async def test_every_argument_of_every_listed_tool_gets_one_sentence(server: ServerProcess, github: FakeGitHub) -> None:
    """Read from the tool list, so a tool a forker adds is covered without a line here."""
    wrong = {"integer": "many", "number": "many", "string": 123, "boolean": "maybe", "array": 5, "object": 5}
    async with signed_in_client(server) as client:
        tools = (await client.list_tools()).tools
        checked = []
        for tool in tools:
            for name, schema in tool.input_schema.get("properties", {}).items():
                kinds = [s.get("type") for s in schema.get("anyOf", [schema])]
                kind = next((k for k in kinds if k in wrong), None)
                if kind is None:
                    continue
                text = one_sentence(await client.call_tool(tool.name, {name: wrong[kind]}))
                assert f"invalid argument `{name}`: must be " in text.lower(), (tool.name, text)
                checked.append(f"{tool.name}.{name}")
    assert len(checked) >= 30 and "create_issue.labels" in checked and "get_issue.comments_limit" in checked


async def test_several_problems_stay_one_sentence(server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(server) as client:
        mixed = await client.call_tool("create_issue", {"owner": "bob", "title": "", "labels": ["a,b", "c,d"]})
    assert one_sentence(mixed) == (
        "Missing argument `repo`; invalid argument `title`: must not be empty (and 2 more problems)."
    )


async def test_a_caller_without_the_scope_gets_the_scope_refusal_over_http(
    server: ServerProcess, github: FakeGitHub
) -> None:
    signed_in = await sign_in_tokens(server, scope="user repo:read")
    response = await tool_call_request(server, signed_in.access, "create_issue", {"owner": "-", "title": ""})
    assert response.status_code == 403 and "repo:write" in response.headers["www-authenticate"]


async def test_the_scope_check_still_runs_first_in_the_built_app(
    monkeypatch: pytest.MonkeyPatch, github_url: str, tmp_path: Path
) -> None:
    """Past the HTTP fast path, on the middleware chain `build_app` installs: the scope refusal wins."""
    app = build.build_app(in_process_settings(monkeypatch, github_url, tmp_path))
    bad = {"owner": "-", "repo": "website", "title": ""}
    try:
        for granted, expect_refusal in ((["user", "repo:read"], True), (["user", "repo:write"], False)):
            caller = AuthenticatedUser(AccessToken(token="t", client_id="c", scopes=granted, expires_at=None))
            context = auth_context_var.set(caller)
            try:
                async with Client(app.state.mcp) as client:
                    if expect_refusal:
                        with pytest.raises(Exception, match="Forbidden: This tool needs the repo:write scope"):
                            await client.call_tool("create_issue", bad)
                    else:
                        assert one_sentence(await client.call_tool("create_issue", bad)) == OWNER[:-1] + (
                            " (and 1 more problem)."
                        )
            finally:
                auth_context_var.reset(context)
    finally:
        provider = app.state.provider
        await provider.github.http.aclose()
        await provider.clients.documents.aclose()
        await provider.storage.close()


def _crashes(value: str) -> str:
    raise RuntimeError("a bug in the forker's validator")


Crashing = Annotated[str, AfterValidator(_crashes)]


async def test_other_tool_errors_are_left_as_the_sdk_wrote_them() -> None:
    """A tool's own refusal, an unknown tool and a crashing validator are not argument errors."""
    mcp = MCPServer("forker")
    mcp.middleware.append(ArgumentErrors(mcp))

    @mcp.tool()
    def refuses(word: str) -> str:
        raise ToolError("the tool's own words")

    @mcp.tool()
    def buggy(value: Crashing) -> str:
        return value

    async with Client(mcp) as client:
        own = await client.call_tool("refuses", {"word": "x"})
        unknown = await client.call_tool("nope", {})
        crash = await client.call_tool("buggy", {"value": "x"})
        typed = await client.call_tool("buggy", {"value": 5})
    assert own.is_error and own.content[0].text == "Error executing tool refuses: the tool's own words"  # type: ignore[union-attr]
    assert unknown.is_error and "nope" in unknown.content[0].text  # type: ignore[union-attr]
    assert crash.is_error and crash.content[0].text == "Error executing tool buggy"  # type: ignore[union-attr]
    assert one_sentence(typed) == "Invalid argument `value`: must be a string."
