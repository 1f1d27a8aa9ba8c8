"""The connected-apps page (issue 10): a user signs in with GitHub, sees the apps holding access
through this server, and disconnects one; its tokens stop working and the others keep working."""

from __future__ import annotations

import json

import httpx2
import pytest
from playwright.async_api import Browser

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import ServerProcess, mcp_status, sign_in_tokens
from tests.test_browser import ARTIFACTS, chromium, chromium_present, new_page

pytestmark = pytest.mark.anyio

__all__ = ["chromium", "chromium_present"]  # fixtures shared with the consent page's browser tests


async def account_session(http: httpx2.AsyncClient, server: ServerProcess) -> httpx2.Response:
    """Sign in to /account through the fake GitHub; returns the page."""
    start = await http.get(f"{server.url}/account/sign-in")
    assert start.status_code == 303
    at_github = await http.get(start.headers["location"])
    callback = await http.get(at_github.headers["location"])
    assert callback.status_code == 303 and callback.headers["location"] == "/account"
    return await http.get(f"{server.url}/account")


async def test_see_two_apps_and_disconnect_one_in_a_real_browser(
    github: FakeGitHub, start_server: StartServer, chromium: Browser
) -> None:
    server = start_server(env={"MCP_AUDIT_LOG": "audit.log"})
    editor = await sign_in_tokens(server)
    inspector = await sign_in_tokens(server)
    page = await new_page(chromium)

    await page.goto(f"{server.url}/account")
    async with page.expect_navigation(url=f"{server.url}/account"):
        await page.get_by_role("button", name="Sign in with GitHub").click()

    assert "Signed in as alice" in await page.locator("main").inner_text()
    assert await page.locator("ul.apps li").count() == 2
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "account.png"), full_page=True)
    async with page.expect_navigation(url=f"{server.url}/account"):
        await page.get_by_role("button", name="Disconnect Manual").first.click()

    assert await page.locator("ul.apps li").count() == 1
    # Exactly one app lost its access; the other one still works.
    assert sorted([await mcp_status(server, editor.access), await mcp_status(server, inspector.access)]) == [200, 401]
    assert len(github.revocations) >= 2  # the disconnected app's GitHub token, and the page's own sign-in token
    events = [json.loads(line) for line in (server.data_dir / "audit.log").read_text().splitlines()]
    (killed,) = [e for e in events if e["event"] == "grant_killed"]
    assert killed["reason"] == "user_disconnected" and killed["login"] == "alice"


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
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        foreign = await http.post(f"{server.url}/account", data={"grant": "someone-elses-grant", "csrf": csrf})
        assert foreign.status_code == 404
    assert await mcp_status(server, alice.access) == 200
    async with httpx2.AsyncClient(timeout=10) as stranger:  # no session at all
        assert (await stranger.post(f"{server.url}/account", data={"grant": "x", "csrf": csrf})).status_code == 403
        anonymous = await stranger.get(f"{server.url}/account")
        assert anonymous.status_code == 200 and "Sign in with GitHub" in anonymous.text
