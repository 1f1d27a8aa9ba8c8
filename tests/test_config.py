"""Bad configuration stops the server with exit code 2 and one sentence naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ghmcp.config import Settings
from ghmcp.config_loading import load_settings
from tests.support import ROOT

BASE = {"MCP_GITHUB_CLIENT_ID": "id", "MCP_GITHUB_CLIENT_SECRET": "secret"}


def run_main(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MCP_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=tmp_path,  # no .env here
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("env", "args", "setting"),
    [
        ({}, (), "MCP_GITHUB_CLIENT_ID"),
        ({"MCP_GITHUB_CLIENT_ID": "id"}, (), "MCP_GITHUB_CLIENT_SECRET"),
        (BASE | {"MCP_PORT": "eighty"}, (), "MCP_PORT"),
        (BASE | {"MCP_SERVER_URL": "http://mcp.example.com"}, (), "MCP_SERVER_URL"),
        (BASE | {"MCP_SERVER_URL": "https://mcp.example.com/sub"}, (), "MCP_SERVER_URL"),
        (BASE | {"MCP_GITHUB_URL": "github.com"}, (), "MCP_GITHUB_URL"),
        (BASE | {"MCP_STORAGE_URL": "postgres://db/mcp"}, (), "MCP_STORAGE_URL"),
        (BASE | {"MCP_STORAGE_URL": "redis://:secret@localhost:port/0"}, (), "MCP_STORAGE_URL"),
        (BASE | {"MCP_RATE_LIMIT": "lots"}, (), "MCP_RATE_LIMIT"),
        (BASE | {"MCP_ACCESS_TOKEN_SECONDS": "5"}, (), "MCP_ACCESS_TOKEN_SECONDS"),
        (BASE | {"MCP_REGISTRATION_RATE_LIMIT": "often"}, (), "MCP_REGISTRATION_RATE_LIMIT"),
        (BASE | {"MCP_TRUSTED_PROXIES": "10.0.0.0/8, not-an-address"}, (), "MCP_TRUSTED_PROXIES"),
        (BASE | {"MCP_SECRET_KEY": "x"}, (), "MCP_SECRET_KEY"),
        (BASE | {"MCP_SECRET_KEY": ""}, (), "MCP_SECRET_KEY"),
        (BASE | {"MCP_SECRET_KEY": "k" * 40 + ",short"}, (), "MCP_SECRET_KEY"),
        (BASE | {"MCP_SIGN_IN_MAX_SECONDS": "60"}, (), "MCP_SIGN_IN_MAX_SECONDS"),
    ],
)
def test_bad_configuration_is_one_clear_sentence(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...], setting: str
) -> None:
    result = run_main(tmp_path, env, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]
    assert "Traceback" not in result.stderr
    assert "secret@" not in result.stderr
    assert not any(pydantic in lines[0] for pydantic in ("Input should", "Value error", "String should")), lines[0]


@pytest.mark.parametrize(
    ("args", "flag"),
    [(("--transport", "stdio"), "--transport"), (("--log-level", "loud"), "--log-level"), (("--prot", "80"), "--prot")],
)
def test_bad_cli_flag_is_refused_in_one_line(tmp_path: Path, args: tuple[str, ...], flag: str) -> None:
    result = run_main(tmp_path, BASE, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], result.stderr


def test_cli_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT / "tests")  # no .env
    for key, value in (BASE | {"MCP_PORT": "9000"}).items():
        monkeypatch.setenv(key, value)
    settings = load_settings(port=9100, transport="sse", host=None)
    assert settings.port == 9100
    assert settings.server_url == "http://localhost:9100"
    assert settings.resource_url == "http://localhost:9100/sse"


def test_lists_are_comma_separated() -> None:
    settings = Settings(
        github_client_id="id",
        github_client_secret="s",  # type: ignore[arg-type]
        allowed_github_users="alice, bob,,",  # type: ignore[arg-type]
    )
    assert settings.allowed_github_users == ["alice", "bob"]


def test_mcp_demo_in_the_environment_is_not_demo_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # Demo mode is `--demo` only: it also makes the throw-away store and points GitHub at the stand-in.
    monkeypatch.chdir(ROOT / "tests")  # no .env
    for key, value in (BASE | {"MCP_DEMO": "true"}).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.demo is False
    assert settings.github_url == "https://github.com"
