"""The two stores side by side, in one run:

1. token verification cost per request (`load_access_token`) on SQLite and on Redis;
2. calls/s of `get_user_profile` through one replica vs two replicas behind a round-robin proxy
   (both `--stateless` on one Redis; everything shares this machine's cores, so read the ratio
   with that in mind);
3. token lookup cost (`Storage.get_token`) with 1k, 100k and 1M stored tokens on each store:
   the target is flat, at most 1.2x from 1k to 1M.

Needs `redis-server` (Debian's package). Run: uv run python bench/bench_storage.py [--max-tokens N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2
from bench_auth import CLIENT, issue_pair

from ghmcp.config import Settings
from ghmcp.storage import Family, Grant, Storage, new_id
from ghmcp.storage.redis_store import PREFIX, RedisStorage
from ghmcp.storage.sqlite import SQLiteStorage
from ghmcp.web.build import build_provider
from tests.fake_github import FakeGitHub, running_fake_github
from tests.proxy import running_proxy
from tests.redis_support import RedisServer
from tests.support import ServerProcess, sign_in_tokens

KEY = "bench-secret-key-0123456789abcdef"
SIZES = [1_000, 100_000, 1_000_000]
CALLS = 1000  # per configuration; the fake GitHub allows 5,000 calls an hour per user
CONCURRENCY = 16


def settings_for(storage_url: str, github_url: str) -> Settings:
    return Settings(
        github_client_id="fake-client-id",
        github_client_secret="fake-client-secret",  # type: ignore[arg-type]
        github_url=github_url,
        github_api_url=github_url,
        storage_url=storage_url,
        secret_key=KEY,  # type: ignore[arg-type]
    )


async def verification_cost(storage_url: str, github_url: str, github_token: str) -> float:
    """Mean seconds of one bearer-token verification, as every MCP request pays it."""
    provider = build_provider(settings_for(storage_url, github_url))
    try:
        token_enc = provider.keyring.encrypt(github_token)
        grant = Grant(new_id(), "github:1", CLIENT.client_id, "bench", token_enc, None, None, None, "", False)
        grant_id, _ = await provider.storage.upsert_grant(grant)
        access = await issue_pair(provider, grant_id)
        assert await provider.load_access_token(access) is not None
        n = 3000
        start = time.perf_counter()
        for _ in range(n):
            provider.cache.invalidate()  # the store's own cost, as every token pays it twice a second
            await provider.load_access_token(access)
        return (time.perf_counter() - start) / n
    finally:
        await provider.github.http.aclose()
        await provider.storage.close()


async def calls_per_second(url: str, bearer: str) -> float:
    """`get_user_profile` calls/s sent to `url` (a replica or the proxy), CONCURRENCY at a time, as
    session-less JSON-RPC posts (what a stateless deployment serves) over kept-alive connections."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_user_profile", "arguments": {}}}
    headers = {
        "Authorization": f"Bearer {bearer}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    remaining = CALLS

    async def worker(http: httpx2.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            response = await http.post(f"{url}/mcp", json=body, headers=headers)
            assert response.status_code == 200 and '"isError":false' in response.text, response.text[:300]

    async with httpx2.AsyncClient(timeout=60, limits=httpx2.Limits(max_connections=CONCURRENCY)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
        return CALLS / (time.perf_counter() - start)


async def throughput(fake: FakeGitHub, github_url: str, redis_url: str, data_dir: Path) -> dict[str, float]:
    async with running_proxy() as (proxy_url, proxy):
        env: dict[str, str | None] = {
            "MCP_STORAGE_URL": redis_url,
            "MCP_SERVER_URL": proxy_url,
            "MCP_STATELESS_HTTP": "true",
        }
        replicas = [ServerProcess(github_url, data_dir / f"replica{i}", env=env) for i in range(2)]
        try:
            for replica in replicas:
                replica.start()
            proxy.route_to([replicas[0].url])
            front = ServerProcess(github_url, data_dir, port=int(proxy_url.rsplit(":", 1)[1]))
            bearer = (await sign_in_tokens(front)).access
            direct = await calls_per_second(replicas[0].url, bearer)
            one = await calls_per_second(proxy_url, bearer)
            proxy.route_to([r.url for r in replicas])
            two = await calls_per_second(proxy_url, bearer)
        finally:
            for replica in replicas:
                replica.stop()
    return {"one replica, direct": direct, "one replica behind the proxy": one, "two replicas behind the proxy": two}


async def fill_sqlite(store: SQLiteStorage, family: Family, hashes: list[str]) -> None:
    rows = [(h, "access", family.family_id, 0, time.time() + 3600) for h in hashes]
    with store._transaction() as db:
        db.executemany(
            "INSERT INTO tokens (token_hash, kind, family_id, generation, expires_at) VALUES (?, ?, ?, ?, ?)", rows
        )


async def fill_redis(store: RedisStorage, family: Family, hashes: list[str]) -> None:
    expires = str(time.time() + 3600)
    for start in range(0, len(hashes), 10_000):
        async with store.redis.pipeline(transaction=False) as pipe:
            for h in hashes[start : start + 10_000]:
                fields = ["kind", "access", "family_id", family.family_id, "generation", "0", "expires_at", expires]
                pipe.hset(f"{PREFIX}token:{h}", items=fields)
            await pipe.execute()


async def lookup_costs(store: Storage, sizes: list[int]) -> dict[int, float]:
    """Mean seconds of `get_token` on random stored tokens, as the store grows to each size."""
    grant = Grant(new_id(), "github:1", CLIENT.client_id, "bench", "token-enc", None, None, None, "", False)
    grant.grant_id, _ = await store.upsert_grant(grant)
    code = new_id()
    await store.save_code(code, {}, grant.grant_id, time.time() + 3600)
    family = Family(new_id(), grant.grant_id, CLIENT.client_id, "github:1", ["user"], "r", code, 0, 0.0, False)
    assert await store.redeem_code(code, family, [], time.time())
    stored: list[str] = []
    costs: dict[int, float] = {}
    for size in sizes:
        hashes = [random.randbytes(32).hex() for _ in range(size - len(stored))]
        fill = fill_sqlite if isinstance(store, SQLiteStorage) else fill_redis
        await fill(store, family, hashes)  # type: ignore[arg-type]
        stored += hashes
        samples = random.sample(stored, min(1000, len(stored)))
        rounds = []  # the fastest of five rounds: least disturbed by whatever else runs on the machine
        for _ in range(5):
            start = time.perf_counter()
            for h in samples:
                assert await store.get_token(h) is not None
            rounds.append((time.perf_counter() - start) / len(samples))
        costs[size] = min(rounds)
    return costs


async def run(max_tokens: int) -> None:
    sizes = [s for s in SIZES if s <= max_tokens]
    fake = FakeGitHub()
    fake.add_user("bench", id=1)
    fake.sign_in("bench")
    token = fake.issue_token("bench", ["read:user"]).access_token
    with tempfile.TemporaryDirectory() as tmp, running_fake_github(fake) as github_url:
        redis_server = RedisServer(Path(tmp) / "redis")
        redis_server.start()
        try:
            sqlite_url = f"sqlite:///{Path(tmp) / 'verify.sqlite3'}"
            verify = {
                "SQLite": await verification_cost(sqlite_url, github_url, token),
                "Redis": await verification_cost(redis_server.url, github_url, token),
            }
            print("Token verification per request (load_access_token, token cache emptied before each)")
            for name, seconds in verify.items():
                print(f"  {name:8s} {seconds * 1e6:8.0f} µs")

            redis_server.flush()
            rates = await throughput(fake, github_url, redis_server.url, Path(tmp))
            print(f"get_user_profile calls/s ({CALLS} calls, {CONCURRENCY} concurrent, stateless, one Redis)")
            for name, rate in rates.items():
                print(f"  {name:30s} {rate:8.0f}")

            redis_server.flush()
            print("Token lookup (get_token) by number of stored tokens; target: largest / smallest <= 1.2")
            stores: dict[str, Storage] = {
                "SQLite": SQLiteStorage(Path(tmp) / "lookup.sqlite3"),
                "Redis": RedisStorage(redis_server.url, unused_client_seconds=86400, idle_client_seconds=86400),
            }
            for name, store in stores.items():
                costs = await lookup_costs(store, sizes)
                await store.close()
                ratio = costs[sizes[-1]] / costs[sizes[0]]
                row = "  ".join(f"{size:>9,}: {cost * 1e6:6.1f} µs" for size, cost in costs.items())
                print(f"  {name:8s} {row}  ratio {ratio:.2f} {'PASS' if ratio <= 1.2 else 'FAIL'}")
        finally:
            redis_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--max-tokens", type=int, default=SIZES[-1], help="largest store size to fill (default 1M)")
    asyncio.run(run(parser.parse_args().max_tokens))


if __name__ == "__main__":
    main()
