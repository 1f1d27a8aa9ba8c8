"""Several replicas on one Redis, started as `main.py` starts them: whatever one replica issued,
counted or revoked holds on the other; a round-robin proxy in front of both serves the SDK's own
client; Redis restarts and outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
import redis
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import RequestStateSecurity
from mcp.server.request_state import InvalidRequestState

from ghmcp.auth.keys import Keyring
from ghmcp.config_loading import load_settings
from main import parse_args
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.proxy import running_proxy
from tests.redis_support import RedisServer, running_redis
from tests.support import (
    ROOT,
    ManualClient,
    McpUser,
    ServerProcess,
    bearer_client,
    free_port,
    mcp_status,
    refresh_grant,
    revoke_request,
    sign_in_tokens,
)
from tests.test_config import BASE, run_main

pytestmark = pytest.mark.anyio

Replicas = Callable[..., tuple[ServerProcess, ServerProcess]]


def start_pair(start: Callable[..., ServerProcess], redis_url: str, **env: str) -> tuple[ServerProcess, ServerProcess]:
    """Two replicas of one deployment: one public URL (A's here, as if A were the load balancer)."""
    port = free_port()
    shared = {"MCP_STORAGE_URL": redis_url, "MCP_SERVER_URL": f"http://127.0.0.1:{port}", **env}
    return start(env=shared, port=port), start(env=shared)


@pytest.fixture
def replicas(start_server: StartServer, redis_url: str) -> Replicas:
    """A fresh pair with special settings."""
    return lambda **env: start_pair(start_server, redis_url, **env)


@pytest.fixture(scope="module")
def module_pair(start_module_server: StartServer, redis_session: RedisServer) -> tuple[ServerProcess, ServerProcess]:
    """The module's default pair: each test registers its own client, so they do not meet."""
    return start_pair(start_module_server, redis_session.url)


@pytest.fixture
def pair(module_pair: tuple[ServerProcess, ServerProcess], github: FakeGitHub) -> tuple[ServerProcess, ServerProcess]:
    return module_pair


def on(server: ServerProcess, client: ManualClient) -> ManualClient:
    """The same registered client, talking to another replica."""
    return ManualClient(server, client.client_id, client.redirect_uri, client.verifier)


async def test_sign_in_on_one_replica_and_use_tokens_on_the_other(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    signed = await sign_in_tokens(a)
    async with bearer_client(b, signed.access) as client:
        result = await client.call_tool("get_user_profile", {})
    assert result.structured_content is not None and result.structured_content["login"] == "alice"

    refreshed = await refresh_grant(on(b, signed.client), signed.refresh)
    assert refreshed.status_code == 200, refreshed.text
    access = refreshed.json()["access_token"]
    assert await mcp_status(a, signed.access) == 401  # rotated away on B: A no longer accepts it
    assert await mcp_status(a, access) == 200

    assert (await revoke_request(a, signed.client.client_id, access)).status_code == 200
    assert await mcp_status(b, access) == 401


async def test_a_refresh_retried_on_the_other_replica_inside_the_grace_window_is_served(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    signed = await sign_in_tokens(a)
    answers = await asyncio.gather(
        refresh_grant(signed.client, signed.refresh), refresh_grant(on(b, signed.client), signed.refresh)
    )
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    assert answers[0].json()["access_token"] == answers[1].json()["access_token"]  # one rotation, the same pair
    assert await mcp_status(b, answers[0].json()["access_token"]) == 200


async def test_refresh_reuse_on_the_other_replica_revokes_the_family(replicas: Replicas, github: FakeGitHub) -> None:
    a, b = replicas(MCP_REFRESH_GRACE_SECONDS="0")
    signed = await sign_in_tokens(a)
    rotated = await refresh_grant(signed.client, signed.refresh)
    assert rotated.status_code == 200, rotated.text
    await asyncio.sleep(0.1)  # past the (zero) grace window
    reuse = await refresh_grant(on(b, signed.client), signed.refresh)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # RFC 9700 §4.14.2: B saw the reuse, so A refuses the rotated tokens too.
    assert await mcp_status(a, rotated.json()["access_token"]) == 401


async def test_an_expiring_github_token_is_refreshed_once_across_replicas(
    pair: tuple[ServerProcess, ServerProcess], github: FakeGitHub, redis_session: RedisServer
) -> None:
    a, b = pair
    github.expiring_tokens = True
    signed = await sign_in_tokens(a)
    github.expire_all_access_tokens()  # GitHub's 8 hours are over, and the store knows it (30 s before the end)
    with redis.Redis(port=redis_session.port, decode_responses=True) as client:
        for key in client.scan_iter("mcp:grant:*"):
            if client.hget(key, "client_id") == signed.client.client_id:
                client.hset(key, "expires_at", str(time.time() + 30))

    async def profile(server: ServerProcess) -> str:
        async with bearer_client(server, signed.access) as client:
            result = await client.call_tool("get_user_profile", {})
        assert result.structured_content is not None, result
        return str(result.structured_content["login"])

    assert await asyncio.gather(*(profile(s) for s in (a, b, a, b))) == ["alice"] * 4
    # GitHub's refresh tokens are single use: a second refresh (from the other replica) would have failed.
    assert sum(1 for r in github.token_requests if r.get("grant_type") == "refresh_token") == 1


async def test_one_code_exchanged_on_both_replicas_at_once_has_one_winner(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    client = await ManualClient.register(a)
    code = (await client.sign_in())["code"]
    answers = await asyncio.gather(client.exchange(code), on(b, client).exchange(code))
    assert sorted(r.status_code for r in answers) == [200, 400]


async def test_rate_limits_are_counted_across_replicas(replicas: Replicas, github: FakeGitHub) -> None:
    a, b = replicas(MCP_RATE_LIMIT="4/minute")
    async with httpx2.AsyncClient(timeout=10) as http:
        statuses = [(await http.post(f"{s.url}/token", data={})).status_code for s in (a, b, a, b, a)]
    assert 429 not in statuses[:4]
    assert statuses[4] == 429  # two hits on each replica used up the shared 4/minute


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stateless_replicas_behind_a_round_robin_proxy(
    start_server: StartServer, redis_url: str, github: FakeGitHub, github_url: str, tmp_path: Path, mode: str
) -> None:
    """ "auto" speaks 2026-07-28 (stateless by design); "legacy" holds an initialize session, which
    only `--stateless` lets any replica serve."""
    async with running_proxy() as (proxy_url, proxy):
        env = {"MCP_STORAGE_URL": redis_url, "MCP_SERVER_URL": proxy_url, "MCP_STATELESS_HTTP": "true"}
        a, b = start_server(env=env), start_server(env=env)
        proxy.route_to([a.url, b.url])
        front = ServerProcess(github_url, tmp_path, port=int(proxy_url.rsplit(":", 1)[1]))  # what clients see
        async with (
            McpUser(front) as user,
            httpx2.AsyncClient(auth=user.oauth, timeout=30) as http,
            Client(streamable_http_client(front.mcp_url, http_client=http), mode=mode) as client,
        ):
            tools = {tool.name for tool in (await client.list_tools()).tools}
            first = await client.call_tool("get_user_profile", {})
            second = await client.call_tool("get_user_profile", {})
    assert "get_user_profile" in tools
    for result in (first, second):
        assert result.is_error is False and result.structured_content is not None
        assert result.structured_content["login"] == "alice"
    assert all(count >= 3 for count in proxy.counts.values()), proxy.counts  # both replicas served


async def test_tokens_survive_a_redis_restart_and_an_outage_is_a_503(
    start_server: StartServer, github: FakeGitHub, tmp_path: Path
) -> None:
    with running_redis(tmp_path / "redis") as redis_server:
        server = start_server(env={"MCP_STORAGE_URL": redis_server.url})
        signed = await sign_in_tokens(server)
        redis_server.stop()
        async with httpx2.AsyncClient(timeout=30) as http:
            health = await http.get(f"{server.url}/healthz")
            assert health.status_code == 503
            tool = await http.post(
                server.mcp_url,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": f"Bearer {signed.access}", "Accept": "application/json, text/event-stream"},
            )
            assert tool.status_code == 503 and tool.headers["retry-after"]
            assert tool.json()["error"] == "temporarily_unavailable"
            for path, data in (
                ("/token", {"grant_type": "refresh_token"}),
                ("/revoke", {"client_id": "c", "token": "t"}),
            ):
                answer = await http.post(f"{server.url}{path}", data=data)
                assert answer.status_code == 503 and answer.headers["retry-after"], (path, answer.text)
            registration = await http.post(f"{server.url}/register", json={"redirect_uris": ["http://127.0.0.1:1/cb"]})
            assert registration.status_code == 503
            page = await http.get(f"{server.url}/consent", params={"request": "anything"})
            assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
            assert "try again" in page.text
            authorize = await http.get(signed.client.authorize_url())
            assert authorize.status_code == 503

            redis_server.start()  # same directory: the append-only file brings everything back
            assert (await http.get(f"{server.url}/healthz")).status_code == 200
        assert await mcp_status(server, signed.access) == 200
        refreshed = await refresh_grant(signed.client, signed.refresh)
        assert refreshed.status_code == 200, refreshed.text
    assert "Traceback" not in server.log()


def test_unreachable_redis_at_start_is_one_sentence(tmp_path: Path) -> None:
    env = BASE | {"MCP_STORAGE_URL": f"redis://127.0.0.1:{free_port()}/0", "MCP_SECRET_KEY": "k" * 40}
    result = run_main(tmp_path, env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MCP_STORAGE_URL" in lines[0], result.stderr


def test_redis_store_without_a_secret_key_is_refused(tmp_path: Path, redis_url: str) -> None:
    result = run_main(tmp_path, BASE | {"MCP_STORAGE_URL": redis_url})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MCP_SECRET_KEY" in lines[0], result.stderr


def test_request_state_sealed_by_one_replica_opens_on_another() -> None:
    """The SDK's request-state keys come from MCP_SECRET_KEY, not from a per-process random key."""
    new, old = "n" * 40, "o" * 40
    sealed = RequestStateSecurity(keys=Keyring([new, old]).request_state_keys()).codec.seal(b"state")
    assert RequestStateSecurity(keys=Keyring([new]).request_state_keys()).codec.unseal(sealed) == b"state"
    assert RequestStateSecurity(keys=Keyring([old, new]).request_state_keys()).codec.unseal(sealed) == b"state"
    with pytest.raises(InvalidRequestState):
        RequestStateSecurity(keys=Keyring(["x" * 40]).request_state_keys()).codec.unseal(sealed)


def test_stateless_flag_sets_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT / "tests")  # no .env
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    assert load_settings(stateless_http=parse_args(["--stateless"]).stateless).stateless_http is True
    assert load_settings(stateless_http=parse_args([]).stateless).stateless_http is False
