"""A `rediss://` store (Debian's redis-server serving TLS only, with a CA made for the test): a full
sign-in and tool call over it, and a certificate refused at start is one sentence naming the setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ghmcp.config import ConfigError
from ghmcp.config_loading import load_settings
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.redis_support import RedisServer, running_redis
from tests.redis_tls_support import SERVER_NAME, TlsFiles, make_ca
from tests.support import bearer_client, free_port, sign_in_tokens
from tests.test_config import BASE, run_main

KEYED = BASE | {"MCP_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789"}
KEYED_SETTINGS = {"github_client_id": "id", "github_client_secret": "secret"}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis-tls"), tls=tls_files) as server:
        yield server


@pytest.mark.anyio
async def test_sign_in_and_a_tool_call_over_rediss(
    start_server: StartServer, github: FakeGitHub, tls_redis: RedisServer, tls_files: TlsFiles
) -> None:
    assert tls_redis.url.startswith("rediss://")
    server = start_server(env={"MCP_STORAGE_URL": tls_redis.url, "MCP_REDIS_CA_FILE": str(tls_files.ca_cert)})
    signed = await sign_in_tokens(server)
    async with bearer_client(server, signed.access) as client:
        result = await client.call_tool("get_user_profile", {})
    assert result.structured_content is not None and result.structured_content["login"] == "alice"
    with tls_redis.client() as direct:
        assert direct.keys("mcp:grant:*")  # the grant went to the TLS Redis


def start_line(tmp_path: Path, url: str, ca_file: Path) -> str:
    env = KEYED | {"MCP_STORAGE_URL": url, "MCP_REDIS_CA_FILE": str(ca_file), "MCP_PORT": str(free_port())}
    result = run_main(tmp_path, env)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_ca_that_did_not_sign_the_redis_certificate_is_one_sentence(tmp_path: Path, tls_redis: RedisServer) -> None:
    other = make_ca(tmp_path / "other-ca", "another CA")
    assert start_line(tmp_path, tls_redis.url, other.ca_cert) == (
        "Configuration error: MCP_REDIS_CA_FILE does not name the CA that signed the Redis server's TLS "
        "certificate: set it to that CA's PEM file."
    )


def test_a_host_name_the_redis_certificate_does_not_list_is_one_sentence(
    tmp_path: Path, tls_redis: RedisServer, tls_files: TlsFiles
) -> None:
    by_address = tls_redis.url.replace(SERVER_NAME, "127.0.0.1")  # the certificate names localhost only
    assert start_line(tmp_path, by_address, tls_files.ca_cert) == (
        "Configuration error: MCP_STORAGE_URL names the Redis server by a host name its TLS certificate does "
        "not list: use a name the certificate lists."
    )


def test_a_ca_file_needs_a_tls_store_and_a_readable_file(tmp_path: Path, tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError) as plain:
        load_settings(**KEYED_SETTINGS, storage_url="redis://localhost:6379/0", redis_ca_file=str(tls_files.ca_cert))
    assert str(plain.value) == ("MCP_REDIS_CA_FILE is for a TLS store: unset it, or use a rediss:// MCP_STORAGE_URL.")
    with pytest.raises(ConfigError) as missing:
        load_settings(**KEYED_SETTINGS, storage_url="rediss://localhost:6379/0", redis_ca_file=str(tmp_path / "no"))
    assert str(missing.value).startswith("MCP_REDIS_CA_FILE must be a readable PEM file"), missing.value
