"""Issue 18: the number of metric series is bounded by the code, not by how many users and clients come."""

from __future__ import annotations

import httpx2
import pytest

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.observe_support import series_count
from tests.support import ManualClient, ServerProcess, bearer_client, free_port, sign_in_tokens

pytestmark = pytest.mark.anyio


async def sign_in_and_call(server: ServerProcess, github: FakeGitHub, login: str, number: int) -> str:
    """A new user on a new client: sign in and call a tool; returns the client id."""
    github.add_user(login, id=50_000 + number)
    github.sign_in(login)
    client = await ManualClient.register(server)
    signed_in = await sign_in_tokens(server, client=client)
    async with bearer_client(server, signed_in.access) as mcp:
        assert not (await mcp.call_tool("get_user_profile", {})).is_error
    return client.client_id


async def test_series_do_not_grow_with_50_users_and_50_clients(start_server: StartServer, github: FakeGitHub) -> None:
    metrics_port = free_port()
    server = start_server(env={"MCP_METRICS_PORT": str(metrics_port)})
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    client_ids = [await sign_in_and_call(server, github, f"user-{n}", n) for n in range(2)]
    after_two = series_count(metrics_url)
    client_ids += [await sign_in_and_call(server, github, f"user-{n}", n) for n in range(2, 50)]
    assert series_count(metrics_url) == after_two

    exposed = httpx2.get(metrics_url, timeout=5).text
    assert 'mcp_sign_ins_total{outcome="ok"} 50.0' in exposed
    assert [value for value in [*client_ids, "user-7"] if value in exposed] == []
