"""Shared fixtures: one fake GitHub per test session, reset per test; servers started per test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.fake_github import FakeGitHub, running_fake_github
from tests.redis_support import RedisServer, running_redis
from tests.support import McpUser, ServerProcess, running_server

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


@pytest.fixture(scope="module")
def start_module_server(
    fake_github_session: tuple[FakeGitHub, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartServer]:
    """Start servers shared by a module's tests (stopped when the module ends): each test registers its own clients."""
    with contextlib.ExitStack() as stack:

        def start(**kwargs: Any) -> ServerProcess:
            data_dir = tmp_path_factory.mktemp("server")
            return stack.enter_context(running_server(fake_github_session[1], data_dir, **kwargs))

        yield start


@pytest.fixture(scope="module")
def module_server(start_module_server: StartServer) -> ServerProcess:
    """One default server per test module: starting one takes a second."""
    return start_module_server()


@pytest.fixture
def server(module_server: ServerProcess, github: FakeGitHub) -> ServerProcess:
    """The module's default server, with the fake GitHub reset; use `start_server` for special settings."""
    return module_server


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    """A browser's cookie jar, without automatic redirects so every hop is visible."""
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def user(server: ServerProcess) -> AsyncIterator[McpUser]:
    async with McpUser(server) as mcp_user:
        yield mcp_user


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_session: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_session.flush()
    return redis_session.url
