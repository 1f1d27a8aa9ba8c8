"""Two server processes on one SQLite file (issue 7): every single-use step has one winner across
processes, as it will across replicas on a shared store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import ManualClient, McpUser, ServerProcess, mcp_status, server_db

pytestmark = pytest.mark.anyio


@pytest.fixture
def pair(start_server: StartServer, tmp_path: Path) -> tuple[ServerProcess, ServerProcess]:
    """A and B: one store and one public URL (A's), as replicas behind one address would have."""
    a = start_server(tmp_path / "a")
    b = start_server(
        tmp_path / "b", env={"MCP_STORAGE_URL": f"sqlite:///{a.data_dir / 'mcp.sqlite3'}", "MCP_SERVER_URL": a.url}
    )
    return a, b


async def test_one_code_exchanged_on_two_processes_at_once_has_one_winner(
    github: FakeGitHub, pair: tuple[ServerProcess, ServerProcess]
) -> None:
    a, b = pair
    on_a, on_b = await ManualClient.register(a), None
    for _ in range(5):
        code = (await on_a.sign_in())["code"]
        on_b = ManualClient(b, on_a.client_id, on_a.redirect_uri, on_a.verifier)
        answers = await asyncio.gather(on_a.exchange(code), on_b.exchange(code))
        assert sorted(r.status_code for r in answers) == [200, 400]
        # The loser is a replay: RFC 6749 §4.1.2 revokes what the winner got, on both processes.
        winner = next(r.json() for r in answers if r.status_code == 200)
        assert await mcp_status(a, winner["access_token"]) == 401
        assert await mcp_status(b, winner["access_token"]) == 401


async def test_a_github_app_refresh_has_one_winner_across_processes(
    github: FakeGitHub, pair: tuple[ServerProcess, ServerProcess]
) -> None:
    a, b = pair
    github.expiring_tokens = True
    async with McpUser(a) as alice:
        assert not (await alice.call("get_user_profile")).is_error
        assert alice.storage.tokens is not None
        on_b = McpUser(b, alice.storage)
        github.expire_all_access_tokens()
        with server_db(a) as db:
            db.execute("UPDATE grants SET expires_at = ?", (time.time() + 30,))

        results = await asyncio.gather(
            *(alice.call("get_user_profile") for _ in range(3)), *(on_b.call("get_user_profile") for _ in range(3))
        )
        await on_b.aclose()

    assert [r.is_error for r in results] == [False] * 6
    # GitHub App refresh tokens are single use: a second refresh would have ended the grant.
    assert sum(1 for r in github.token_requests if r.get("grant_type") == "refresh_token") == 1
