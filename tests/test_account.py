"""The connected-apps page (issue 10, and "3/8 The first hour"): a user signs in with GitHub, tells
the apps holding access through this server apart, disconnects one after confirming (its tokens
stop working, the others keep working), and signs out."""

from __future__ import annotations

import json

import httpx2
import pytest
from playwright.async_api import Browser

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    ManualClient,
    ServerProcess,
    SignedIn,
    form_fields,
    mcp_status,
    register_client,
    sign_in_tokens,
)
from tests.test_browser import ARTIFACTS, chromium, chromium_present, new_page

pytestmark = pytest.mark.anyio

__all__ = ["chromium", "chromium_present"]  # fixtures shared with the consent page's browser tests

EDITOR_REDIRECT = "http://127.0.0.1:1/editor"  # nothing listens: the scripted browser stops there
NOTEBOOK_REDIRECT = "http://localhost:1/notebook"


async def account_session(http: httpx2.AsyncClient, server: ServerProcess) -> httpx2.Response:
    """Sign in to /account through the fake GitHub; returns the page."""
    start = await http.get(f"{server.url}/account/sign-in")
    assert start.status_code == 303
    at_github = await http.get(start.headers["location"])
    callback = await http.get(at_github.headers["location"])
    assert callback.status_code == 303 and callback.headers["location"] == "/account"
    return await http.get(f"{server.url}/account")


async def two_apps(server: ServerProcess) -> tuple[SignedIn, SignedIn]:
    """alice signs in to two different registered clients, each with its own scopes."""
    async with httpx2.AsyncClient(timeout=10) as http:
        editor_id = await register_client(http, server.url, [EDITOR_REDIRECT], "Example Editor")
        notebook_id = await register_client(http, server.url, [NOTEBOOK_REDIRECT], "Example Notebook")
    editor = await sign_in_tokens(server, client=ManualClient(server, editor_id, EDITOR_REDIRECT), scope="user")
    notebook = await sign_in_tokens(
        server, client=ManualClient(server, notebook_id, NOTEBOOK_REDIRECT), scope="repo:read repo:write"
    )
    return editor, notebook


def csrf_of(page: httpx2.Response) -> str:
    return page.text.split('name="csrf" value="')[1].split('"')[0]


def grant_of(page: httpx2.Response, name: str) -> str:
    row = page.text.split(f'<div class="app-name">{name}</div>')[1]
    return row.split('name="grant" value="')[1].split('"')[0]


async def test_see_two_apps_and_disconnect_one_in_a_real_browser(
    github: FakeGitHub, start_server: StartServer, chromium: Browser
) -> None:
    server = start_server(env={"MCP_AUDIT_LOG": "audit.log"})
    editor, notebook = await two_apps(server)
    page = await new_page(chromium)

    await page.goto(f"{server.url}/account")
    async with page.expect_navigation(url=f"{server.url}/account"):
        await page.get_by_role("button", name="Sign in with GitHub").click()

    assert "Signed in as alice" in await page.locator("main").inner_text()
    rows = page.locator("ul.apps > li")
    assert await rows.count() == 2
    first, second = (await rows.nth(0).inner_text(), await rows.nth(1).inner_text())
    by_name = {text.splitlines()[0]: text for text in (first, second)}
    assert set(by_name) == {"Example Editor", "Example Notebook"}
    editor_row, notebook_row = by_name["Example Editor"], by_name["Example Notebook"]
    assert "127.0.0.1:1" in editor_row and "localhost:1" in notebook_row  # the redirect hosts
    assert editor.client.client_id[:8] in editor_row and notebook.client.client_id[:8] in notebook_row
    assert editor.client.client_id not in editor_row  # a short id, not the whole one
    assert "Connected 20" in editor_row and "last used 20" in editor_row
    # Scopes in words, not codes.
    assert "Read your GitHub profile" in editor_row and "Read public repositories" not in editor_row
    assert "Create issues and comments" in notebook_row and "Read public repositories" in notebook_row
    assert "repo:write" not in notebook_row and "user" not in editor_row.split("It can:")[1]
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "account.png"), full_page=True)

    await page.get_by_role("button", name="Disconnect Example Editor").click()
    assert await page.locator("h1").inner_text() == "Disconnect Example Editor?"
    await page.screenshot(path=str(ARTIFACTS / "account-confirm.png"), full_page=True)
    assert [await mcp_status(server, editor.access), await mcp_status(server, notebook.access)] == [200, 200]
    await page.get_by_role("button", name="Yes, disconnect").click()

    done = await page.locator("main").inner_text()
    assert "Disconnected Example Editor: its tokens stopped working and its GitHub access was revoked" in done
    await page.screenshot(path=str(ARTIFACTS / "account-disconnected.png"), full_page=True)
    assert [await mcp_status(server, editor.access), await mcp_status(server, notebook.access)] == [401, 200]
    assert len(github.revocations) >= 2  # the disconnected app's GitHub token, and the page's own sign-in token
    events = [json.loads(line) for line in (server.data_dir / "audit.log").read_text().splitlines()]
    (killed,) = [e for e in events if e["event"] == "grant_killed"]
    assert killed["reason"] == "user_disconnected" and killed["login"] == "alice"
    assert killed["client_id"] == editor.client.client_id
    await page.get_by_role("link", name="Back to connected apps").click()
    assert await rows.count() == 1 and "Example Notebook" in await rows.nth(0).inner_text()


async def test_disconnect_asks_first_and_then_says_what_happened(github: FakeGitHub, server: ServerProcess) -> None:
    editor, notebook = await two_apps(server)
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await account_session(http, server)
        csrf, grant = csrf_of(page), grant_of(page, "Example Editor")

        asked = await http.post(f"{server.url}/account", data={"grant": grant, "csrf": csrf, "action": "disconnect"})
        assert asked.status_code == 200 and 'Disconnect <span class="client">Example Editor</span>?' in asked.text
        assert 'value="confirm"' in asked.text and 'href="/account">Cancel' in asked.text
        assert await mcp_status(server, editor.access) == 200  # asking disconnected nothing
        assert "Example Editor" in (await http.get(f"{server.url}/account")).text

        confirmed = await http.post(f"{server.url}/account", data=form_fields(asked.text) | {"action": "confirm"})
        assert confirmed.status_code == 200
        assert (
            "Disconnected Example Editor: its tokens stopped working and its GitHub access was revoked"
            in confirmed.text
        )
        assert [await mcp_status(server, editor.access), await mcp_status(server, notebook.access)] == [401, 200]
        again = await http.post(f"{server.url}/account", data={"grant": grant, "csrf": csrf, "action": "confirm"})
        assert again.status_code == 404 and "not connected" in again.text
        unknown = await http.post(f"{server.url}/account", data={"grant": grant, "csrf": csrf, "action": "explode"})
        assert unknown.status_code == 400
        assert "Example Editor" not in (await http.get(f"{server.url}/account")).text


async def test_sign_out_ends_the_page_session_and_leaves_apps_connected(
    github: FakeGitHub, server: ServerProcess
) -> None:
    alice = await sign_in_tokens(server)
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await account_session(http, server)
        assert 'value="sign-out"' in page.text
        csrf, grant = csrf_of(page), grant_of(page, "Manual")
        forged = await http.post(f"{server.url}/account", data={"csrf": "forged", "action": "sign-out"})
        assert forged.status_code == 403
        assert "Signed in as" in (await http.get(f"{server.url}/account")).text

        signed_out = await http.post(f"{server.url}/account", data={"csrf": csrf, "action": "sign-out"})
        assert signed_out.status_code == 200 and "Signed out" in signed_out.text
        cleared = [c for c in signed_out.headers.get_list("set-cookie") if c.startswith("mcp_account=")]
        assert len(cleared) == 1 and "Max-Age=0" in cleared[0]
        assert "mcp_account" not in http.cookies

        after = await http.get(f"{server.url}/account")
        assert "Sign in with GitHub" in after.text and "Manual" not in after.text
        late = await http.post(f"{server.url}/account", data={"grant": grant, "csrf": csrf, "action": "confirm"})
        assert late.status_code == 403  # the old page's form no longer works
    assert await mcp_status(server, alice.access) == 200


async def test_disconnect_needs_the_pages_csrf_token_and_the_users_own_grant(
    github: FakeGitHub, server: ServerProcess
) -> None:
    alice = await sign_in_tokens(server)
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await account_session(http, server)
        assert page.status_code == 200 and "Manual" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        forged = await http.post(f"{server.url}/account", data={"grant": "x", "csrf": "forged"})
        assert forged.status_code == 403
        csrf = csrf_of(page)
        foreign = await http.post(
            f"{server.url}/account", data={"grant": "someone-elses-grant", "csrf": csrf, "action": "disconnect"}
        )
        assert foreign.status_code == 404
    assert await mcp_status(server, alice.access) == 200
    async with httpx2.AsyncClient(timeout=10) as stranger:  # no session at all
        assert (await stranger.post(f"{server.url}/account", data={"grant": "x", "csrf": csrf})).status_code == 403
        anonymous = await stranger.get(f"{server.url}/account")
        assert anonymous.status_code == 200 and "Sign in with GitHub" in anonymous.text
