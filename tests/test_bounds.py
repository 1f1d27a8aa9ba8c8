"""Bounded input (issue 7): what anyone can send without a token is capped in size, count and
lifetime, is refused with a clear 4xx, and leaves nothing behind."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from ghmcp.auth.registration import redirect_uri_problem
from ghmcp.web import build
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    CLIENT_REDIRECT,
    ServerProcess,
    authorize_request,
    in_process_settings,
    open_consent,
    query,
    register_client,
    submit_consent,
    table_rows,
)

pytestmark = pytest.mark.anyio


def db_of(server: ServerProcess) -> Path:
    return server.data_dir / "mcp.sqlite3"


async def register(http: httpx2.AsyncClient, server: ServerProcess, **metadata: Any) -> httpx2.Response:
    body = {"redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"} | metadata
    return await http.post(f"{server.url}/register", json=body)


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ({"redirect_uris": [f"http://127.0.0.1:{1000 + i}/cb" for i in range(11)]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://127.0.0.1:1/" + "a" * 2000]}, "invalid_redirect_uri"),
        ({"client_name": "n" * 101}, "invalid_client_metadata"),
        ({"grant_types": ["authorization_code", "g" * 2001]}, "invalid_client_metadata"),
        ({"grant_types": ["authorization_code", *[f"urn:x:{i:04}" for i in range(700)]]}, "invalid_client_metadata"),
        ({"redirect_uris": [f"http://127.0.0.1:{1000 + i}/{'p' * 900}" for i in range(10)]}, "invalid_client_metadata"),
    ],
    ids=["11-uris", "long-uri", "long-name", "long-string", "record-over-8k", "uris-over-8k"],
)
async def test_oversized_registrations_are_refused_and_not_stored(
    server: ServerProcess, http: httpx2.AsyncClient, metadata: dict[str, Any], error: str
) -> None:
    before = len(table_rows(db_of(server), "clients"))
    response = await register(http, server, **metadata)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert len(table_rows(db_of(server), "clients")) == before


async def test_unused_metadata_is_dropped_never_stored(server: ServerProcess, http: httpx2.AsyncClient) -> None:
    extra = {
        "jwks": {"keys": [{"kty": "RSA", "n": "x" * 1500, "e": "AQAB"}]},
        "jwks_uri": "https://client.example/jwks",
        "software_statement": "eyJ" + "s" * 1500,
        "contacts": ["ops@client.example"],
        "made_up_member": {"nested": ["x" * 1000]},
    }
    response = await register(http, server, client_name="Tidy", **extra)
    assert response.status_code == 201, response.text
    echoed = response.json()
    assert not set(extra) & set(echoed)
    (stored,) = [r for r in table_rows(db_of(server), "clients") if r["client_id"] == echoed["client_id"]]
    assert not set(extra) & set(json.loads(stored["info_json"]))
    assert len(stored["info_json"]) < 1024


async def test_a_registration_flood_stores_nothing(server: ServerProcess, http: httpx2.AsyncClient) -> None:
    """What one address sent at 230 MB a minute before: huge jwks, many URIs. Bodies over 32 KiB
    are not even read."""
    db = db_of(server)
    rows, size = len(table_rows(db, "clients")), sum(p.stat().st_size for p in db.parent.glob("mcp.sqlite3*"))
    huge = {"jwks": {"keys": ["k" * (4 * 1024 * 1024)]}}
    many = {"redirect_uris": [f"http://127.0.0.1:1/{i}" for i in range(60_000)]}
    for payload in (huge, many) * 5:
        response = await register(http, server, **payload)
        assert response.status_code == 413, response.status_code
    assert len(table_rows(db, "clients")) == rows
    assert sum(p.stat().st_size for p in db.parent.glob("mcp.sqlite3*")) < size + 64 * 1024


async def test_registration_has_its_own_hourly_limit(start_server: StartServer, http: httpx2.AsyncClient) -> None:
    server = start_server(env={"MCP_REGISTRATION_RATE_LIMIT": None})  # the default, 20/hour
    for _ in range(20):
        assert (await register(http, server)).status_code == 201
    refused = await register(http, server)
    assert refused.status_code == 429
    assert 60 < int(refused.headers["retry-after"]) <= 3600
    assert len(table_rows(db_of(server), "clients")) == 20


def test_redirect_hosts_are_dns_names_so_csp_form_action_stays_well_formed() -> None:
    for uri in ("https://exa'mple.com/cb", "https://a;b.example/cb", "https://a b.example/", "https://x*.example/"):
        assert redirect_uri_problem(uri, []) is not None, uri
    for uri in ("https://client.example/cb", "https://xn--bcher-kva.example/cb", "http://[::1]:8080/cb"):
        assert redirect_uri_problem(uri, []) is None, uri


async def authorize_error(http: httpx2.AsyncClient, url: str) -> dict[str, str]:
    response = await http.get(url)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(CLIENT_REDIRECT), location
    return query(location)


async def test_authorize_refuses_long_state_and_malformed_challenge_before_storing(
    server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    pending = len(table_rows(db_of(server), "pending"))
    long_state = await authorize_error(
        http, authorize_request(server.url, client_id, CLIENT_REDIRECT, state="s" * 501).url
    )
    assert long_state["error"] == "invalid_request" and long_state["iss"] == server.url
    assert "state" not in long_state  # never echoed back at that size

    base = authorize_request(server.url, client_id, CLIENT_REDIRECT, state="short")
    for challenge in ("a" * 42, "a" * 44, "a" * 42 + "!", ""):
        url = base.url.replace(base.url.split("code_challenge=")[1].split("&")[0], challenge)
        answer = await authorize_error(http, url)
        assert answer["error"] == "invalid_request" and answer["iss"] == server.url, challenge
        assert answer["state"] == "short"
    assert len(table_rows(db_of(server), "pending")) == pending
    ok = await http.get(authorize_request(server.url, client_id, CLIENT_REDIRECT, state="s" * 500).url)
    assert ok.status_code == 302 and ok.headers["location"].startswith(f"{server.url}/consent?")


async def test_repeated_scopes_are_asked_and_granted_once(server: ServerProcess, http: httpx2.AsyncClient) -> None:
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    page = await open_consent(
        http, authorize_request(server.url, client_id, CLIENT_REDIRECT, scope="user user repo:read user")
    )
    assert page.status_code == 200
    (row,) = [r for r in table_rows(db_of(server), "pending") if r["client_id"] == client_id]
    assert json.loads(row["record"])["scopes"] == ["user", "repo:read"]


@pytest.mark.parametrize("path", ["/consent", "/revoke"])
async def test_form_endpoints_refuse_large_and_multipart_bodies(
    server: ServerProcess, http: httpx2.AsyncClient, path: str
) -> None:
    large = await http.post(f"{server.url}{path}", data={"token": "t" * (17 * 1024), "request": "x"})
    assert large.status_code == 413 and large.json()["error"] == "invalid_request"
    multipart = await http.post(f"{server.url}{path}", files={"token": ("t.txt", b"x")}, data={"client_id": "c"})
    assert multipart.status_code == 415

    async def chunks() -> AsyncIterator[bytes]:
        yield b"token=" + b"t" * 9000
        yield b"t" * 9000

    streamed = await http.post(
        f"{server.url}{path}",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413  # no Content-Length to trust: counted as it arrives


async def test_pending_sign_ins_are_capped_per_client_and_per_address(
    github: FakeGitHub, github_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = in_process_settings(monkeypatch, github_url, tmp_path, max_pending_per_client=3)
    asgi = build.build_app(settings)
    base = settings.server_url

    def browser(address: str) -> httpx2.AsyncClient:
        transport = httpx2.ASGITransport(app=asgi, client=(address, 40000))
        return httpx2.AsyncClient(transport=transport, base_url=base, timeout=10)

    async def starts(address: str, client_id: str) -> str:
        async with browser(address) as http:
            response = await http.get(authorize_request(base, client_id, CLIENT_REDIRECT).url)
        location = response.headers["location"]
        return "consent" if location.startswith(f"{base}/consent?") else query(location)["error"]

    async with asgi.router.lifespan_context(asgi):
        async with browser("192.0.2.1") as http:
            one, two, three, four, five = [await register_client(http, base, [CLIENT_REDIRECT]) for _ in range(5)]
        # One client, many addresses: the client's cap holds.
        assert [await starts(f"198.51.100.{i}", one) for i in range(4)] == ["consent"] * 3 + ["temporarily_unavailable"]
        # One address, many clients: the address's cap holds.
        assert [await starts("203.0.113.9", c) for c in (two, two, three)] == ["consent"] * 3
        assert await starts("203.0.113.9", three) == "temporarily_unavailable"
        # IPv6: one /64 is one address; the next /64 is another.
        clients = (four, four, five)
        assert [await starts(f"2001:db8:1:2::{i}", c) for i, c in enumerate(clients, 1)] == ["consent"] * 3
        assert await starts("2001:db8:1:2:ffff::1", five) == "temporarily_unavailable"
        assert await starts("2001:db8:1:3::1", five) == "consent"


async def test_consent_stage_is_short_and_approval_never_extends_past_its_deadline(
    github: FakeGitHub, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    started = time.time()
    page = await open_consent(http, authorize_request(server.url, client_id, CLIENT_REDIRECT))
    (row,) = [r for r in table_rows(db_of(server), "pending") if r["client_id"] == client_id]
    assert row["expires_at"] <= started + 300 + 5  # MCP_CONSENT_SECONDS, not the 10-minute GitHub leg
    consent_deadline = row["expires_at"]
    approved = await submit_consent(http, page, "approve")
    assert approved.status_code == 303
    (row,) = [r for r in table_rows(db_of(server), "pending") if r["client_id"] == client_id]
    assert row["stage"] == "github"
    assert row["expires_at"] <= consent_deadline + 600  # MCP_STATE_SECONDS after the consent deadline at most
    assert row["expires_at"] <= time.time() + 600


async def test_forwarded_for_from_loopback_is_not_believed_without_trusted_proxies(
    start_server: StartServer, http: httpx2.AsyncClient
) -> None:
    """uvicorn would believe X-Forwarded-For from 127.0.0.1 by default: each forged address
    would get a fresh budget."""
    server = start_server(env={"MCP_RATE_LIMIT": "2/minute"})
    statuses = [
        (await http.get(f"{server.url}/github/callback", headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
        for i in range(3)
    ]
    assert statuses == [400, 400, 429]
