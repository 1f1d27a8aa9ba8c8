"""State lives in SQLite: it survives restarts, and what is at rest is hashed or encrypted."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx2
import pytest

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import McpUser, ServerProcess

pytestmark = pytest.mark.anyio


async def test_restart_keeps_tokens_and_clients(server: ServerProcess, github: FakeGitHub) -> None:
    async with McpUser(server) as user:
        await user.call("get_user_profile")
        sign_ins = github.count("/login/oauth/authorize")
        server.stop()
        server.start()
        result = await user.call("get_user_profile")  # same tokens, same registered client
    assert result.structured_content is not None and result.structured_content["login"] == "alice"
    assert github.count("/login/oauth/authorize") == sign_ins, "no new sign-in was needed"
    assert user.storage.client_info is not None
    async with httpx2.AsyncClient() as http:
        refresh = await http.post(
            f"{server.url}/token",
            data={
                "grant_type": "refresh_token",
                "client_id": user.storage.client_info.client_id,
                "refresh_token": user.storage.tokens.refresh_token if user.storage.tokens else "",
            },
        )
    assert refresh.status_code == 200, refresh.text  # the client is still known after the restart


def stored_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("mcp.sqlite3*"))


async def test_database_holds_no_plaintext_secret(start_server: StartServer, github: FakeGitHub) -> None:
    server = start_server()
    async with McpUser(server) as user:
        await user.call("get_user_profile")
    async with httpx2.AsyncClient() as http:  # a confidential client too, for its client secret
        registered = await http.post(f"{server.url}/register", json={"redirect_uris": ["https://app.example.com/cb"]})
    client_secret = registered.json()["client_secret"]
    server.stop()  # flushes the WAL into the database file
    tokens = user.storage.tokens
    assert tokens is not None and tokens.refresh_token is not None
    blob = stored_bytes(server.data_dir)
    assert b"alice" in blob, "sanity: the database was read"
    for secret in [tokens.access_token, tokens.refresh_token, client_secret, *github.live_tokens_for("alice")]:
        assert secret.encode() not in blob


async def test_generated_secret_key_and_database_are_private(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(env={"MCP_SECRET_KEY": None})
    key_file = server.data_dir / "secret_key"
    assert key_file.exists()
    for private in (key_file, *server.data_dir.glob("mcp.sqlite3*")):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert "MCP_SECRET_KEY is not set" in server.log()
    assert key_file.read_text() not in server.log()
