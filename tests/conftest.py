"""Shared fixtures: one fake GitHub per test session, reset per test; servers started per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_github import FakeGitHub, running_fake_github
from tests.support import McpUser, ServerProcess

StartServer = Callable[..., ServerProcess]


@pytest.fixture(scope="session")
def fake_github_session() -> Iterator[tuple[FakeGitHub, str]]:
    fake = FakeGitHub()
    with running_fake_github(fake) as url:
        yield fake, url


@pytest.fixture
def github(fake_github_session: tuple[FakeGitHub, str]) -> FakeGitHub:
    """The fake GitHub, emptied, with two users; alice is signed in to it."""
    fake, _ = fake_github_session
    fake.reset()
    fake.expiring_tokens = False
    fake.add_user("alice", id=1001, name="Alice Example", email="alice@example.com", orgs=["acme"])
    fake.add_user("bob", id=2002, name="Bob Example", email="bob@example.com")
    fake.sign_in("alice")
    return fake


@pytest.fixture
def github_url(fake_github_session: tuple[FakeGitHub, str]) -> str:
    return fake_github_session[1]


@pytest.fixture
def start_server(github: FakeGitHub, github_url: str, tmp_path: Path) -> Iterator[StartServer]:
    """Start servers (stopped at the end of the test); each call gets its own data dir unless given one."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(github_url, data_dir or tmp_path / f"server{len(started)}", **kwargs)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    return start_server()


@pytest.fixture
async def user(server: ServerProcess) -> AsyncIterator[McpUser]:
    mcp_user = McpUser(server)
    yield mcp_user
    await mcp_user.aclose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
