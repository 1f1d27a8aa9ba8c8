"""Choosing repositories at consent (issue 19): the choice, the picker after GitHub, and what a
client gets (nothing until the choice is submitted; then only what was chosen)."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urljoin

import httpx2
import pytest

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    CLIENT_REDIRECT,
    ManualClient,
    ServerProcess,
    bearer_client,
    consent_form,
    form_fields,
    query,
    server_db,
    table_rows,
    tool_error,
)

pytestmark = pytest.mark.anyio

OCTOCAT_ID = 583231


@pytest.fixture
def octocat(github: FakeGitHub) -> FakeGitHub:
    github.add_user("octocat", id=OCTOCAT_ID)
    github.sign_in("alice")
    return github


async def picker(http: httpx2.AsyncClient, client: ManualClient) -> httpx2.Response:
    """Consent with "only some repositories", then GitHub: the picker page the callback answers."""
    authorize = await http.get(client.authorize_url(scope="user repo:read repo:write"))
    consent = await http.get(authorize.headers["location"])
    assert 'name="repositories" value="chosen"' in consent.text
    fields = consent_form(consent.text, "approve") | {"repositories": "chosen"}
    to_github = await http.post(urljoin(str(consent.url), "/consent"), data=fields)
    assert to_github.status_code == 303, to_github.text
    at_github = await http.get(to_github.headers["location"])
    page = await http.get(at_github.headers["location"])
    assert page.status_code == 200 and 'action="/consent/repositories"' in page.text, page.text
    return page


async def choose(http: httpx2.AsyncClient, page: httpx2.Response, repos: list[str], typed: str = "") -> httpx2.Response:
    fields: dict[str, str | list[str]] = {**form_fields(page.text), "typed": typed, "action": "choose", "repo": repos}
    return await http.post(urljoin(str(page.url), "/consent/repositories"), data=fields)


def codes_of(server: ServerProcess, client: ManualClient) -> list[dict[str, object]]:
    return [
        row for row in table_rows(server.data_dir / "mcp.sqlite3", "codes") if client.client_id in str(row["record"])
    ]


def grant_of(server: ServerProcess, client: ManualClient) -> dict[str, object]:
    [grant] = [g for g in table_rows(server.data_dir / "mcp.sqlite3", "grants") if g["client_id"] == client.client_id]
    return grant


def offered(page: httpx2.Response) -> list[str]:
    return [unescape(v) for v in re.findall(r'type="checkbox" name="repo" value="([^"]+)"', page.text)]


async def test_only_the_chosen_repositories_reach_the_client(server: ServerProcess, octocat: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await picker(http, client)
        assert "alice/dotfiles" in offered(page) and "octocat/hello-world" not in offered(page)
        assert codes_of(server, client) == []  # nothing issued before the choice
        chosen = await choose(http, page, ["alice/hello-world"], typed="OctoCat/Hello-World")
    assert chosen.status_code == 302 and chosen.headers["location"].startswith(CLIENT_REDIRECT), chosen.text
    tokens = (await client.exchange(query(chosen.headers["location"])["code"])).json()
    async with bearer_client(server, tokens["access_token"]) as mcp:
        hello = await mcp.call_tool("get_repository", {"owner": "octocat", "repo": "hello-world"})
        mine = await mcp.call_tool("get_repository", {"owner": "alice", "repo": "hello-world"})
        refused = await mcp.call_tool("get_repository", {"owner": "alice", "repo": "dotfiles"})
    assert not hello.is_error and not mine.is_error
    assert "alice/dotfiles is not among the repositories this sign-in may reach" in tool_error(refused)
    stored = str(grant_of(server, client)["repositories"])
    assert '"octocat"' in stored and '"Hello-World"' not in stored  # as GitHub spells it


async def test_a_bad_or_unknown_name_asks_again_and_nothing_is_issued(
    server: ServerProcess, octocat: FakeGitHub
) -> None:
    client = await ManualClient.register(server)
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await picker(http, client)
        bad = await choose(http, page, [], typed="alice/..")
        unknown = await choose(http, bad, [], typed="nobody-here/nothing")
        empty = await choose(http, unknown, [])
        done = await choose(http, empty, ["alice/hello-world"])
        replayed = await choose(http, empty, ["alice/dotfiles"])
    assert bad.status_code == 400 and "is not a GitHub owner or owner/repository name" in unescape(bad.text)
    assert unknown.status_code == 400 and "GitHub shows you no repository named nobody-here/nothing" in unknown.text
    assert empty.status_code == 400 and "Choose at least one" in empty.text
    assert done.status_code == 302
    assert replayed.status_code == 403  # single use: its CSRF cookie went with the first answer
    assert len(codes_of(server, client)) == 1


async def test_the_picker_form_only_works_in_the_browser_that_signed_in(
    server: ServerProcess, octocat: FakeGitHub
) -> None:
    client = await ManualClient.register(server)
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await picker(http, client)
    async with httpx2.AsyncClient(timeout=10) as other:
        forged = await choose(other, page, ["alice/dotfiles"])
    assert forged.status_code == 403
    assert codes_of(server, client) == []
    assert (
        grant_of(server, client)["repositories"] == "[]"
    )  # abandoned: reaches nothing, and no code or token refers to it


async def test_all_repositories_stays_the_default(server: ServerProcess, octocat: FakeGitHub) -> None:
    client = await ManualClient.register(server)
    tokens = (await client.exchange((await client.sign_in(scope="user repo:read"))["code"])).json()
    async with bearer_client(server, tokens["access_token"]) as mcp:
        dotfiles = await mcp.call_tool("get_repository", {"owner": "alice", "repo": "dotfiles"})
    assert not dotfiles.is_error


async def test_the_picker_offers_and_accepts_only_what_the_server_allows(
    start_server: StartServer, octocat: FakeGitHub
) -> None:
    server = start_server(env={"MCP_ALLOWED_REPOSITORIES": "alice/hello-world"})
    client = await ManualClient.register(server)
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await picker(http, client)
        outside = await choose(http, page, ["alice/dotfiles"])
    assert offered(page) == ["alice/hello-world"]
    assert (
        outside.status_code == 400 and "alice/dotfiles is outside the repositories this server allows" in outside.text
    )


async def test_a_remembered_consent_keeps_a_narrower_choice_and_only_some_is_never_remembered(
    server: ServerProcess, octocat: FakeGitHub
) -> None:
    """Widening takes a new choice on the page: a re-sign-in that skips the page keeps what /account narrowed."""
    client = await ManualClient.register(server)

    async def sign_in(http: httpx2.AsyncClient) -> httpx2.Response:
        authorize = await http.get(client.authorize_url(scope="user repo:read"))
        return await http.get(authorize.headers["location"])

    async with httpx2.AsyncClient(timeout=10) as http:
        consent = await sign_in(http)
        approved = await http.post(urljoin(str(consent.url), "/consent"), data=consent_form(consent.text, "approve"))
        await http.get((await http.get(approved.headers["location"])).headers["location"])
        narrowed = '[{"owner": "alice", "repo": "hello-world", "owner_id": 1001, "repo_id": 1}]'
        with server_db(server) as db:
            db.execute("UPDATE grants SET repositories = ? WHERE client_id = ?", (narrowed, client.client_id))
        skipped = await sign_in(http)  # remembered: straight to GitHub
        assert skipped.status_code == 303, skipped.text
        callback = await http.get((await http.get(skipped.headers["location"])).headers["location"])
        assert callback.status_code == 302 and "code=" in callback.headers["location"]
        assert grant_of(server, client)["repositories"] == narrowed
        await picker(http, client)  # wider scopes show the page; choosing "only some" there...
        shown = await sign_in(http)
    assert shown.status_code == 200 and 'value="chosen"' in shown.text  # ...forgets the remembered approval
