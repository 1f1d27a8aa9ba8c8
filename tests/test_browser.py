"""The consent page in a real browser (headless Debian Chromium driven by Playwright).

What an HTTP-level test cannot show: that the page renders and its buttons work under its
own CSP, that a real browser follows the whole chain to the client's redirect URI, and that
Chromium refuses to put the page in a frame. Screenshots land in `test-artifacts/`.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.fake_github import FakeGitHub
from tests.support import (
    ROOT,
    AuthorizeRequest,
    ServerProcess,
    authorize_request,
    bearer_client,
    exchange_code,
    query,
    register_client,
    running_server,
    tool_call_request,
    tool_error,
    unavailable,
)
from tests.test_scopes import challenge

pytestmark = pytest.mark.anyio

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module", autouse=True)
def chromium_present() -> None:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (install Debian's chromium package; never `playwright install`)")


@pytest.fixture(scope="module")
def mcp_server(module_server: ServerProcess) -> ServerProcess:
    return module_server


@dataclass
class ClientSite:
    """A tiny web site on another origin: the client's redirect URI, and a page that frames others."""

    url: str
    received: list[str] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/callback"

    @property
    def framing_page(self) -> str:
        return f"{self.url}/framer"


@contextmanager
def client_site() -> Iterator[ClientSite]:
    site = ClientSite("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/callback"):
                site.received.append(self.path)
                body = "<!doctype html><title>Client</title><p id=done>The client got the answer.</p>"
            elif self.path == "/framer":
                iframes = "".join(
                    f'<iframe id="f{i}" src="{escape(src)}" width="600" height="400"></iframe>'
                    for i, src in enumerate(site.frames)
                )
                body = f"<!doctype html><title>Evil framer</title>{iframes}"
            else:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def site() -> Iterator[ClientSite]:
    with client_site() as running:
        yield running


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, width: int = 1280, height: int = 860) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.set_default_navigation_timeout(TIMEOUT_MS)
    return page


async def registered(server: ServerProcess, site: ClientSite, scope: str = "user repo:read") -> AuthorizeRequest:
    async with httpx2.AsyncClient(timeout=10) as http:
        client_id = await register_client(http, server.url, [site.redirect_uri], "Example Editor")
    return authorize_request(server.url, client_id, site.redirect_uri, scope=scope)


async def test_sign_in_in_a_real_browser_reaches_the_client_with_a_working_code(
    github: FakeGitHub, mcp_server: ServerProcess, site: ClientSite, chromium: Browser
) -> None:
    auth = await registered(mcp_server, site)
    page = await new_page(chromium)

    await page.goto(auth.url)

    assert page.url.startswith(f"{mcp_server.url}/consent?")
    heading = await page.locator("h1").inner_text()
    assert "Example Editor" in heading
    assert "continues at GitHub" in await page.locator("main").inner_text()
    assert await page.get_by_role("alert").is_visible()  # loopback redirect warning
    assert await page.get_by_text("Read your GitHub profile").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "consent.png"), full_page=True)
    phone = await new_page(chromium, 390, 844)
    await phone.goto(page.url)
    await phone.screenshot(path=str(ARTIFACTS / "consent-phone.png"), full_page=True)
    # Readable on a phone: nothing wider than the screen, buttons big enough to tap.
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
    approve_box = await phone.get_by_role("button", name="Approve").bounding_box()
    assert approve_box is not None and approve_box["height"] >= 40

    async with page.expect_navigation(url=f"{site.redirect_uri}?**"):
        await page.get_by_role("button", name="Approve").click()

    assert await page.locator("#done").is_visible()
    (received,) = site.received
    params = query(received)
    assert params["state"] == auth.state
    assert params["iss"] == mcp_server.url
    async with httpx2.AsyncClient(timeout=10) as http:
        tokens = await exchange_code(http, mcp_server.url, auth, params["code"])
    assert tokens.status_code == 200 and tokens.json()["token_type"] == "Bearer"


async def test_unchecking_a_write_scope_in_a_real_browser_leaves_it_out_and_a_write_tool_is_refused(
    github: FakeGitHub, mcp_server: ServerProcess, site: ClientSite, chromium: Browser
) -> None:
    auth = await registered(mcp_server, site, scope="user repo:read repo:write")
    page = await new_page(chromium)
    await page.goto(auth.url)
    sign_in = page.get_by_role("checkbox", name="Read your GitHub profile")
    assert await sign_in.is_checked() and await sign_in.is_disabled()  # needed to sign in
    write = page.get_by_role("checkbox", name="Create issues and comments")
    await write.uncheck()
    assert not await write.is_checked()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "consent-scopes.png"), full_page=True)

    async with page.expect_navigation(url=f"{site.redirect_uri}?**"):
        await page.get_by_role("button", name="Approve").click()

    (received,) = site.received
    async with httpx2.AsyncClient(timeout=10) as http:
        tokens = (await exchange_code(http, mcp_server.url, auth, query(received)["code"])).json()
    assert tokens["scope"] == "user repo:read"
    issue = {"owner": "bob", "repo": "hello-world", "title": "Unchecked"}
    refused = await tool_call_request(mcp_server, tokens["access_token"], "create_issue", issue)
    assert refused.status_code == 403
    assert challenge(refused)["scope"].split() == ["user", "repo:read", "repo:write"]  # what to step up to


async def test_deny_in_a_real_browser_reaches_the_client_with_access_denied(
    github: FakeGitHub, mcp_server: ServerProcess, site: ClientSite, chromium: Browser
) -> None:
    auth = await registered(mcp_server, site)
    page = await new_page(chromium)
    await page.goto(auth.url)

    async with page.expect_navigation(url=f"{site.redirect_uri}?**"):
        await page.get_by_role("button", name="Deny").click()

    (received,) = site.received
    assert query(received) == {"error": "access_denied", "state": auth.state, "iss": mcp_server.url}
    assert github.count("/login/oauth/authorize") == 0


async def test_consent_page_cannot_be_framed_by_another_origin(
    github: FakeGitHub, mcp_server: ServerProcess, site: ClientSite, chromium: Browser
) -> None:
    auth = await registered(mcp_server, site)
    # Control: a page of the same server without anti-framing headers does load in a frame.
    site.frames = [f"{mcp_server.url}/healthz", auth.url]
    page = await new_page(chromium)
    consent_responses = []
    page.on("response", lambda r: consent_responses.append(r) if "/consent?" in r.url else None)

    await page.goto(site.framing_page, wait_until="load")

    control = await (await page.locator("#f0").element_handle()).content_frame()
    assert control is not None and "ok" in await control.content()
    framed = await (await page.locator("#f1").element_handle()).content_frame()
    assert [r.status for r in consent_responses] == [200]  # the server did answer the frame...
    assert framed is not None
    assert await framed.locator("form").count() == 0  # ...but Chromium refused to show it
    assert framed.url.startswith("chrome-error://")  # Chromium's "refused to connect" page


async def test_demo_sign_in_in_a_real_browser_picks_a_user_and_reaches_the_client(
    tmp_path: Path, site: ClientSite, chromium: Browser
) -> None:
    """`--demo`: consent, then the stand-in's user picker, then the client, under every page's CSP."""
    with running_server("", tmp_path, demo=True) as demo:
        auth = await registered(demo, site)
        page = await new_page(chromium)
        await page.goto(auth.url)
        assert "Demo mode" in await page.get_by_role("note").inner_text()
        await page.get_by_role("button", name="Approve").click()
        await page.wait_for_url("**/demo-github/login/oauth/authorize?**")
        assert await page.get_by_role("note").is_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "demo-picker.png"), full_page=True)

        async with page.expect_navigation(url=f"{site.redirect_uri}?**"):
            await page.get_by_role("link", name="octocat (The Octocat)").click()

        (received,) = site.received
        async with httpx2.AsyncClient(timeout=10) as http:
            tokens = await exchange_code(http, demo.url, auth, query(received)["code"])
        assert tokens.status_code == 200, tokens.text


async def test_a_sign_in_limited_to_one_repository_in_a_real_browser(
    github: FakeGitHub, mcp_server: ServerProcess, site: ClientSite, chromium: Browser
) -> None:
    """Issue 19: "only some" on the consent page, the picker after GitHub, then a call elsewhere is refused."""
    auth = await registered(mcp_server, site)
    page = await new_page(chromium)
    await page.goto(auth.url)
    await page.get_by_label("Only some: I choose them after signing in to GitHub").check()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "consent-repos.png"), full_page=True)
    await page.get_by_role("button", name="Approve").click()
    await page.wait_for_url(f"{mcp_server.url}/github/callback?**")
    await page.get_by_label("alice/hello-world").check()
    await page.screenshot(path=str(ARTIFACTS / "repositories-picker.png"), full_page=True)

    async with page.expect_navigation(url=f"{site.redirect_uri}?**"):
        await page.get_by_role("button", name="Allow only these").click()

    (received,) = site.received
    async with httpx2.AsyncClient(timeout=10) as http:
        tokens = await exchange_code(http, mcp_server.url, auth, query(received)["code"])
    async with bearer_client(mcp_server, tokens.json()["access_token"]) as client:
        allowed = await client.call_tool("get_repository", {"owner": "alice", "repo": "hello-world"})
        refused = await client.call_tool("get_repository", {"owner": "alice", "repo": "dotfiles"})
    assert not allowed.is_error
    assert "alice/dotfiles is not among the repositories this sign-in may reach" in tool_error(refused)
    assert github.count("/repos/alice/dotfiles") == 0
