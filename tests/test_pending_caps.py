"""The cap on sign-ins under way per site (an IPv6 /48): seen from outside through a trusted proxy,
its default, and stores written before it existed. (Both stores' atomic caps: test_storage_contract.py.)

Per address an IPv6 client is a /64, so whoever holds a /48 holds 65,536 addresses, each with its own
per-address budget: enough to fill the whole server's cap, and lock everyone else out, on their own.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis.asyncio as aioredis

from ghmcp.storage import WIDE_ORIGIN_FACTOR, PendingLimits, open_storage
from ghmcp.storage.sqlite import SQLiteStorage
from tests.conftest import StartServer
from tests.support import (
    CLIENT_REDIRECT,
    ServerProcess,
    authorize_request,
    query,
    register_client,
    submit_consent,
    table_rows,
)

pytestmark = pytest.mark.anyio

PER_ADDRESS = 2  # MCP_MAX_PENDING_PER_CLIENT, which is also the cap per address
PER_SITE = WIDE_ORIGIN_FACTOR * PER_ADDRESS


@pytest.fixture(scope="module")
def proxied(start_module_server: StartServer) -> ServerProcess:
    """Behind a proxy on loopback, so X-Forwarded-For names the client. Each test uses its own /48s."""
    return start_module_server(
        env={"MCP_TRUSTED_PROXIES": "127.0.0.1/32", "MCP_MAX_PENDING_PER_CLIENT": str(PER_ADDRESS)}
    )


async def start(http: httpx2.AsyncClient, server: ServerProcess, address: str) -> httpx2.Response:
    """A new client's /authorize from `address`: a fresh client each time, so that its cap never decides."""
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    auth = authorize_request(server.url, client_id, CLIENT_REDIRECT, state=f"state-{address}")
    return await http.get(auth.url, headers={"X-Forwarded-For": address})


def started(response: httpx2.Response, server: ServerProcess) -> bool:
    assert response.status_code == 302, response.text
    return response.headers["location"].startswith(f"{server.url}/consent?")


def pending_rows(server: ServerProcess) -> list[dict[str, Any]]:
    return table_rows(server.data_dir / "mcp.sqlite3", "pending")


def refusal(response: httpx2.Response) -> tuple[int, str, dict[str, str]]:
    """A refused /authorize, with the parts that differ between any two requests (state) set aside."""
    location = response.headers["location"]
    params = query(location)
    params.pop("state")
    return response.status_code, location.split("?")[0], params


async def test_many_64s_of_one_48_cannot_take_more_than_the_site_cap(
    proxied: ServerProcess, http: httpx2.AsyncClient
) -> None:
    site = [await start(http, proxied, f"2001:db8:48:{subnet:x}::1") for subnet in range(PER_SITE)]
    assert all(started(response, proxied) for response in site)

    over = await start(http, proxied, "2001:db8:48:ffff::1")  # a /64 not used yet, in the same /48

    assert not started(over, proxied)
    assert query(over.headers["location"])["state"] == "state-2001:db8:48:ffff::1"
    assert refusal(over)[2]["error"] == "temporarily_unavailable"
    assert refusal(over)[2]["iss"] == proxied.url
    assert started(await start(http, proxied, "2001:db8:49::1"), proxied)  # the next /48 is another site
    # The same answer as the cap per address gives: nothing tells one cap from the other.
    address = [await start(http, proxied, "2001:db8:50:1::1") for _ in range(PER_ADDRESS + 1)]
    assert [started(response, proxied) for response in address] == [True] * PER_ADDRESS + [False]
    assert refusal(over) == refusal(address[-1])
    rows = [r for r in pending_rows(proxied) if r["origin"].startswith("2001:db8:48:")]
    assert len(rows) == PER_SITE and {r["wide_origin"] for r in rows} == {"2001:db8:48::/48"}

    # Ending one of the site's sign-ins frees its slot.
    denied = await submit_consent(http, await http.get(site[0].headers["location"]), "deny")
    assert query(denied.headers["location"])["error"] == "access_denied"
    assert started(await start(http, proxied, "2001:db8:48:ffff::1"), proxied)


async def test_ipv4_neighbours_are_not_one_site(proxied: ServerProcess, http: httpx2.AsyncClient) -> None:
    """An IPv4 address is its own site: a /24 holds unrelated customers, not one subscriber's subnets."""
    neighbours = [await start(http, proxied, f"198.51.100.{host}") for host in range(1, PER_SITE + 2)]

    assert all(started(response, proxied) for response in neighbours)
    rows = [r for r in pending_rows(proxied) if r["origin"].startswith("198.51.100.")]
    assert len(rows) == PER_SITE + 1 and all(r["wide_origin"] == r["origin"] for r in rows)


def test_wide_origin_cap_defaults_to_a_multiple_of_the_origin_cap() -> None:
    assert PendingLimits(per_client=1, per_origin=20, total=10_000).per_wide_origin == 100
    assert PendingLimits(1000, 1000, 1000).per_wide_origin == 5000  # positional, as before the field existed
    assert PendingLimits(per_client=1, per_origin=20, total=10_000, per_wide_origin=7).per_wide_origin == 7


# Upgrades: sign-ins stored by a version that did not count sites yet, whose pending table was this.
OLD_PENDING_SCHEMA = """
CREATE TABLE pending (
    key TEXT PRIMARY KEY, record TEXT NOT NULL, stage TEXT NOT NULL, client_id TEXT NOT NULL,
    origin TEXT NOT NULL, state_hash TEXT UNIQUE, expires_at REAL NOT NULL);
CREATE INDEX pending_by_client ON pending (client_id, expires_at);
CREATE INDEX pending_by_origin ON pending (origin, expires_at);
"""


async def test_sqlite_file_from_before_wide_origins_keeps_working(tmp_path: Path) -> None:
    path, now = tmp_path / "old.sqlite3", time.time()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(OLD_PENDING_SCHEMA)
        db.execute(
            "INSERT INTO pending (key, record, stage, client_id, origin, expires_at) VALUES (?, ?, 'consent', ?, ?, ?)",
            ("old", '{"x": 1}', "c", "2001:db8:1:1::/64", now + 60),
        )
        db.commit()
    with ThreadPoolExecutor(4) as pool:  # several processes starting at once on the old file
        opened = list(pool.map(lambda _: SQLiteStorage(path), range(4)))
    store = opened[0]
    try:
        limits = PendingLimits(per_client=100, per_origin=100, total=100, per_wide_origin=1)

        async def add(key: str, origin: str) -> str | None:
            site = "2001:db8:1::/48"
            return await store.add_pending(
                key, {}, client_id=key, origin=origin, wide_origin=site, expires_at=now + 60, limits=limits, now=now
            )

        assert await store.get_pending("old", now) == {"x": 1}
        assert await add("new", "2001:db8:1:2::/64") is None  # the old row counts for no site
        assert await add("newer", "2001:db8:1:3::/64") == "wide_origin"
        assert await store.approve_pending("old", "state", 600, now)
        assert await store.take_pending_by_state("state", now) == {"x": 1}
    finally:
        for each in opened:
            await each.close()


async def test_redis_pending_written_before_wide_origins_can_still_finish(redis_url: str) -> None:
    """A replica still running the previous scripts during an upgrade writes no wide_origin."""
    store = open_storage(redis_url, unused_client_seconds=1, idle_client_seconds=3)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        now = time.time()
        for key in ("old1", "old2"):
            await client.hset(
                f"mcp:pending:{key}",
                mapping={
                    "record": '{"x": 1}',
                    "stage": "consent",
                    "client_id": "c",
                    "origin": "o",
                    "expires_at": now + 60,
                },
            )
            for index in ("mcp:pending-by-client:c", "mcp:pending-by-origin:o", "mcp:pending-all"):
                await client.zadd(index, {key: now + 60})

        assert await store.approve_pending("old1", "state", 600, now)
        assert await store.take_pending_by_state("state", now) == {"x": 1}
        assert await store.take_pending("old2", now) == {"x": 1}
        assert await client.keys("mcp:pending*") == []
    finally:
        await client.aclose()
        await store.close()
