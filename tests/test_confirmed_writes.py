"""Confirmed writes (MCP_CONFIRM_WRITES, on by default): the SDK client over the real HTTP server, signed
in through the real flow, against the GitHub stand-in. Nothing reaches GitHub but after the user accepts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CallToolResult,
    ClientCapabilities,
    ElicitationCapability,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    ToolAnnotations,
)

from ghmcp.auth.confirm import MISMATCH, QUESTION, USED, ConfirmWrites
from ghmcp.storage import open_storage
from tests.fake_github import FakeGitHub
from tests.support import ServerProcess, bearer_client, sign_in_tokens, tool_error

pytestmark = pytest.mark.anyio

StartServer = Callable[..., ServerProcess]
ISSUE = {"owner": "bob", "repo": "website", "title": "Typo on the home page", "labels": ["docs"]}


@pytest.fixture(scope="module")
def confirming_server(start_module_server: StartServer) -> ServerProcess:
    # MCP_CONFIRM_WRITES unset: the default, on. The audit log is written in the server's data directory.
    return start_module_server(env={"MCP_CONFIRM_WRITES": None, "MCP_AUDIT_LOG": "audit.log"})


@pytest.fixture
def server(confirming_server: ServerProcess, github: FakeGitHub) -> ServerProcess:
    return confirming_server


class User:
    """The person behind the client: answers every confirmation with `action` and remembers what was shown."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.shown: list[str] = []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        assert isinstance(params, ElicitRequestFormParams)
        self.shown.append(params.message)
        return ElicitResult(action=self.action, content={} if self.action == "accept" else None)  # type: ignore[arg-type]


def writes(github: FakeGitHub) -> list[tuple[str, str]]:
    """Every request to GitHub's API that was not a read (sign-in's token requests left out)."""
    return [(method, path) for method, path in github.requests if method != "GET" and not path.startswith("/login/")]


async def access_token(server: ServerProcess) -> str:
    return (await sign_in_tokens(server, scope="user repo:read repo:write")).access


async def test_accepted_issue_is_created_after_the_user_saw_the_exact_action(
    server: ServerProcess, github: FakeGitHub
) -> None:
    user = User("accept")
    async with bearer_client(server, await access_token(server), elicitation_callback=user) as client:
        created = await client.call_tool("create_issue", ISSUE)
    assert not created.is_error and created.structured_content is not None
    assert created.structured_content["title"] == "Typo on the home page"
    assert [i.title for i in github.users["bob"].repos[3].issues] == ["Typo on the home page"]
    assert writes(github) == [("POST", "/repos/bob/website/issues")]
    [shown] = user.shown
    assert shown.startswith("Allow create_issue to act on GitHub as you?")
    for line in ['owner: "bob"', 'repo: "website"', 'title: "Typo on the home page"', 'labels: ["docs"]']:
        assert line in shown


async def test_the_question_shows_defaults_and_cannot_be_faked(server: ServerProcess, github: FakeGitHub) -> None:
    user = User("decline")
    sneaky = 'Fine\u202e\n  repo: "elsewhere"'
    async with bearer_client(server, await access_token(server), elicitation_callback=user) as client:
        await client.call_tool("star_repository", {"owner": "bob", "repo": "website"})
        await client.call_tool("create_issue", {**ISSUE, "title": sneaky})
    assert "star: true" in user.shown[0]  # star or unstar: the user sees which
    assert [line for line in user.shown[1].splitlines() if line.startswith("  repo:")] == ['  repo: "website"']
    assert 'title: "Fine\\u202e\\n  repo: \\"elsewhere\\""' in user.shown[1]


@pytest.mark.parametrize(("action", "said"), [("decline", "declined"), ("cancel", "cancelled")])
async def test_declined_or_cancelled_write_does_nothing(
    server: ServerProcess, github: FakeGitHub, action: str, said: str
) -> None:
    async with bearer_client(server, await access_token(server), elicitation_callback=User(action)) as client:
        result = await client.call_tool("create_issue", ISSUE)
        comment = await client.call_tool(
            "add_issue_comment", {"owner": "bob", "repo": "hello-world", "number": 1, "body": "Me too"}
        )
    assert f"You {said} create_issue: nothing was done" in tool_error(result)
    assert "nothing was sent to GitHub" in tool_error(comment)
    assert github.users["bob"].repos[3].issues == []
    assert writes(github) == []
    audit = (server.data_dir / "audit.log").read_text()
    events = [json.loads(line) for line in audit.splitlines()]
    answered = [e for e in events if e["event"] == "write_confirmation" and e["outcome"] == action]
    assert {e["tool"] for e in answered} >= {"create_issue", "add_issue_comment"}
    assert "Typo on the home page" not in audit and "Me too" not in audit  # arguments are never logged


async def test_a_client_without_elicitation_is_told_how_to_proceed(server: ServerProcess, github: FakeGitHub) -> None:
    async with bearer_client(server, await access_token(server)) as client:
        result = await client.call_tool("create_issue", ISSUE)
        read = await client.call_tool("list_issues", {"owner": "bob", "repo": "hello-world"})
    message = tool_error(result)
    assert "declared no form elicitation capability" in message and "Nothing was done" in message
    assert "MCP_CONFIRM_WRITES=false" in message
    assert not read.is_error  # reads are never asked about
    assert writes(github) == []


async def test_tampered_or_borrowed_state_is_refused(server: ServerProcess, github: FakeGitHub) -> None:
    accept = {QUESTION: ElicitResult(action="accept", content={})}
    async with bearer_client(server, await access_token(server), elicitation_callback=User("accept")) as client:
        first = await client.session.call_tool("create_issue", ISSUE, allow_input_required=True)
        assert isinstance(first, InputRequiredResult) and first.request_state is not None
        assert set(first.input_requests or {}) == {QUESTION}
        state = first.request_state
        middle = len(state) // 2
        tampered = state[:middle] + ("A" if state[middle] != "A" else "B") + state[middle + 1 :]
        other_title = {**ISSUE, "title": "Something else entirely"}
        for arguments, sent_state in [(ISSUE, tampered), (other_title, state), (ISSUE, "confirm-write-v1:forged")]:
            with pytest.raises(MCPError) as refused:
                await client.session.call_tool(
                    "create_issue",
                    arguments,
                    input_responses=accept,  # type: ignore[arg-type]
                    request_state=sent_state,
                    allow_input_required=True,
                )
            assert refused.value.error.message == "Invalid or expired requestState"
    # Another caller (its own client) cannot use a state it was not given.
    async with bearer_client(server, await access_token(server)) as other:
        with pytest.raises(MCPError) as refused:
            await other.session.call_tool(
                "create_issue",
                ISSUE,
                input_responses=accept,  # type: ignore[arg-type]
                request_state=state,
                allow_input_required=True,
            )
        assert refused.value.error.message == "Invalid or expired requestState"
    assert writes(github) == []


async def test_an_answer_without_the_state_is_asked_again(server: ServerProcess, github: FakeGitHub) -> None:
    accept = {QUESTION: ElicitResult(action="accept", content={})}
    async with bearer_client(server, await access_token(server), elicitation_callback=User("accept")) as client:
        again = await client.session.call_tool(
            "create_issue",
            ISSUE,
            input_responses=accept,  # type: ignore[arg-type]
            allow_input_required=True,
        )
    assert isinstance(again, InputRequiredResult)
    assert writes(github) == []


async def test_legacy_protocol_asks_with_a_server_request(server: ServerProcess, github: FakeGitHub) -> None:
    user = User("accept")
    token = await access_token(server)
    async with bearer_client(server, token, elicitation_callback=user, mode="legacy") as client:
        created = await client.call_tool("create_issue", ISSUE)
    assert not created.is_error and len(user.shown) == 1
    async with bearer_client(server, token, elicitation_callback=User("decline"), mode="legacy") as client:
        declined = await client.call_tool("create_issue", {**ISSUE, "title": "Second"})
    assert "nothing was done" in tool_error(declined)
    async with bearer_client(server, token, mode="legacy") as client:
        unasked = await client.call_tool("create_issue", {**ISSUE, "title": "Third"})
    assert "declared no form elicitation capability" in tool_error(unasked)
    assert writes(github) == [("POST", "/repos/bob/website/issues")]


async def test_confirmation_off_writes_at_once(start_server: StartServer, github: FakeGitHub) -> None:
    server = start_server(env={"MCP_CONFIRM_WRITES": "false"})
    async with bearer_client(server, await access_token(server)) as client:
        created = await client.call_tool("create_issue", ISSUE)
    assert not created.is_error
    assert writes(github) == [("POST", "/repos/bob/website/issues")]


async def test_the_state_names_the_action_even_without_the_sdks_binding(tmp_path: Path) -> None:
    """The middleware alone, without the SDK's seal around it (as if a forker's policy bound no principal):
    a state given for other arguments is refused, and only the matching one with `accept` runs the tool."""
    mcp = MCPServer("confirm")

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False))
    def post(text: str) -> str:
        return text

    ran: list[Any] = []

    async def call_next(ctx: ServerRequestContext[Any, Any]) -> Any:
        ran.append(ctx.params)
        return {}

    session = SimpleNamespace(client_capabilities=ClientCapabilities(elicitation=ElicitationCapability()))

    def request(text: str, **rest: Any) -> ServerRequestContext[Any, Any]:
        params = {"name": "post", "arguments": {"text": text}, **rest}
        return ServerRequestContext(
            session=session,  # type: ignore[arg-type]
            lifespan_context={},
            protocol_version="2026-07-28",
            method="tools/call",
            params=params,
        )

    store = open_storage(f"sqlite:///{tmp_path / 'mcp.sqlite3'}", unused_client_seconds=60, idle_client_seconds=60)
    confirm = ConfirmWrites(mcp, store, 600)
    asked = await confirm(request("hello"), call_next)
    assert isinstance(asked, InputRequiredResult) and ran == []
    accept = {QUESTION: {"action": "accept", "content": {}}}
    with pytest.raises(MCPError, match=MISMATCH):
        await confirm(request("goodbye", requestState=asked.request_state, inputResponses=accept), call_next)
    assert ran == []
    await confirm(request("hello", requestState=asked.request_state, inputResponses=accept), call_next)
    assert ran == [{"name": "post", "arguments": {"text": "hello"}}]
    again = await confirm(request("hello", requestState=asked.request_state, inputResponses=accept), call_next)
    assert isinstance(again, dict) and again["isError"] and len(ran) == 1  # one yes, one run
    await store.close()


async def test_bad_arguments_are_refused_before_anyone_is_asked(server: ServerProcess, github: FakeGitHub) -> None:
    user = User("accept")
    async with bearer_client(server, await access_token(server), elicitation_callback=user) as client:
        result = await client.call_tool("create_issue", {**ISSUE, "title": ""})
    assert tool_error(result) == "Invalid argument `title`: must not be empty."
    assert user.shown == [] and writes(github) == []


async def test_stateless_http(start_server: StartServer, github: FakeGitHub) -> None:
    """2026-07-28 needs no session: the state travels with the call. A legacy client there cannot be asked."""
    server = start_server(env={"MCP_CONFIRM_WRITES": None, "MCP_STATELESS_HTTP": "true"})
    token = await access_token(server)
    async with bearer_client(server, token, elicitation_callback=User("accept")) as client:
        assert not (await client.call_tool("create_issue", ISSUE)).is_error
    async with bearer_client(server, token, elicitation_callback=User("accept"), mode="legacy") as client:
        legacy = await client.call_tool("create_issue", {**ISSUE, "title": "Second"})
    assert "this connection cannot carry the question" in tool_error(legacy)
    assert writes(github) == [("POST", "/repos/bob/website/issues")]


async def test_an_accepted_confirmation_is_spent_on_first_use(server: ServerProcess, github: FakeGitHub) -> None:
    """A replayed (or blindly retried) accepted state writes nothing again: one yes, one write."""
    accept = {QUESTION: ElicitResult(action="accept", content={})}
    async with bearer_client(server, await access_token(server), elicitation_callback=User("accept")) as client:
        first = await client.session.call_tool("create_issue", ISSUE, allow_input_required=True)
        assert isinstance(first, InputRequiredResult) and first.request_state is not None
        answers = []
        for _ in range(2):
            answers.append(
                await client.session.call_tool(
                    "create_issue",
                    ISSUE,
                    input_responses=accept,  # type: ignore[arg-type]
                    request_state=first.request_state,
                    allow_input_required=True,
                )
            )
    assert isinstance(answers[0], CallToolResult) and not answers[0].is_error
    assert isinstance(answers[1], CallToolResult) and answers[1].is_error
    assert tool_error(answers[1]) == USED
    assert writes(github) == [("POST", "/repos/bob/website/issues")]
