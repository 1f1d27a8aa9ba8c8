"""Narrowing an app's repositories on /account (issue 19): only narrower, and on every replica
within the token cache's bound."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from ghmcp.auth.token_cache import TTL_SECONDS
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import ServerProcess, bearer_client, sign_in_tokens, tool_error
from tests.test_account import account_session, csrf_of
from tests.test_replicas import start_pair

pytestmark = pytest.mark.anyio

DOTFILES = {"owner": "alice", "repo": "dotfiles"}
HELLO = {"owner": "alice", "repo": "hello-world"}


async def narrow(
    http: httpx2.AsyncClient, server: ServerProcess, page: httpx2.Response, **fields: str | list[str]
) -> httpx2.Response:
    grant = page.text.split('name="grant" value="')[1].split('"')[0]
    data: dict[str, str | list[str]] = {
        "csrf": csrf_of(page),
        "grant": grant,
        "action": "narrow-repositories",
        **fields,
    }
    return await http.post(f"{server.url}/account", data=data)


async def test_narrowing_on_account_holds_on_the_other_replica(
    start_server: StartServer, redis_url: str, github: FakeGitHub
) -> None:
    first, second = start_pair(start_server, redis_url)
    signed_in = await sign_in_tokens(first, scope="user repo:read")
    async with bearer_client(second, signed_in.access) as client, httpx2.AsyncClient(timeout=10) as http:
        assert not (await client.call_tool("get_repository", DOTFILES)).is_error  # cached on the second replica
        page = await account_session(http, first)
        assert "All you can access" in page.text
        narrowed = await narrow(http, first, page, typed="alice/hello-world")
        assert narrowed.status_code == 200 and "reaches only: alice/hello-world" in narrowed.text
        await anyio.sleep(TTL_SECONDS + 0.2)  # the bound promised: a cached copy is trusted no longer
        refused = await client.call_tool("get_repository", DOTFILES)
        kept = await client.call_tool("get_repository", HELLO)
    assert "alice/dotfiles is not among" in tool_error(refused)
    assert not kept.is_error


async def test_account_can_only_narrow(server: ServerProcess, github: FakeGitHub) -> None:
    signed_in = await sign_in_tokens(server, scope="user repo:read")
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await account_session(http, server)
        await narrow(http, server, page, typed="alice/hello-world alice/website")
        page = await http.get(f"{server.url}/account")
        assert 'name="keep" value="alice/hello-world" checked' in page.text
        # Asking for more (a repository outside the set, or a whole owner) keeps only what was there.
        wider = await narrow(
            http, server, page, keep=["alice/hello-world", "alice/website"], typed="alice alice/dotfiles"
        )
        dropped = await narrow(http, server, page, keep=["alice/website"])
        emptied = await narrow(http, server, await http.get(f"{server.url}/account"), keep=[])
    assert "Nothing changed" in wider.text
    assert "reaches only: alice/website" in dropped.text
    assert emptied.status_code == 400 and "disconnect it instead" in emptied.text
    async with bearer_client(server, signed_in.access) as client:
        await anyio.sleep(TTL_SECONDS + 0.2)
        hello = await client.call_tool("get_repository", HELLO)
    assert "alice/hello-world is not among" in tool_error(hello)
