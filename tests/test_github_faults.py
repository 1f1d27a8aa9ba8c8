"""GitHub slow, answering 502, or dropping connections (issue 21): clear tool errors, one retry for a
read and none for a write, sign-in errors at the client's redirect URI with nothing stored, a stuck
call that holds up no other, and recovery as soon as GitHub is back.

The real stand-in is made to fail (ghmcp/standin/faults.py); the server runs as `main.py` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html import unescape
from typing import Any, Literal

import anyio
import httpx2
import pytest

from ghmcp.standin import Fault
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    ALL_TOOL_SCOPES,
    ManualClient,
    ServerProcess,
    authorize_request,
    bearer_client,
    open_consent,
    query,
    register_client,
    sign_in_tokens,
    submit_consent,
    table_rows,
    through_github,
    tool_error,
)

pytestmark = pytest.mark.anyio

Kind = Literal["slow", "502", "drop"]
OUTAGE_SAID = {
    "slow": "GitHub did not answer within 1 second",
    "502": "GitHub answered HTTP 502, a failure on its side",
    "drop": "GitHub dropped the connection before its answer was complete",
}
REPO = {"owner": "alice", "repo": "hello-world"}


@pytest.fixture(scope="module")
def quick(start_module_server: StartServer) -> ServerProcess:
    """A server whose GitHub calls give up after one second."""
    return start_module_server(env={"MCP_GITHUB_TIMEOUT_SECONDS": "1"})


@pytest.fixture(scope="module")
def patient(start_module_server: StartServer) -> ServerProcess:
    """A server that waits for GitHub far longer than any call here takes when GitHub is well."""
    return start_module_server(env={"MCP_GITHUB_TIMEOUT_SECONDS": "20"})


async def eventually(check: Callable[[], bool], seconds: float = 10) -> None:
    with anyio.fail_after(seconds):
        while not check():  # noqa: ASYNC110 (the stand-in's log is filled by another thread)
            await anyio.sleep(0.02)


@pytest.mark.parametrize("kind", ["slow", "502", "drop"])
async def test_an_outage_is_a_clear_tool_error_and_the_server_recovers(
    quick: ServerProcess, github: FakeGitHub, kind: Kind
) -> None:
    signed = await sign_in_tokens(quick, scope=ALL_TOOL_SCOPES)
    github.fail(Fault(kind))
    async with bearer_client(quick, signed.access) as client:
        reads = github.count("/user", "GET")
        text = tool_error(await client.call_tool("get_user_profile", {}))
        assert text.endswith(f": {OUTAGE_SAID[kind]}. Try again in a moment."), text
        # A read is retried once after a 502 or a drop; a timeout has used up the call's time.
        assert github.count("/user", "GET") - reads == (1 if kind == "slow" else 2)

        text = tool_error(await client.call_tool("star_repository", REPO))
        assert text.endswith(f": {OUTAGE_SAID[kind]}. Try again in a moment."), text
        assert github.count("/user/starred/alice/hello-world", "PUT") == 1  # a write: never twice
        created = {**REPO, "title": "Outage"}
        assert OUTAGE_SAID[kind] in tool_error(await client.call_tool("create_issue", created))
        assert github.count("/repos/alice/hello-world/issues", "POST") == 1

        github.fail(None)
        profile = await client.call_tool("get_user_profile", {})
        assert not profile.is_error and profile.structured_content["login"] == "alice"
        assert not (await client.call_tool("star_repository", REPO)).is_error


@pytest.mark.parametrize("kind", ["502", "drop"])
async def test_one_failed_read_is_absorbed_by_the_retry_but_a_write_is_not_resent(
    quick: ServerProcess, github: FakeGitHub, kind: Kind
) -> None:
    signed = await sign_in_tokens(quick, scope=ALL_TOOL_SCOPES)
    async with bearer_client(quick, signed.access) as client:
        github.fail(Fault(kind, prefix="/user", times=1))  # one stale keep-alive connection, say
        reads = github.count("/user", "GET")
        profile = await client.call_tool("get_user_profile", {})
        assert not profile.is_error and profile.structured_content["login"] == "alice"
        assert github.count("/user", "GET") - reads == 2

        github.fail(Fault(kind, prefix="/user/starred", times=1))
        assert OUTAGE_SAID[kind] in tool_error(await client.call_tool("star_repository", REPO))
        assert github.count("/user/starred/alice/hello-world", "PUT") == 1  # GitHub may have acted on it


async def test_a_call_stuck_on_a_slow_path_holds_up_no_other(patient: ServerProcess, github: FakeGitHub) -> None:
    signed = await sign_in_tokens(patient, scope=ALL_TOOL_SCOPES)
    github.fail(Fault("slow", prefix="/user", seconds=60))
    stuck: dict[str, Any] = {}

    async def call_slow_path() -> None:
        async with bearer_client(patient, signed.access) as client:
            stuck["result"] = await client.call_tool("get_user_profile", {})

    reads = github.count("/user", "GET")
    async with anyio.create_task_group() as tasks, bearer_client(patient, signed.access) as client:
        tasks.start_soon(call_slow_path)
        await eventually(lambda: github.count("/user", "GET") > reads)  # it waits at GitHub now
        for _ in range(3):
            healthy = await client.call_tool("get_repository", REPO)
            assert not healthy.is_error, tool_error(healthy)
        assert "result" not in stuck  # still waiting: GitHub has not answered it
        github.fail(None)  # GitHub recovers: the stuck call gets its answer
    assert not stuck["result"].is_error
    assert stuck["result"].structured_content["login"] == "alice"


def stored_for(server: ServerProcess, client_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row the sign-in of `client_id` could have left in the store."""
    db = server.data_dir / "mcp.sqlite3"
    tables = ("pending", "grants", "families", "consents")
    rows = {table: [r for r in table_rows(db, table) if r["client_id"] == client_id] for table in tables}
    rows["codes"] = [r for r in table_rows(db, "codes") if json.loads(r["record"])["client_id"] == client_id]
    return rows


@pytest.mark.parametrize("kind", ["slow", "502", "drop"])
@pytest.mark.parametrize("where", ["/login/oauth/access_token", "/user"])
async def test_an_outage_during_sign_in_reaches_the_client_and_nothing_is_stored(
    quick: ServerProcess, github: FakeGitHub, kind: Kind, where: str
) -> None:
    client = await ManualClient.register(quick)
    exchanges, reads = github.count("/login/oauth/access_token"), github.count("/user")
    github.fail(Fault(kind, prefix=where))

    answer = await client.sign_in(state="client-state-123")

    assert answer["error"] == "temporarily_unavailable"  # RFC 6749 §4.1.2.1: it passes; sign in again
    assert answer["state"] == "client-state-123" and answer["iss"] and "code" not in answer
    assert github.count("/login/oauth/access_token") - exchanges == 1  # the single-use code: sent once
    if where == "/user":
        assert github.count("/user") - reads == (1 if kind == "slow" else 2)
        assert github.live_tokens_for("alice") == []  # the GitHub token it got is revoked, not kept
    assert stored_for(quick, client.client_id) == {
        t: [] for t in ("pending", "grants", "families", "consents", "codes")
    }

    github.fail(None)
    again = await sign_in_tokens(quick, client=client)
    assert again.tokens["access_token"]


async def test_an_app_link_client_is_told_the_sign_in_did_not_complete(
    quick: ServerProcess, github: FakeGitHub, http: httpx2.AsyncClient
) -> None:
    """An app-link redirect URI gets a page that hands the answer over; it must not say "signed in"."""
    app_link = "cursor://anysphere.cursor-mcp/oauth/callback"
    client_id = await register_client(http, quick.url, [app_link], "Cursor")
    consent = await open_consent(http, authorize_request(quick.url, client_id, app_link, state="s1"))
    to_github = await submit_consent(http, consent, "approve")
    github.fail(Fault("502", prefix="/login/oauth/access_token"))

    page = await through_github(http, to_github.headers["location"])

    assert page.status_code == 200 and "Sign-in did not complete" in page.text and "signed in" not in page.text
    (link,) = re.findall(r'<a class="button" href="([^"]+)">Open Cursor</a>', page.text)
    answer = query(unescape(link))
    assert link.startswith(app_link) and answer["error"] == "temporarily_unavailable" and answer["state"] == "s1"
