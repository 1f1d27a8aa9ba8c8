"""The consent step (issue 3), driven hop by hop over HTTP: what the page shows, what it
refuses, and which browser may finish a sign-in.

Without this page any dynamically registered client could get a token for a user who once
approved the GitHub app (MCP "confused deputy"); each test breaks if its defence is removed.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from html import unescape
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
from itsdangerous import TimestampSigner

from ghmcp.auth.keys import Keyring
from ghmcp.web import build
from ghmcp.web.consent import MAX_REMEMBERED, remember_key
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    CLIENT_REDIRECT,
    ServerProcess,
    approve_sign_in,
    authorize_request,
    form_fields,
    in_process_settings,
    open_consent,
    query,
    register_client,
    submit_consent,
    table_rows,
    through_github,
)

pytestmark = pytest.mark.anyio

OTHER_REDIRECT = "http://127.0.0.1:2/other-callback"


def db(server: ServerProcess) -> Path:
    return server.data_dir / "mcp.sqlite3"


def is_github(response: httpx2.Response, github_url: str) -> bool:
    return response.is_redirect and response.headers["location"].startswith(f"{github_url}/login/oauth/authorize")


def set_cookies(response: httpx2.Response) -> dict[str, SimpleCookie]:
    """Each Set-Cookie header of a response, parsed with its attributes, by cookie name."""
    parsed = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        (name,) = cookie.keys()
        parsed[name] = cookie
    return parsed


async def test_page_names_client_host_and_scopes_and_github_waits_for_approval(
    github: FakeGitHub, github_url: str, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    redirect = "https://notes.example.com/oauth/callback"
    client_id = await register_client(http, server.url, [redirect], "Acme Notes")
    auth = authorize_request(server.url, client_id, redirect, scope="user repo:read")

    page = await open_consent(http, auth)

    assert page.status_code == 200
    assert "Acme Notes" in page.text
    assert "notes.example.com" in page.text
    assert "Read your GitHub profile" in page.text and "Read public repositories" in page.text
    assert f"continues at GitHub (<strong>{urlsplit(github_url).netloc}</strong>)" in page.text
    assert 'class="warning"' not in page.text  # an https web site needs no warning
    # Nothing has been asked of GitHub, and no GitHub state exists before Approve.
    assert github.authorize_requests == []
    (row,) = [r for r in table_rows(db(server), "pending") if json.loads(r["record"])["client_id"] == client_id]
    assert row["stage"] == "consent" and row["state_hash"] is None

    to_github = await submit_consent(http, page, "approve")

    assert is_github(to_github, github_url)
    github_state = query(to_github.headers["location"])["state"]
    assert github_state != auth.state  # our own state toward GitHub, never the client's
    (row,) = [r for r in table_rows(db(server), "pending") if json.loads(r["record"])["client_id"] == client_id]
    assert row["stage"] == "github" and row["state_hash"] is not None


@pytest.mark.parametrize(
    ("redirect", "shown", "warning"),
    [
        ("http://127.0.0.1:8765/cb", "127.0.0.1:8765", "program running on this computer"),
        ("http://localhost:8765/cb", "localhost:8765", "program running on this computer"),
        ("cursor://anysphere.cursor-mcp/oauth/callback", "the cursor: app", "any installed app can register"),
    ],
)
async def test_loopback_and_custom_scheme_redirects_carry_a_warning(
    github: FakeGitHub, server: ServerProcess, http: httpx2.AsyncClient, redirect: str, shown: str, warning: str
) -> None:
    client_id = await register_client(http, server.url, [redirect])

    page = await open_consent(http, authorize_request(server.url, client_id, redirect))

    assert page.status_code == 200
    assert f"<strong>{shown}</strong>" in page.text
    assert re.search(rf'<div class="warning" role="alert">((?!</div>).)*{warning}', page.text)


async def test_hostile_client_name_is_escaped(
    github: FakeGitHub, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    hostile = """<script>alert("x")</script><img src=x onerror=alert(1)>'&"""
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT], hostile)

    page = await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))

    assert page.status_code == 200
    assert "<script" not in page.text and "<img" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&#39;&amp;" in page.text


def csp_directives(response: httpx2.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {part.split()[0]: " ".join(part.split()[1:]) for part in policy.split(";") if part.strip()}


async def test_pages_forbid_framing_scripts_and_inline_styles_without_nonce(
    github: FakeGitHub, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    consent = await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))
    again = await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))
    error_page = await http.get(f"{server.url}/consent?request=no-such-request")
    assert (consent.status_code, again.status_code, error_page.status_code) == (200, 200, 400)

    nonces = set()
    for page in (consent, again, error_page):
        csp = csp_directives(page)
        assert csp["default-src"] == "'none'"  # no scripts, frames, fonts, connections...
        assert csp["frame-ancestors"] == "'none'"
        assert csp["base-uri"] == "'none'"
        assert "unsafe" not in page.headers["content-security-policy"]
        (nonce,) = re.findall(r'<style nonce="([^"]+)">', page.text)
        assert csp["style-src"] == f"'nonce-{nonce}'"
        nonces.add(nonce)
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        assert "<script" not in page.text
    assert len(nonces) == 3  # a fresh nonce per response


async def test_deny_sends_access_denied_to_the_client_and_never_github(
    github: FakeGitHub, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    auth = authorize_request(server.url, client_id, CLIENT_REDIRECT, state="client-state-42")
    page = await open_consent(http, auth)

    denied = await submit_consent(http, page, "deny")

    assert denied.status_code == 303
    location = denied.headers["location"]
    assert location.startswith(CLIENT_REDIRECT)
    assert query(location) == {"error": "access_denied", "state": "client-state-42", "iss": server.url}
    assert github.count("/login/oauth/authorize") == 0 and github.authorize_requests == []
    # The request is gone: pressing a button on the same page again leads nowhere.
    replay = await http.post(f"{server.url}/consent", data=form_fields(page.text) | {"action": "approve"})
    assert 400 <= replay.status_code < 500 and "location" not in replay.headers


@pytest.mark.parametrize("attack", ["no cookie", "no token", "forged token", "other browser's cookie"])
async def test_post_without_matching_csrf_cookie_and_token_goes_nowhere(
    github: FakeGitHub, github_url: str, server: ServerProcess, http: httpx2.AsyncClient, attack: str
) -> None:
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    page = await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))
    fields = form_fields(page.text) | {"action": "approve"}
    url = f"{server.url}/consent"

    async with httpx2.AsyncClient(timeout=10) as other:
        if attack == "no cookie":
            refused = await other.post(url, data=fields)
        elif attack == "no token":
            refused = await http.post(url, data={k: v for k, v in fields.items() if k != "csrf"})
        elif attack == "forged token":
            refused = await http.post(url, data=fields | {"csrf": fields["csrf"][:-4] + "AAAA"})
        else:  # the attacker's own valid cookie/token pair does not fit the victim's request
            await open_consent(other, authorize_request(server.url, client_id, CLIENT_REDIRECT))
            refused = await other.post(url, data=fields)

    assert 400 <= refused.status_code < 500
    assert "location" not in refused.headers
    assert github.authorize_requests == []
    # The refusal was the CSRF check, not a dead request: the genuine form still works.
    assert is_github(await submit_consent(http, page, "approve"), github_url)


async def test_csrf_token_is_single_use(
    github: FakeGitHub, github_url: str, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    page = await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))
    csrf_cookie = http.cookies["mcp_csrf"]

    first = await submit_consent(http, page, "approve")
    assert is_github(first, github_url)
    assert "mcp_csrf" not in http.cookies  # cleared by the server

    http.cookies.set("mcp_csrf", csrf_cookie)  # an attacker replaying the exact same request
    replay = await http.post(f"{server.url}/consent", data=form_fields(page.text) | {"action": "approve"})
    assert 400 <= replay.status_code < 500 and "location" not in replay.headers


async def test_two_consent_tabs_in_one_browser_both_work(
    github: FakeGitHub, github_url: str, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    """A client that retried leaves an older tab open: answering it must not fail the CSRF check."""
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    older = await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))
    newer = await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))
    assert older.status_code == newer.status_code == 200

    assert is_github(await submit_consent(http, older, "approve"), github_url)


async def test_two_sign_ins_under_way_in_one_browser_both_complete(
    github: FakeGitHub, github_url: str, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    """Two apps connecting at once: approving the second must not void the first's browser binding."""
    client_ids = [await register_client(http, server.url, [CLIENT_REDIRECT]) for _ in range(2)]
    first, second = (authorize_request(server.url, client_id, CLIENT_REDIRECT) for client_id in client_ids)
    to_github = [await submit_consent(http, await open_consent(http, auth), "approve") for auth in (first, second)]
    assert all(is_github(step, github_url) for step in to_github)

    callbacks = [await through_github(http, step.headers["location"]) for step in to_github]

    for auth, callback in zip((first, second), callbacks, strict=True):
        assert callback.status_code == 302, callback.text
        assert query(callback.headers["location"])["state"] == auth.state
        assert "code" in query(callback.headers["location"])


async def test_callback_in_a_browser_without_the_login_cookie_is_refused(
    github: FakeGitHub, github_url: str, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    """Login CSRF: a victim must not complete a sign-in the attacker approved in their own browser."""
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    page = await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))
    to_github = await submit_consent(http, page, "approve")
    assert is_github(to_github, github_url)

    async with httpx2.AsyncClient(timeout=10) as victim:
        callback = await through_github(victim, to_github.headers["location"])

    assert callback.status_code == 400
    assert "location" not in callback.headers
    assert "not started in this browser" in callback.text
    assert all(json.loads(r["record"])["client_id"] != client_id for r in table_rows(db(server), "codes"))


async def test_consent_is_recorded_server_side_only_after_the_callback(
    github: FakeGitHub, github_url: str, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    auth = authorize_request(server.url, client_id, CLIENT_REDIRECT, scope="user repo:read")
    to_github = await submit_consent(http, await open_consent(http, auth), "approve")

    def consents() -> list[dict[str, object]]:
        return [r for r in table_rows(db(server), "consents") if r["client_id"] == client_id]

    assert consents() == []
    callback = await through_github(http, to_github.headers["location"])
    assert callback.status_code == 302 and "code" in query(callback.headers["location"])

    (row,) = consents()
    assert row["subject"] == "github:1001"
    assert row["redirect_uri"] == CLIENT_REDIRECT
    assert set(str(row["scopes"]).split()) == {"user", "repo:read"}


async def test_remembered_approval_skips_the_page_only_for_the_same_client_and_redirect(
    github: FakeGitHub, github_url: str, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    client_x = await register_client(http, server.url, [CLIENT_REDIRECT, OTHER_REDIRECT], "Client X")
    client_y = await register_client(http, server.url, [CLIENT_REDIRECT], "Client Y")
    first = await open_consent(http, authorize_request(server.url, client_x, CLIENT_REDIRECT, scope="user repo:read"))
    assert first.status_code == 200
    approved = await submit_consent(http, first, "approve")
    assert is_github(approved, github_url)
    cookie = set_cookies(approved)["mcp_consent"]["mcp_consent"]
    assert cookie["max-age"] == str(30 * 24 * 3600)  # MCP_CONSENT_REMEMBER_SECONDS' default

    async def asks(client_id: str, redirect: str, scope: str, browser: httpx2.AsyncClient = http) -> bool:
        step = await open_consent(browser, authorize_request(server.url, client_id, redirect, scope=scope))
        if step.status_code == 200:
            return True
        assert is_github(step, github_url), step.text
        return False

    assert not await asks(client_x, CLIENT_REDIRECT, "user repo:read")
    assert not await asks(client_x, CLIENT_REDIRECT, "user")  # fewer scopes than approved
    assert await asks(client_x, CLIENT_REDIRECT, "user repo:read repo:write")  # wider scopes
    assert await asks(client_x, OTHER_REDIRECT, "user")  # another redirect URI
    assert await asks(client_y, CLIENT_REDIRECT, "user")  # another client
    async with httpx2.AsyncClient(timeout=10) as other_browser:
        assert await asks(client_x, CLIENT_REDIRECT, "user", other_browser)
        other_browser.cookies.set("mcp_consent", http.cookies["mcp_consent"][:-3] + "xyz")  # tampered
        assert await asks(client_x, CLIENT_REDIRECT, "user", other_browser)


async def test_remembered_approval_expires(
    github: FakeGitHub, github_url: str, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each approval expires MCP_CONSENT_REMEMBER_SECONDS after it was given, checked inside the
    signed cookie (signed here with the test server's key, so no test has to wait 30 days)."""
    async with httpx2.AsyncClient(timeout=10) as setup:
        client_id = await register_client(setup, server.url, [CLIENT_REDIRECT])
    keyring = Keyring([server.environment()["MCP_SECRET_KEY"]])
    now, month = time.time(), 30 * 24 * 3600

    async def asks(entry_expires: float, signed_at: float) -> bool:
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(signed_at))
        entries = [[remember_key(client_id, CLIENT_REDIRECT), ["user"], entry_expires]]
        async with httpx2.AsyncClient(
            timeout=10, cookies={"mcp_consent": keyring.signer("mcp_consent").dumps(entries)}
        ) as browser:
            step = await open_consent(browser, authorize_request(server.url, client_id, CLIENT_REDIRECT))
        assert step.status_code == 200 or is_github(step, github_url)
        return step.status_code == 200

    assert not await asks(now + 60, now)  # the cookie format this test forges is the real one
    assert await asks(now - 1, now)  # this approval's own expiry has passed
    assert await asks(now + 60, now - month - 60)  # the whole cookie is older than the setting


async def test_always_ask_ignores_remembered_approvals_and_remembers_none(
    github: FakeGitHub, github_url: str, server: ServerProcess, start_server: StartServer, http: httpx2.AsyncClient
) -> None:
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    assert "code" in await approve_sign_in(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))
    remembered = await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))
    assert is_github(remembered, github_url)  # without the setting, this browser is not asked again
    # The operator turns MCP_CONSENT_ALWAYS_ASK on (same store and key, so the same client and cookie).
    strict = start_server(data_dir=server.data_dir, env={"MCP_CONSENT_ALWAYS_ASK": "true"})

    page = await open_consent(http, authorize_request(strict.url, client_id, CLIENT_REDIRECT))

    assert page.status_code == 200 and 'action="/consent"' in page.text
    approved = await submit_consent(http, page, "approve")
    assert is_github(approved, github_url)
    assert "mcp_consent" not in set_cookies(approved)


async def test_cookies_over_https_are_host_prefixed_secure_httponly_lax(
    github: FakeGitHub, github_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = in_process_settings(monkeypatch, github_url, tmp_path, server_url="https://mcp.example.com")
    asgi = build.build_app(settings)
    base = "https://mcp.example.com"
    async with (
        asgi.router.lifespan_context(asgi),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=asgi), base_url=base, timeout=10) as browser,
    ):
        client_id = await register_client(browser, base, [CLIENT_REDIRECT])
        auth = authorize_request(base, client_id, CLIENT_REDIRECT)
        page = await open_consent(browser, auth)
        approved = await submit_consent(browser, page, "approve")
        assert is_github(approved, github_url)
        async with httpx2.AsyncClient(timeout=10) as to_github:  # the fake GitHub is a real server
            at_github = await to_github.get(approved.headers["location"])
        callback_url = at_github.headers["location"]
        assert callback_url.startswith(f"{base}/github/callback?")
        callback = await browser.get(callback_url)

    assert callback.status_code == 302 and "code" in query(callback.headers["location"])
    written = set_cookies(page) | set_cookies(approved)
    assert set(written) == {"__Host-mcp_csrf", "__Host-mcp_login", "__Host-mcp_consent", "__Host-mcp_repositories"}
    for name, cookie in written.items():
        morsel = cookie[name]
        assert morsel["secure"] and morsel["httponly"], name
        assert morsel["samesite"].lower() == "lax", name
        assert morsel["path"] == "/" and not morsel["domain"], name  # what __Host- requires
    cleared = set_cookies(callback)["__Host-mcp_login"]["__Host-mcp_login"]
    assert cleared["max-age"] == "0" and cleared["secure"]
    assert urlsplit(callback.headers["location"]).netloc == urlsplit(CLIENT_REDIRECT).netloc


async def test_consent_error_and_signed_in_pages_share_one_branded_template(
    github: FakeGitHub, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    app_link = "cursor://anysphere.cursor-mcp/oauth/callback"  # no web page to land on: ours says "signed in"
    client_id = await register_client(http, server.url, [app_link], "Cursor")
    consent = await open_consent(http, authorize_request(server.url, client_id, app_link, state="s1"))
    to_github = await submit_consent(http, consent, "approve")
    signed_in = await through_github(http, to_github.headers["location"])
    error = await http.get(f"{server.url}/consent?request=expired-or-made-up")

    assert (consent.status_code, signed_in.status_code, error.status_code) == (200, 200, 400)
    assert "you can close this tab" in signed_in.text
    (link,) = re.findall(r'<a class="button" href="([^"]+)">Open Cursor</a>', signed_in.text)
    assert link.startswith(app_link) and query(unescape(link))["state"] == "s1"
    for page in (consent, signed_in, error):
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text
        assert re.search(r'<header class="brand">.*<span>GitHub MCP Server</span>', page.text, re.S)
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_remembered_approvals_stay_in_a_small_cookie_and_forget_the_oldest(
    github: FakeGitHub, github_url: str, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    """Browsers drop cookies over 4 KiB, and redirect URIs can be long: only digests are kept."""
    requests = []
    for i in range(MAX_REMEMBERED + 1):
        redirect = f"http://127.0.0.1:1/{secrets.token_urlsafe(600)}"  # long, and does not compress
        client_id = await register_client(http, server.url, [redirect], f"Client {i}")
        requests.append((client_id, redirect))
        approved = await submit_consent(
            http, await open_consent(http, authorize_request(server.url, client_id, redirect)), "approve"
        )
        assert is_github(approved, github_url)
        (header,) = [h for h in approved.headers.get_list("set-cookie") if h.startswith("mcp_consent=")]
        assert len(header) < 4096

    async def asks(client_id: str, redirect: str) -> bool:
        return (await open_consent(http, authorize_request(server.url, client_id, redirect))).status_code == 200

    assert await asks(*requests[0])  # the oldest was forgotten
    assert not await asks(*requests[1])
    assert not await asks(*requests[-1])
