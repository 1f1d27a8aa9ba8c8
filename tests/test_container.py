"""The deploy path, run for real: a real dockerd, the image built from deploy/Dockerfile, the compose stack
(two replicas, Redis, Caddy with its own CA) on host networking, and the SDK's OAuth client through Caddy
with the GitHub stand-in as GitHub. About a minute with the base image cached (68 s on a busy 2-core
machine), four on a fresh one, where debootstrap makes the base image first.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from ghmcp.standin.faults import Fault
from tests.container_support import (
    DOCKER,
    Stack,
    base_image,
    build_image,
    logs,
    mounts_under,
    require_docker,
    run,
    running_dockerd,
    running_stack,
    wait_for,
)
from tests.fake_github import FakeGitHub
from tests.support import (
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

pytestmark = pytest.mark.anyio

IMAGE = "ghmcp:test"
CADDY_ROOT = "/data/caddy/pki/authorities/local/root.crt"  # Caddy's local CA (XDG_DATA_HOME=/data)
TOKEN_CACHE_SECONDS = 0.6  # a replica remembers a verified token for at most 0.5 s (docs/replicas.md)
STARTED = "Application startup complete"  # uvicorn's line once the app's lifespan has started
ACCESS_LINE = re.compile(r"INFO mcp_server: (GET|POST) /(?!healthz)\S* \d{3}$", re.MULTILINE)


@dataclass
class Deployed(ServerProcess):
    """The stack seen from outside: its public https URL (Caddy), for the helpers that take a server."""

    public_url: str = ""

    @property
    def url(self) -> str:
        return self.public_url


@pytest.mark.timeout(420)
async def test_the_compose_stack_serves_signs_in_survives_restarts_and_stops_gracefully(
    github: FakeGitHub, github_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_docker()
    with running_dockerd() as docker:
        base = base_image(docker)
        build_image(docker, base, IMAGE)
        stack_env = stack_variables(docker, base, github_url, tmp_path)
        with running_stack(stack_env, Path(stack_env["MCP_ENV_FILE"]), f"ghmcp-test-{secrets.token_hex(4)}") as stack:
            stack.wait_healthy("redis", "mcp1", "mcp2")
            root = wait_for("Caddy's root", lambda: stack.compose("exec", "-T", "caddy", "cat", CADDY_ROOT), 60)
            (tmp_path / "caddy-root.pem").write_text(root)
            monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "caddy-root.pem"))  # only Caddy's CA is trusted
            server = Deployed(github_url, tmp_path, public_url=stack_env["PUBLIC_URL"])

            await sign_in_call_refresh_revoke(server)
            assert all(ACCESS_LINE.search(stack.logs(s)) for s in ("mcp1", "mcp2")), "a replica served nothing"
            await restarts_lose_nothing(stack, server)
            signed = await sign_in_tokens(server)
            await stop_finishes_the_request_in_flight(stack, github, stack_env, signed.access)
            runs_locked_down(stack)
        assert stack.containers() == []  # `down` removed every container of the project
        ephemeral_store_is_warned_about(docker, github_url)
        assert run([DOCKER, "ps", "--all", "--quiet"], docker, 30).split() == []
    socket = Path(docker["DOCKER_HOST"].removeprefix("unix://"))
    assert not socket.parent.exists() and not mounts_under(socket.parent)  # dockerd stopped, nothing left mounted


def stack_variables(docker: dict[str, str], base: str, github_url: str, tmp_path: Path) -> dict[str, str]:
    """compose.yaml's variables: free ports, the test's images, and the replicas' env file."""
    env_file = tmp_path / "mcp.env"
    env_file.write_text(
        f"MCP_SECRET_KEY={secrets.token_urlsafe(36)}\n"
        "MCP_GITHUB_CLIENT_ID=fake-client-id\nMCP_GITHUB_CLIENT_SECRET=fake-client-secret\n"
        f"MCP_GITHUB_URL={github_url}\nMCP_GITHUB_API_URL={github_url}\n"
    )
    https_port = free_port()
    return docker | {
        "MCP_IMAGE": IMAGE,
        "BASE_IMAGE": base,
        "REDIS_IMAGE": base,  # the test's base image has Debian's redis-server and caddy too
        "CADDY_IMAGE": base,
        "MCP_ENV_FILE": str(env_file),
        "PUBLIC_URL": f"https://localhost:{https_port}",
        "HTTPS_PORT": str(https_port),
        "HTTP_PORT": str(free_port()),
        "MCP1_PORT": str(free_port()),
        "MCP2_PORT": str(free_port()),
        "REDIS_PORT": str(free_port()),
        "TLS": "internal",
    }


async def sign_in_call_refresh_revoke(server: Deployed) -> None:
    """The SDK's OAuth client signs in through Caddy and calls tools; then the grant is refreshed and revoked,
    and each replica agrees."""
    async with McpUser(server) as user:
        profile = await user.call("get_user_profile")
        repo = await user.call("get_repository", {"owner": "alice", "repo": "hello-world"})
        assert user.storage.tokens is not None and user.storage.client_info is not None
        tokens, client_id = user.storage.tokens, user.storage.client_info.client_id
    assert profile.structured_content["login"] == "alice", profile
    assert not repo.is_error, repo
    assert client_id is not None and tokens.refresh_token is not None
    client = ManualClient(server, client_id)
    refreshed = await refresh_grant(client, tokens.refresh_token)
    assert refreshed.status_code == 200, refreshed.text
    access, refresh = refreshed.json()["access_token"], refreshed.json()["refresh_token"]
    await asyncio.sleep(TOKEN_CACHE_SECONDS)  # the other replica may still hold the old token as verified
    assert [await mcp_status(server, t) for t in (tokens.access_token,) * 2 + (access,) * 2] == [401, 401, 200, 200]

    assert (await revoke_request(server, client_id, access)).status_code == 200
    await asyncio.sleep(TOKEN_CACHE_SECONDS)
    assert [await mcp_status(server, access) for _ in range(2)] == [401, 401]  # on both replicas
    assert (await refresh_grant(client, refresh)).status_code == 400  # the whole grant is gone


async def restarts_lose_nothing(stack: Stack, server: Deployed) -> None:
    """A replica restarted, then Redis restarted (its data on a volume): a grant issued before works on both
    replicas, and its refresh token still refreshes."""
    signed = await sign_in_tokens(server)
    for service in ("mcp1", "redis"):
        stack.compose("restart", service)
        stack.wait_healthy(service, "mcp1", "mcp2")
        for _ in range(4):  # round robin: every replica twice
            async with bearer_client(server, signed.access) as client:
                result = await client.call_tool("get_user_profile", {})
            assert result.structured_content is not None and result.structured_content["login"] == "alice", result
    assert (await refresh_grant(signed.client, signed.refresh)).status_code == 200


async def stop_finishes_the_request_in_flight(
    stack: Stack, github: FakeGitHub, env: dict[str, str], access: str
) -> None:
    """`docker stop` while a tool call waits on a slow GitHub: the call is answered, the process exits 0 by
    itself (docker would have killed it with 137 after the grace period)."""
    github.fail(Fault("slow", prefix="/user", seconds=3))
    before = github.count("/user")
    call = asyncio.create_task(direct_tool_call(f"http://127.0.0.1:{env['MCP2_PORT']}/mcp", access))
    await asyncio.to_thread(wait_for, "the call reaching GitHub", lambda: github.count("/user") > before, 30, 0.05)
    container = stack.container("mcp2")
    await asyncio.to_thread(run, [DOCKER, "stop", container], env, 60)
    answer = await asyncio.wait_for(call, 30)
    github.fail(None)
    assert answer.status_code == 200 and '"login":"alice"' in answer.text.replace(" ", ""), answer.text
    state = stack.inspect("mcp2")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0), state


async def direct_tool_call(url: str, bearer: str) -> httpx2.Response:
    """One stateless `tools/call` POST straight to a replica, bypassing Caddy (which would retry elsewhere)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_user_profile", "arguments": {}}}
    headers = {
        "Authorization": f"Bearer {bearer}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(url, json=body, headers=headers)


def runs_locked_down(stack: Stack) -> None:
    """Non-root, on a read-only root filesystem, and healthy by the image's own healthcheck."""
    replica = stack.inspect("mcp1")
    assert (replica["Config"]["User"], replica["HostConfig"]["ReadonlyRootfs"]) == ("10001:10001", True)
    assert stack.compose("exec", "-T", "mcp1", "id", "-u").strip() == "10001"
    assert stack.health("mcp1") == "healthy"


def ephemeral_store_is_warned_about(docker: dict[str, str], github_url: str) -> None:
    """The image's default SQLite store: one warning line without a volume on /data, none with one."""
    logs = [first_log(docker, github_url, volume) for volume in (None, f"ghmcp-test-{secrets.token_hex(4)}")]
    assert [log.count("not on a mounted volume") for log in logs] == [1, 0], logs


def first_log(docker: dict[str, str], github_url: str, volume: str | None) -> str:
    """The log of one container of the image until its application has started (the warning is logged as it
    starts); the container (and volume) removed after."""
    settings = {"MCP_PORT": str(free_port()), "MCP_GITHUB_CLIENT_ID": "id", "MCP_GITHUB_CLIENT_SECRET": "secret"}
    command = [DOCKER, "run", "--detach", "--network=host", *(f"--env={k}={v}" for k, v in settings.items())]
    command += [f"--volume={volume}:/data"] if volume else []
    container = run([*command, IMAGE], docker, 60).strip()
    try:
        return str(wait_for("the start", lambda: STARTED in (log := logs(docker, container)) and log, 60))
    except AssertionError:
        print(logs(docker, container))  # shown by pytest with the failure
        raise
    finally:
        run([DOCKER, "rm", "--force", "--volumes", container], docker, 60)
        if volume:
            run([DOCKER, "volume", "rm", volume], docker, 60)
