"""Abuse limits (issue 3): per-IP rate limits, the cap on sign-ins in progress, and the sweep
that keeps registrations and expired rows from piling up.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from ghmcp.storage import Grant, PendingLimits, new_id
from ghmcp.storage.sqlite import SQLiteStorage
from ghmcp.web import build
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    CLIENT_REDIRECT,
    ServerProcess,
    approve_sign_in,
    authorize_request,
    exchange_code,
    in_process_settings,
    open_consent,
    query,
    register_client,
    submit_consent,
    table_rows,
)

pytestmark = pytest.mark.anyio

DAY = 24 * 3600
LIMIT = 3


def assert_rate_limited(response: httpx2.Response) -> None:
    assert response.status_code == 429, (response.status_code, response.text)
    assert 1 <= int(response.headers["retry-after"]) <= 60
    if response.request.method != "HEAD":
        assert response.json()["error"] == "rate_limited"


LIMITED: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/register", {"json": {"redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"}}),
    ("GET", "/authorize", {"params": {"client_id": "unknown", "response_type": "code"}}),
    ("POST", "/authorize", {"data": {"client_id": "unknown", "response_type": "code"}}),
    ("GET", "/consent", {"params": {"request": "x"}}),
    ("POST", "/consent", {"data": {"request": "x", "csrf": "y", "action": "approve"}}),
    ("POST", "/revoke", {"data": {"client_id": "unknown", "token": "x"}}),
    ("POST", "/token", {"data": {"grant_type": "authorization_code", "code": "x", "client_id": "unknown"}}),
    ("GET", "/github/callback", {"params": {"code": "x", "state": "y"}}),
]


async def test_each_limited_endpoint_answers_429_with_retry_after(
    github: FakeGitHub, start_server: StartServer, http: httpx2.AsyncClient
) -> None:
    server = start_server(env={"MCP_RATE_LIMIT": f"{LIMIT}/minute", "MCP_REGISTRATION_RATE_LIMIT": f"{LIMIT}/minute"})
    for method, path, kwargs in LIMITED:
        if (method, path) in (("POST", "/authorize"), ("POST", "/consent")):
            continue  # shares the budget of GET on the same path, checked below
        for _ in range(LIMIT):
            allowed = await http.request(method, f"{server.url}{path}", **kwargs)
            assert allowed.status_code not in (429, 500), (path, allowed.status_code)
        assert_rate_limited(await http.request(method, f"{server.url}{path}", **kwargs))

    # The same budget whatever the method: HEAD runs the GET handler in Starlette.
    assert_rate_limited(await http.request("POST", f"{server.url}/authorize", data=LIMITED[2][2]["data"]))
    assert_rate_limited(await http.request("POST", f"{server.url}/consent", data=LIMITED[4][2]["data"]))
    assert_rate_limited(await http.head(f"{server.url}/authorize"))
    assert_rate_limited(await http.head(f"{server.url}/github/callback?state=y"))
    # Endpoints an attacker gains nothing from stay open.
    for _ in range(LIMIT + 2):
        assert (await http.get(f"{server.url}/healthz")).status_code == 200
        assert (await http.get(f"{server.url}/.well-known/oauth-authorization-server")).status_code == 200


async def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(
    github: FakeGitHub, github_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = in_process_settings(
        monkeypatch, github_url, tmp_path, rate_limit=f"{LIMIT}/minute", trusted_proxies="10.0.0.0/8"
    )
    asgi = build.build_app(settings)

    async def status(peer: str, forwarded_for: str) -> int:
        transport = httpx2.ASGITransport(app=asgi, client=(peer, 40000))
        async with httpx2.AsyncClient(transport=transport, base_url="http://localhost:8000") as client:
            response = await client.get("/github/callback", headers={"X-Forwarded-For": forwarded_for})
        return response.status_code

    async with asgi.router.lifespan_context(asgi):
        # An untrusted peer cannot buy fresh budgets by inventing X-Forwarded-For values.
        untrusted = [await status("203.0.113.7", f"198.51.100.{i}") for i in range(LIMIT + 1)]
        # Behind the trusted proxy each client has its own budget...
        behind = [await status("10.0.0.5", "198.51.100.20") for _ in range(LIMIT + 1)]
        neighbour = await status("10.1.2.3", "198.51.100.21")
        # ...and what the client itself wrote in front of the proxy's hop is ignored.
        spoofed = [await status("10.0.0.5", f"192.0.2.{i}, 198.51.100.22") for i in range(LIMIT + 1)]
        # Several trusted proxies in a row: the nearest untrusted hop is the client.
        chained = [await status("10.0.0.5", "198.51.100.23, 10.9.9.9, 10.8.8.8") for _ in range(LIMIT + 1)]

    assert untrusted == [400] * LIMIT + [429]
    assert behind == [400] * LIMIT + [429]
    assert neighbour == 400
    assert spoofed == [400] * LIMIT + [429]
    assert chained == [400] * LIMIT + [429]


async def test_pending_authorizations_are_capped(
    github: FakeGitHub, start_server: StartServer, http: httpx2.AsyncClient
) -> None:
    cap = 10  # the smallest value settings accept
    server = start_server(env={"MCP_MAX_PENDING_AUTHORIZATIONS": str(cap)})
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    pages = [await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT)) for _ in range(cap)]
    assert all(page.status_code == 200 for page in pages)

    full = await http.get(authorize_request(server.url, client_id, CLIENT_REDIRECT, state="over-cap").url)

    assert full.status_code == 302 and full.headers["location"].startswith(CLIENT_REDIRECT)
    assert query(full.headers["location"])["error"] == "temporarily_unavailable"
    assert query(full.headers["location"])["state"] == "over-cap"
    # Finishing one sign-in frees its slot.
    denied = await submit_consent(http, pages[-1], "deny")
    assert query(denied.headers["location"])["error"] == "access_denied"
    assert (await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))).status_code == 200


@pytest.fixture(scope="module")
def sweeping_server(start_module_server: StartServer) -> ServerProcess:
    return start_module_server(env={"MCP_SWEEP_INTERVAL_SECONDS": "1"})


def client_ids(server: ServerProcess) -> set[str]:
    return {str(row["client_id"]) for row in table_rows(server.data_dir / "mcp.sqlite3", "clients")}


async def test_sweep_expires_unused_then_idle_clients_and_dead_rows(
    github: FakeGitHub, sweeping_server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    server, db = sweeping_server, sweeping_server.data_dir / "mcp.sqlite3"
    unused = await register_client(http, server.url, [CLIENT_REDIRECT], "Never used")
    used = await register_client(http, server.url, [CLIENT_REDIRECT], "Used once")
    auth = authorize_request(server.url, used, CLIENT_REDIRECT)
    tokens = await exchange_code(http, server.url, auth, (await approve_sign_in(http, auth))["code"])
    assert tokens.status_code == 200
    await open_consent(http, authorize_request(server.url, used, CLIENT_REDIRECT))  # left pending
    unused_seconds, idle_seconds = DAY, 90 * DAY  # the defaults the server runs with
    storage = SQLiteStorage(db)
    try:
        # A day later: the never-used registration and every short-lived row are gone.
        removed = await storage.sweep(time.time() + unused_seconds + 60, unused_seconds, idle_seconds)
        assert client_ids(server) >= {used} and unused not in client_ids(server)
        assert removed.counts["pending"] >= 1 and removed.counts["codes"] >= 1 and removed.counts["tokens"] >= 1
        mine = [r for r in table_rows(db, "pending") if json.loads(r["record"])["client_id"] == used]
        assert mine == []
        # The server itself no longer knows the swept client; the used one still works.
        gone = await http.get(authorize_request(server.url, unused, CLIENT_REDIRECT).url)
        assert gone.status_code == 400 and "location" not in gone.headers
        known = await http.get(authorize_request(server.url, used, CLIENT_REDIRECT).url)
        assert known.status_code == 302 and known.headers["location"].startswith(f"{server.url}/consent?")

        # After the idle period even the used client, its tokens and its GitHub grant are gone.
        await storage.sweep(time.time() + idle_seconds + 60, unused_seconds, idle_seconds)
        assert used not in client_ids(server)
        assert [r for r in table_rows(db, "grants") if r["client_id"] == used] == []
        assert [r for r in table_rows(db, "families") if r["client_id"] == used] == []
        assert [r for r in table_rows(db, "consents") if r["client_id"] == used] == []  # swept with its client
    finally:
        await storage.close()


async def test_background_sweeper_removes_expired_rows(github: FakeGitHub, sweeping_server: ServerProcess) -> None:
    db = sweeping_server.data_dir / "mcp.sqlite3"
    long_ago = time.time() - 2 * DAY
    storage = SQLiteStorage(db)
    try:
        await storage.save_client("stale-client", "{}", long_ago)
        await storage.add_pending(
            "stale-pending",
            {"client_id": "stale-client"},
            client_id="stale-client",
            origin="127.0.0.1",
            expires_at=long_ago + 600,
            limits=PendingLimits(1000, 1000, 1000),
            now=long_ago,
        )
    finally:
        await storage.close()

    def swept() -> bool:
        pending = {r["key"] for r in table_rows(db, "pending")}
        return "stale-client" not in client_ids(sweeping_server) and "stale-pending" not in pending

    for _ in range(75):  # at most 15 s; the sweeper runs every second
        if swept():
            break
        await anyio.sleep(0.2)

    assert swept()


async def test_sweep_revokes_released_github_tokens_at_github(
    github: FakeGitHub, github_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grant the sweep deletes (here: signed in, code never exchanged) must not leave a live GitHub token."""
    provider = build.build_app(in_process_settings(monkeypatch, github_url, tmp_path)).state.provider
    try:
        pair = github.issue_token("alice", ["read:user"])
        await provider.storage.upsert_grant(
            Grant(
                grant_id=new_id(),
                subject="github:1001",
                client_id="some-client",
                github_login="alice",
                token_enc=provider.keyring.encrypt(pair.access_token),
                refresh_enc=None,
                expires_at=None,
                refresh_expires_at=None,
                github_scopes="read:user",
                dead=False,
            )
        )
        counts = await provider.sweep()
    finally:
        await provider.github.http.aclose()
        await provider.storage.close()
    assert counts["grants"] == 1
    assert github.revocations == [pair.access_token]
    assert not github.is_live(pair.access_token)
