"""MCP_AUDIT_LOG: one JSON line per security event, with identities and outcomes, never a secret."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import (
    ALL_TOOL_SCOPES,
    ROOT,
    Browser,
    BrowserStopped,
    ManualClient,
    ServerProcess,
    bearer_client,
    query,
    refresh_grant,
    revoke_request,
    sign_in_tokens,
)

pytestmark = pytest.mark.anyio


async def test_audit_log_records_each_event_once_and_no_secret(
    start_server: StartServer, github: FakeGitHub, tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    env = {"MCP_AUDIT_LOG": str(log), "MCP_ALLOWED_GITHUB_USERS": "alice", "MCP_REFRESH_GRACE_SECONDS": "0"}
    server = start_server(env=env)
    secrets: list[str] = []

    first = await sign_in_tokens(server, scope=ALL_TOOL_SCOPES)
    secrets += [first.code, first.access, first.refresh]
    async with bearer_client(server, first.access) as mcp:
        assert not (await mcp.call_tool("get_user_profile", {})).is_error
        missing = await mcp.call_tool("get_repository", {"owner": "alice", "repo": "no-such-repo"})
        assert missing.is_error
    refreshed = await refresh_grant(first.client, first.refresh)
    assert refreshed.status_code == 200, refreshed.text
    secrets += [refreshed.json()["access_token"], refreshed.json()["refresh_token"]]
    assert (await refresh_grant(first.client, first.refresh)).status_code == 400  # reuse

    second = await sign_in_tokens(server)
    secrets += [second.code, second.access, second.refresh]
    assert (await revoke_request(server, second.client.client_id, second.access)).status_code == 200
    assert (await revoke_request(server, second.client.client_id, second.access)).status_code == 200  # gone now
    async with httpx2.AsyncClient() as http:  # a callback no sign-in started: its state is a secret too
        assert (await http.get(f"{server.url}/github/callback?state=forged-state-0001&code=x")).status_code == 400

    denying = await ManualClient.register(server)
    async with Browser(consent="deny") as browser:
        assert (
            query(await browser.run(denying.authorize_url(), stop_at=denying.redirect_uri))["error"] == "access_denied"
        )

    github.sign_in("bob")
    refused = await ManualClient.register(server)
    with pytest.raises(BrowserStopped) as stopped:  # the server's page names the refused account
        await refused.sign_in()
    assert stopped.value.response.status_code == 403
    github.sign_in("alice")

    third = await sign_in_tokens(server)
    secrets += [third.code, third.access, third.refresh]
    github.revoke_authorization("alice")  # GitHub stops honouring the grant: the next tool call ends it
    async with bearer_client(server, third.access) as mcp:
        assert (await mcp.call_tool("get_user_profile", {})).is_error

    text = log.read_text()
    events = [json.loads(line) for line in text.splitlines()]
    counts = Counter(e["event"] for e in events)
    assert counts == {
        "sign_in": 3,
        "consent_given": 4,  # bob approved too, before GitHub told who he is
        "tool_called": 3,
        "token_refreshed": 1,
        "refresh_reuse": 1,
        "revocation": 2,
        "sign_in_failed": 1,
        "consent_denied": 1,
        "admission_refused": 1,
        "grant_killed": 1,
    }, counts

    def one(name: str) -> dict[str, Any]:
        return next(e for e in events if e["event"] == name)

    alice = {"login": "alice", "client_id": first.client.client_id}
    assert one("sign_in").items() >= (alice | {"github_id": 1001}).items()
    assert one("sign_in")["scopes"] and one("sign_in")["time"].endswith("+00:00")
    assert one("consent_given")["client_id"] == first.client.client_id
    assert one("token_refreshed").items() >= alice.items()
    assert one("refresh_reuse").items() >= alice.items()
    assert one("revocation") | {"time": ""} == {
        "time": "",
        "event": "revocation",
        "login": "alice",
        "client_id": second.client.client_id,
        "outcome": "revoked",
    }
    revocations = [e for e in events if e["event"] == "revocation"]
    assert revocations[1] | {"time": ""} == {
        "time": "",
        "event": "revocation",
        "client_id": second.client.client_id,
        "outcome": "unknown_token",
    }
    assert one("sign_in_failed") | {"time": ""} == {"time": "", "event": "sign_in_failed", "reason": "invalid_state"}
    assert one("consent_denied")["client_id"] == denying.client_id
    assert (
        one("admission_refused").items() >= {"login": "bob", "github_id": 2002, "client_id": refused.client_id}.items()
    )
    assert one("grant_killed")["reason"] == "github_refused"
    tools = [(e["tool"], e.get("login"), e["client_id"], e["outcome"]) for e in events if e["event"] == "tool_called"]
    assert tools == [
        ("get_user_profile", "alice", first.client.client_id, "ok"),
        ("get_repository", "alice", first.client.client_id, "error"),
        ("get_user_profile", "alice", third.client.client_id, "error"),
    ]

    secrets += github.issued()  # GitHub's codes and tokens
    secrets += [value for params in github.authorize_requests for value in params.values()]  # our states, challenges
    secrets += ["client-state-123", "no-such-repo", "forged-state-0001"]  # the client's state; a tool argument
    leaked = [s for s in secrets if len(s) >= 8 and s not in (server.url, "S256") and s in text]
    assert not leaked


def test_an_audit_log_that_cannot_be_opened_stops_the_server(tmp_path: Path) -> None:
    server = ServerProcess("http://127.0.0.1:1", tmp_path, env={"MCP_AUDIT_LOG": str(tmp_path / "missing" / "a.log")})
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py")],
        cwd=tmp_path,
        env=server.environment(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "MCP_AUDIT_LOG cannot be opened" in lines[0], done.stderr
