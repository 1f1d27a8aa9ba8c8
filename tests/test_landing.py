"""The landing page at `/` (issue "3/8 The first hour"): someone who opens the server's address
in a browser learns what it is, its MCP URL, where each client takes it, and where the
connected-apps page is. Also the favicon, and `/` in demo mode."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from playwright.async_api import Browser

from tests.conftest import StartServer
from tests.support import ServerProcess, running_server
from tests.test_browser import ARTIFACTS, chromium, chromium_present, new_page

pytestmark = pytest.mark.anyio

__all__ = ["chromium", "chromium_present"]  # fixtures shared with the consent page's browser tests


async def test_landing_page_in_a_real_browser_shows_the_mcp_url_and_links_to_account(
    server: ServerProcess, chromium: Browser
) -> None:
    page = await new_page(chromium)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)

    response = await page.goto(f"{server.url}/")

    assert response is not None and response.status == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "An MCP server whose users sign in with GitHub" in await page.locator("main").inner_text()
    url = page.locator("code.url")
    assert await url.inner_text() == server.mcp_url
    for client in ("MCP Inspector", "Claude Code", "Claude Desktop and claude.ai", "Cursor", "VS Code", "ChatGPT"):
        assert await page.locator("summary", has_text=client).count() == 1, client
    account = page.get_by_role("link", name="Connected apps")
    assert await account.get_attribute("href") == "/account"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "landing.png"), full_page=True)
    # The copy affordance without script: one click selects exactly the URL.
    await url.click()
    assert await page.evaluate("window.getSelection().toString()") == server.mcp_url
    # The closed recipes open without script; each command or snippet carries the URL.
    for client in ("Claude Code", "Cursor", "VS Code"):
        await page.locator("summary", has_text=client).click()
        assert server.mcp_url in await page.locator("details", has_text=client).locator("code.copy").inner_text()
    for client in ("Claude Desktop and claude.ai", "ChatGPT"):
        await page.locator("summary", has_text=client).click()
        assert (
            "needs this server on a public https address" in await page.locator("details", has_text=client).inner_text()
        )
    await page.screenshot(path=str(ARTIFACTS / "landing-recipes.png"), full_page=True)
    phone = await new_page(chromium, 390, 844)
    await phone.goto(f"{server.url}/")
    await phone.screenshot(path=str(ARTIFACTS / "landing-phone.png"), full_page=True)
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
    assert not [text for text in console if "Content Security Policy" in text], console

    async with page.expect_navigation(url=f"{server.url}/account"):
        await account.click()
    assert await page.get_by_role("button", name="Sign in with GitHub").is_visible()


async def test_landing_answers_head_and_is_not_rate_limited_like_the_sign_in_steps(start_server: StartServer) -> None:
    server = start_server(env={"MCP_RATE_LIMIT": "2/minute"})
    async with httpx2.AsyncClient(timeout=10) as http:
        head = await http.head(f"{server.url}/")
        assert head.status_code == 200 and head.headers["content-type"].startswith("text/html")
        assert head.content == b""
        assert [(await http.get(f"{server.url}/")).status_code for _ in range(5)] == [200] * 5
        # Control: the same limit does stop a sign-in step.
        assert [(await http.get(f"{server.url}/consent")).status_code for _ in range(3)][-1] == 429


async def test_landing_recipes_name_the_sse_transport_when_served_over_sse(start_server: StartServer) -> None:
    server = start_server(transport="sse")
    async with httpx2.AsyncClient(timeout=10) as http:
        page = (await http.get(f"{server.url}/")).text
    assert f"{server.url}/sse" in page and f"{server.url}/mcp" not in page
    assert f"--transport sse github-mcp-server {server.url}/sse" in page
    assert "<strong>SSE</strong>" in page and "Streamable HTTP" not in page
    assert '{"type": "sse", "url": "' in page


async def test_favicon_is_a_small_icon(server: ServerProcess) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        icon = await http.get(f"{server.url}/favicon.ico")
        page = await http.get(f"{server.url}/")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00" and len(icon.content) < 4096  # an ICO file, small
    assert '<link rel="icon" href="/favicon.ico"' in page.text


async def test_landing_in_demo_mode_says_it_is_a_demo(tmp_path: Path) -> None:
    with running_server("", tmp_path, demo=True) as demo:
        async with httpx2.AsyncClient(timeout=10) as http:
            page = await http.get(f"{demo.url}/")
    assert page.status_code == 200
    assert "This is a demo: a stand-in replaces GitHub" in page.text
    assert "octocat, monalisa or hubot" in page.text
    assert f"{demo.url}/mcp" in page.text
