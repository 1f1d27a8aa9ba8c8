"""The first hour: every startup error is one sentence on stderr and exit 2, naming the flag or the setting
that was actually used; the store's resolved location is logged at start."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from ghmcp.config import ConfigError, Settings
from ghmcp.config_loading import load_settings
from ghmcp.web.build import store_description
from tests.support import free_port, running_server
from tests.test_config import BASE, run_main

# A key is set so that nothing but the error is printed (a generated key is announced on stderr), and a
# free port, so that a check that no longer stops the server does not take port 8000.
KEYED = BASE | {"MCP_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789", "MCP_PORT": str(free_port())}


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a run that must have stopped with exit 2."""
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        pytest.param("::1", marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")),
    ],
)
@pytest.mark.parametrize("named_by", ["--port", "MCP_PORT"])
def test_a_port_in_use_is_one_sentence_naming_the_flag_or_setting(tmp_path: Path, host: str, named_by: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as other:
        other.bind((host, 0))
        other.listen()
        port = str(other.getsockname()[1])
        by_flag = named_by == "--port"
        env = KEYED | {"MCP_HOST": host} | ({} if by_flag else {"MCP_PORT": port})
        result = run_main(tmp_path, env, *(("--port", port) if by_flag else ()))
    assert one_line(result) == (
        f"Configuration error: Port {port} on {host} is already in use ({named_by}): "
        "stop the other server or choose another port."
    )


def test_an_address_of_another_machine_names_the_host_flag(tmp_path: Path) -> None:
    line = one_line(run_main(tmp_path, KEYED, "--host", "192.0.2.1"))  # TEST-NET-1: never this machine's
    assert line.startswith("Configuration error: 192.0.2.1 is not an address of this machine (--host)"), line


@pytest.mark.parametrize(
    ("env", "args", "sentence"),
    [
        ({}, ("--port", "0"), "--port must be a whole number from 1 to 65535 (got 0)."),
        ({}, ("--port", "eighty"), "--port must be a whole number from 1 to 65535 (got 'eighty')."),
        (
            {"MCP_PORT": "0"},
            (),
            "MCP_PORT must be a whole number from 1 to 65535 (got 0): fix it in .env or the environment.",
        ),
        ({}, ("--transport", "stdio"), "--transport must be streamable-http or sse (got 'stdio')."),
        (
            {"MCP_TRANSPORT": "stdio"},
            (),
            "MCP_TRANSPORT must be streamable-http or sse (got 'stdio'): fix it in .env or the environment.",
        ),
        (
            {"MCP_GITHUB_URL": "github.com"},
            (),
            "MCP_GITHUB_URL must be an https:// or http:// URL (got 'github.com'): fix it in .env or the environment.",
        ),
        (
            {"MCP_READ_ONLY": "maybe"},
            (),
            "MCP_READ_ONLY must be true or false (got 'maybe'): fix it in .env or the environment.",
        ),
        (
            {"MCP_ACCESS_TOKEN_SECONDS": "5"},
            (),
            "MCP_ACCESS_TOKEN_SECONDS must be a whole number of at least 60 (got 5): "
            "fix it in .env or the environment.",
        ),
        (
            {"MCP_RATE_LIMIT": "lots"},
            (),
            "MCP_RATE_LIMIT must be a rate such as 60/minute or 1000/hour (got 'lots'): "
            "fix it in .env or the environment.",
        ),
        (
            {"MCP_TRUSTED_PROXIES": "10.0.0.0/8, proxy"},
            (),
            "MCP_TRUSTED_PROXIES must be comma-separated IP addresses or networks, such as 10.0.0.0/8,192.0.2.7 "
            "(got '10.0.0.0/8, proxy'): fix it in .env or the environment.",
        ),
    ],
    ids=[
        "port-flag-0",
        "port-flag-word",
        "port-setting-0",
        "transport-flag",
        "transport-setting",
        "url",
        "bool",
        "at-least",
        "rate",
        "proxies",
    ],
)
def test_a_bad_value_is_a_plain_sentence_naming_where_it_came_from(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...], sentence: str
) -> None:
    assert one_line(run_main(tmp_path, KEYED | env, *args)) == f"Configuration error: {sentence}"


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        (
            {},
            "MCP_GITHUB_CLIENT_ID is not set: create a GitHub OAuth App (see README) and put its client ID in .env, "
            "or try `uv run main.py --demo`, which needs none.",
        ),
        (
            {"MCP_GITHUB_CLIENT_ID": "id"},
            "MCP_GITHUB_CLIENT_SECRET is not set: generate a client secret for your GitHub OAuth App and put it in "
            ".env, or try `uv run main.py --demo`, which needs none.",
        ),
    ],
    ids=["client-id", "client-secret"],
)
def test_missing_credentials_point_to_the_demo(tmp_path: Path, env: dict[str, str], sentence: str) -> None:
    assert one_line(run_main(tmp_path, env)) == f"Configuration error: {sentence}"


USERS = "comma-separated GitHub logins or numeric ids, such as alice,bob"
ORGS = "comma-separated GitHub organisation logins, such as acme,octo-org"


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("MCP_ALLOWED_GITHUB_USERS", "alice bob", USERS),
        ("MCP_ALLOWED_GITHUB_USERS", '["alice", "bob"]', USERS),
        ("MCP_ALLOWED_GITHUB_USERS", '"alice"', USERS),
        ("MCP_ALLOWED_GITHUB_USERS", "@alice", USERS),
        ("MCP_ALLOWED_GITHUB_ORGS", "acme corp", ORGS),
        ("MCP_ALLOWED_GITHUB_ORGS", '["acme"]', ORGS),
    ],
)
def test_allow_lists_refuse_what_is_not_a_login(tmp_path: Path, setting: str, value: str, expected: str) -> None:
    line = one_line(run_main(tmp_path, KEYED | {setting: value}))
    assert (
        line == f"Configuration error: {setting} must be {expected} (got {value!r}): fix it in .env or the environment."
    )


@pytest.mark.parametrize(
    "entry", ["-alice", "alice-", "al--ice", "a" * 40, "alice_b", "alice.b", "élise", "alice/bob", "org:acme"]
)
def test_allow_lists_follow_githubs_login_rules(monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    monkeypatch.chdir(Path(__file__).parent)  # no .env
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    for setting in ("MCP_ALLOWED_GITHUB_USERS", "MCP_ALLOWED_GITHUB_ORGS"):
        monkeypatch.setenv(setting, f"alice,{entry}")
        with pytest.raises(ConfigError, match=setting):
            load_settings()
        monkeypatch.delenv(setting)


def test_allow_lists_admit_logins_and_user_ids() -> None:
    settings = Settings(
        github_client_id="id",
        github_client_secret="s",  # type: ignore[arg-type]
        allowed_github_users=f"alice, Bob-Smith,583231,{'a' * 39},7-7",  # type: ignore[arg-type]
        allowed_github_orgs="octo-org,GitHub,42",  # type: ignore[arg-type]
    )
    assert settings.allowed_github_users == ["alice", "Bob-Smith", "583231", "a" * 39, "7-7"]
    assert settings.allowed_github_orgs == ["octo-org", "GitHub", "42"]


def test_the_resolved_store_path_is_logged(github_url: str, tmp_path: Path) -> None:
    # sqlite:/// and a relative path: relative to the working directory (the data directory here).
    with running_server(github_url, tmp_path, env={"MCP_STORAGE_URL": "sqlite:///store/mcp.sqlite3"}) as server:
        log = server.log()
    assert f"INFO mcp_server: Store: SQLite at {tmp_path.resolve() / 'store' / 'mcp.sqlite3'}\n" in log, log
    assert (tmp_path / "store" / "mcp.sqlite3").exists()


def test_store_descriptions_are_absolute_and_keep_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert store_description("sqlite:///data/x.db") == f"SQLite at {tmp_path.resolve()}/data/x.db"
    assert store_description("sqlite:////data/x.db") == "SQLite at /data/x.db"
    assert store_description("redis://:hunter2@cache.internal:6380/2") == "Redis at cache.internal:6380/2"
    assert store_description("rediss://user:hunter2@[::1]") == "Redis at [::1]:6379/0 (TLS)"
