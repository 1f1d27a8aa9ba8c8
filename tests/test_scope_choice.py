"""Scopes the user chooses (issue 19): a checkbox per scope at consent, and narrowing on /account.

What the user kept is all that goes on: to GitHub's authorize URL, the grant, the code, the tokens,
the token response's `scope`, every refresh. A tool needing an unchecked scope gets the step-up
403, and the next consent offers that scope again. A forged scope is refused with nothing stored.
Narrowing on /account holds on another replica (one Redis) within the token cache's bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx2
import pytest

from ghmcp.auth import choice
from ghmcp.storage import Storage, open_storage
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    ManualClient,
    ServerProcess,
    SignedIn,
    authorize_request,
    bearer_client,
    checked_boxes,
    exchange_code,
    form_fields,
    open_consent,
    query,
    refresh_grant,
    register_client,
    sign_in_tokens,
    table_rows,
    through_github,
    tool_call_request,
)
from tests.test_account import account_session, csrf_of
from tests.test_replicas import start_pair
from tests.test_scopes import challenge
from tests.test_storage_contract import LIMITS, grant, store, stores

pytestmark = pytest.mark.anyio

__all__ = ["store", "stores"]  # the storage contract's fixtures, both backends
REDIRECT = "http://127.0.0.1:1/callback"
ASKED = "user repo:read repo:write"
REPO = {"owner": "bob", "repo": "hello-world"}
ISSUE = REPO | {"title": "Chosen scopes"}


async def works(server: ServerProcess, access: str, tool: str, arguments: dict[str, str]) -> bool:
    """Whether a tool call with this bearer succeeds (through a whole MCP session)."""
    async with bearer_client(server, access) as client:
        return not (await client.call_tool(tool, arguments)).is_error


async def consent_page(http: httpx2.AsyncClient, server: ServerProcess, scope: str = ASKED) -> httpx2.Response:
    client_id = await register_client(http, server.url, [REDIRECT], "Chooser")
    page = await open_consent(http, authorize_request(server.url, client_id, REDIRECT, scope=scope))
    assert page.status_code == 200, page.text
    return page


async def approve(http: httpx2.AsyncClient, page: httpx2.Response, scopes: list[str]) -> httpx2.Response:
    data = form_fields(page.text) | {"action": "approve", "scope": scopes}
    return await http.post(urljoin(str(page.url), "/consent"), data=data)


async def test_the_consent_page_offers_a_checkbox_per_scope_and_locks_the_sign_in_one(server: ServerProcess) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await consent_page(http, server)
    assert checked_boxes(page.text) == {"scope": ["repo:read", "repo:write"]}  # what a browser submits
    assert f'value="{choice.SIGN_IN_SCOPE}" checked disabled>' in page.text
    assert "needed to sign in" in page.text and "Create issues and comments" in page.text


async def test_an_unchecked_scope_is_not_asked_of_github_not_in_the_token_and_refused_with_step_up(
    github: FakeGitHub, start_server: StartServer
) -> None:
    server = start_server(env={"MCP_AUDIT_LOG": "audit.log"})
    async with httpx2.AsyncClient(timeout=10) as http:
        client_id = await register_client(http, server.url, [REDIRECT], "Chooser")
        auth = authorize_request(server.url, client_id, REDIRECT, scope=ASKED)
        page = await open_consent(http, auth)
        to_github = await approve(http, page, ["repo:read"])  # repo:write unchecked; user is locked
        assert to_github.status_code == 303
        assert query(to_github.headers["location"])["scope"] == "read:user"  # no public_repo
        callback = await through_github(http, to_github.headers["location"])
        tokens = (await exchange_code(http, server.url, auth, query(callback.headers["location"])["code"])).json()
        assert tokens["scope"] == "user repo:read"
        (stored,) = table_rows(server.data_dir / "mcp.sqlite3", "grants")
        assert stored["scopes"] == "user repo:read" and stored["github_scopes"] == "read:user"

        refused = await tool_call_request(server, tokens["access_token"], "create_issue", ISSUE)
        assert refused.status_code == 403
        step_up = challenge(refused)
        assert step_up["error"] == "insufficient_scope" and "repo:write" in step_up["scope"].split()
        assert await works(server, tokens["access_token"], "get_repository", REPO)

        # The client asks again for what it lacks: the page is shown (not remembered) and offers it.
        again = await open_consent(http, authorize_request(server.url, client_id, REDIRECT, scope=step_up["scope"]))
        assert again.status_code == 200 and "repo:write" in checked_boxes(again.text)["scope"]
    events = [json.loads(line) for line in (server.data_dir / "audit.log").read_text().splitlines()]
    (given,) = [e for e in events if e["event"] == "consent_given"]
    assert given["scopes"] == ["user", "repo:read"] and given["unchecked"] == ["repo:write"]


async def test_a_remembered_consent_covers_only_what_was_kept(server: ServerProcess) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        client_id = await register_client(http, server.url, [REDIRECT], "Chooser")
        page = await open_consent(http, authorize_request(server.url, client_id, REDIRECT, scope=ASKED))
        assert (await approve(http, page, ["repo:read"])).status_code == 303
        kept = await open_consent(http, authorize_request(server.url, client_id, REDIRECT, scope="user repo:read"))
        assert kept.status_code == 303  # remembered: straight to GitHub
        assert query(kept.headers["location"])["scope"] == "read:user"


@pytest.mark.parametrize("forged", [["repo:private"], ["repo:read", "admin"], ["repo:write"]])
async def test_a_forged_scope_is_refused_and_nothing_is_stored(
    github: FakeGitHub, server: ServerProcess, forged: list[str]
) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await consent_page(http, server, scope="user repo:read")
        refused = await approve(http, page, forged)
        assert refused.status_code == 400 and "did not offer" in refused.text
        assert github.count("/login/oauth/authorize") == 0
        assert table_rows(server.data_dir / "mcp.sqlite3", "codes") == []
        # The page's own list is signed into its CSRF token: a token from another page does not widen it.
        wider = await consent_page(http, server, scope=ASKED)
        other = await http.post(
            urljoin(str(page.url), "/consent"),
            data=form_fields(page.text) | {"csrf": form_fields(wider.text)["csrf"], "action": "approve"},
        )
        assert other.status_code == 403


async def test_refresh_keeps_the_narrowed_set(github: FakeGitHub, server: ServerProcess) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        client_id = await register_client(http, server.url, [REDIRECT], "Chooser")
        auth = authorize_request(server.url, client_id, REDIRECT, scope=ASKED)
        to_github = await approve(http, await open_consent(http, auth), ["repo:write"])  # repo:read unchecked
        callback = await through_github(http, to_github.headers["location"])
        tokens = (await exchange_code(http, server.url, auth, query(callback.headers["location"])["code"])).json()
    assert tokens["scope"] == "user repo:write"
    client = ManualClient(server, client_id, REDIRECT, auth.verifier)
    refreshed = await refresh_grant(client, tokens["refresh_token"])
    assert refreshed.status_code == 200 and refreshed.json()["scope"] == "user repo:write"
    widened = await refresh_grant(client, refreshed.json()["refresh_token"], scope=ASKED)
    assert widened.status_code == 400 and widened.json()["error"] == "invalid_scope"


def grant_of_client(page: httpx2.Response, client_id: str) -> str:
    """The grant id in the /account row of the app whose id starts the row's `app id` (8 characters)."""
    row = next(r for r in page.text.split("<li>\n") if f"<code>{client_id[:8]}</code>" in r)
    return row.split('name="grant" value="')[1].split('"')[0]


async def narrow_on_account(server: ServerProcess, client_id: str, keep: list[str]) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await account_session(http, server)
        form = {"grant": grant_of_client(page, client_id), "csrf": csrf_of(page), "action": "narrow", "scope": keep}
        return await http.post(f"{server.url}/account", data=form)


async def until_refused(server: ServerProcess, access: str) -> int:
    """The status of a write tool call, asked again until refused (bounded: 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        status = (await tool_call_request(server, access, "create_issue", ISSUE)).status_code
        if status == 403 or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.05)


async def test_narrowing_on_account_takes_effect_on_a_second_replica(
    github: FakeGitHub, start_server: StartServer, redis_url: str
) -> None:
    a, b = start_pair(start_server, redis_url, MCP_AUDIT_LOG="audit.log")
    signed: SignedIn = await sign_in_tokens(a, scope=ASKED)
    assert signed.tokens["scope"] == ASKED
    assert await works(b, signed.access, "create_issue", ISSUE)  # B has read (and cached) it with repo:write

    narrowed = await narrow_on_account(a, signed.client.client_id, ["repo:read"])
    assert narrowed.status_code == 200 and "can no longer: Create issues" in narrowed.text

    assert await until_refused(b, signed.access) == 403
    assert await works(b, signed.access, "get_repository", REPO)
    refreshed = await refresh_grant(ManualClient(b, signed.client.client_id), signed.refresh)
    assert refreshed.status_code == 200 and refreshed.json()["scope"] == "user repo:read"
    events = [json.loads(line) for line in (a.data_dir / "audit.log").read_text().splitlines()]
    (event,) = [e for e in events if e["event"] == "grant_narrowed"]
    assert sorted(event["scopes"]) == ["repo:read", "user"]
    assert event["removed"] == ["repo:write"] and event["client_id"] == signed.client.client_id


async def test_account_narrows_only_and_never_widens(github: FakeGitHub, server: ServerProcess) -> None:
    signed = await sign_in_tokens(server, scope="user repo:read")
    wider = await narrow_on_account(server, signed.client.client_id, ["repo:read", "repo:write"])
    assert wider.status_code == 400 and "can only be narrowed" in wider.text
    same = await narrow_on_account(server, signed.client.client_id, ["repo:read"])
    assert same.status_code == 200 and "Nothing changed" in same.text
    emptied = await narrow_on_account(server, signed.client.client_id, [])  # the sign-in scope stays
    assert emptied.status_code == 200
    refreshed = await refresh_grant(signed.client, signed.refresh)
    assert refreshed.json()["scope"] == "user"


async def test_the_store_keeps_the_consent_choice_and_a_grant_narrows_for_its_subject_only(store: Storage) -> None:
    now = time.time()
    record = {"scopes": ["user", "repo:read", "repo:write"]}
    await store.add_pending("k", record, client_id="c", origin="o", expires_at=now + 60, limits=LIMITS, now=now)
    assert await store.approve_pending("k", "s", 60, now, {"scopes": ["user"]})
    assert await store.take_pending_by_state("s", now) == {"scopes": ["user"]}

    g = grant()
    g.scopes = "user repo:read"
    g.grant_id, _ = await store.upsert_grant(g)
    assert (await store.get_grant(g.grant_id)).scopes == "user repo:read"  # type: ignore[union-attr]
    assert not await store.narrow_grant(g.grant_id, "someone-else", "")
    assert await store.narrow_grant(g.grant_id, g.subject, "user")
    assert (await store.get_grant(g.grant_id)).scopes == "user"  # type: ignore[union-attr]
    await store.kill_grant(g.grant_id)
    assert not await store.narrow_grant(g.grant_id, g.subject, "")


def test_kept_scopes_are_a_subset_of_those_shown_with_the_sign_in_scope_always() -> None:
    shown = choice.offered(["repo:read", "user", "repo:read", "repo:write"])
    assert shown == ["repo:read", "user", "repo:write"]
    assert choice.kept(shown, []) == ["user"]
    assert choice.kept(shown, ["repo:write"]) == ["user", "repo:write"]
    assert choice.kept(shown, ["repo:private"]) is None
    assert choice.kept(["repo:read"], []) == []  # not asked for: nothing to lock
    assert choice.within(["user", "repo:write"], "user") == ["user"]
    assert choice.within(["user", "repo:write"], None) == ["user", "repo:write"]


async def test_a_store_written_before_grants_carried_scopes_bounds_nothing_more(tmp_path: Path) -> None:
    """An older SQLite file gains the column; its grants have no bound beyond their families' scopes."""
    path = tmp_path / "old.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE grants (grant_id TEXT PRIMARY KEY, subject TEXT NOT NULL, client_id TEXT NOT NULL,"
            " github_login TEXT NOT NULL, token_enc TEXT NOT NULL, refresh_enc TEXT, expires_at REAL,"
            " refresh_expires_at REAL, github_scopes TEXT NOT NULL, dead INTEGER NOT NULL DEFAULT 0,"
            " admitted_via TEXT NOT NULL DEFAULT '', refresh_lease_until REAL NOT NULL DEFAULT 0,"
            " UNIQUE (subject, client_id))"
        )
        db.execute(
            "INSERT INTO grants (grant_id, subject, client_id, github_login, token_enc, github_scopes)"
            " VALUES ('g1', 's', 'c', 'alice', 'enc', 'read:user')"
        )
        db.commit()
    store = open_storage(f"sqlite:///{path}", unused_client_seconds=1, idle_client_seconds=1)
    try:
        old = await store.get_grant("g1")
        assert old is not None and old.scopes is None
        assert choice.within(["user", "repo:write"], old.scopes) == ["user", "repo:write"]
        assert await store.narrow_grant("g1", "s", "user")
        assert (await store.get_grant("g1")).scopes == "user"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_a_consent_remembered_in_another_browser_does_not_give_back_what_was_narrowed(
    github: FakeGitHub, server: ServerProcess
) -> None:
    async with httpx2.AsyncClient(timeout=10) as laptop:
        client_id = await register_client(laptop, server.url, [REDIRECT], "Chooser")
        auth = authorize_request(server.url, client_id, REDIRECT, scope=ASKED)
        to_github = await approve(laptop, await open_consent(laptop, auth), ["repo:read", "repo:write"])
        callback = await through_github(laptop, to_github.headers["location"])
        first = await exchange_code(laptop, server.url, auth, query(callback.headers["location"])["code"])
        assert first.json()["scope"] == ASKED  # and the laptop remembers all three

        narrowed = await narrow_on_account(server, client_id, ["repo:read"])  # in another browser
        assert narrowed.status_code == 200

        again = authorize_request(server.url, client_id, REDIRECT, scope=ASKED)
        remembered = await open_consent(laptop, again)
        assert remembered.status_code == 303  # the laptop's memory skips the page...
        back = await through_github(laptop, remembered.headers["location"])
        assert back.status_code == 302 and back.headers["location"].startswith(f"{server.url}/consent?")
        page = await laptop.get(back.headers["location"])  # ...but the narrowed grant asks on the page again
        assert page.status_code == 200 and checked_boxes(page.text) == {"scope": ["repo:read", "repo:write"]}
        to_github = await approve(laptop, page, ["repo:read", "repo:write"])  # widening: a consent on the page
        code = query((await through_github(laptop, to_github.headers["location"])).headers["location"])["code"]
        tokens = (await exchange_code(laptop, server.url, again, code)).json()
    assert tokens["scope"] == ASKED
