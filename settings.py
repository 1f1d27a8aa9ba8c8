"""Configuration: every setting is an `MCP_*` environment variable, also read from `.env`.

`load_settings` turns any problem into one sentence naming the setting and the fix, so a
newcomer never has to read a pydantic traceback.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Transport = Literal["streamable-http", "sse"]

CommaList = Annotated[list[str], NoDecode]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
HOUR = 3600
DAY = 24 * HOUR


class ConfigError(Exception):
    """A configuration problem, worded as one sentence for the person starting the server."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MCP_", env_file=".env", extra="ignore")

    app_name: str = "GitHub MCP Server"
    github_client_id: str = Field(min_length=1)
    github_client_secret: SecretStr
    github_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    server_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    transport: Transport = "streamable-http"
    stateless_http: bool = False  # Streamable HTTP without in-memory sessions: any replica answers any request
    storage_url: str = "sqlite:///./data/mcp.sqlite3"
    secret_key: SecretStr | None = None
    # Custom URI schemes a client may register as redirect target (RFC 8252 §7.1 private-use schemes).
    allowed_redirect_schemes: CommaList = ["cursor", "vscode", "vscode-insiders"]

    consent_always_ask: bool = False
    consent_remember_seconds: int = Field(default=30 * DAY, ge=0)
    allowed_github_users: CommaList = []
    allowed_github_orgs: CommaList = []

    access_token_seconds: int = Field(default=HOUR, ge=60)
    refresh_token_seconds: int = Field(default=30 * DAY, ge=HOUR)
    code_seconds: int = Field(default=300, ge=30, le=600)
    consent_seconds: int = Field(default=300, ge=30, le=3600)
    state_seconds: int = Field(default=600, ge=60, le=3600)
    sign_in_max_seconds: int = Field(default=90 * DAY, ge=HOUR)
    refresh_grace_seconds: int = Field(default=30, ge=0, le=300)
    unused_client_seconds: int = Field(default=DAY, ge=60)
    idle_client_seconds: int = Field(default=90 * DAY, ge=HOUR)
    max_pending_authorizations: int = Field(default=10_000, ge=10)
    max_pending_per_client: int = Field(default=20, ge=1)
    sweep_interval_seconds: int = Field(default=300, ge=1)

    # Client ID Metadata Documents over http on loopback: for developing a client locally, never in production.
    cimd_allow_http_loopback: bool = False

    rate_limit: str = "60/minute"
    registration_rate_limit: str = "20/hour"
    trusted_proxies: CommaList = []

    # Tools (tools/)
    read_only: bool = False  # write tools are neither listed nor callable
    tools: CommaList = []  # only these tools are listed and callable; empty means all
    max_file_bytes: int = Field(default=100_000, ge=1, le=10_000_000)  # get_file_contents returns at most this
    github_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0)  # per-process ETag cache of GitHub answers

    # Demo mode and audit log (demo.py, audit.py)
    demo: bool = False  # set by `main.py --demo`: GitHub is the built-in stand-in, on loopback only
    audit_log: str = ""  # "stdout" or a file path: one JSON line per security event; empty is off

    @field_validator(
        "allowed_redirect_schemes",
        "allowed_github_users",
        "allowed_github_orgs",
        "trusted_proxies",
        "tools",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("github_url", "github_api_url", "server_url")
    @classmethod
    def _plain_base_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("rate_limit", "registration_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError("must look like '60/minute'") from exc
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # a ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _default_server_url(self) -> Settings:
        if not self.server_url:
            self.server_url = f"http://localhost:{self.port}"
        parts = urlsplit(self.server_url)
        # RFC 8414 §2: the issuer is https, except on loopback for local development.
        if parts.scheme != "https" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError("MCP_SERVER_URL must be https unless it is on localhost: fix it in .env")
        if parts.path or parts.query or parts.fragment:
            raise ValueError("MCP_SERVER_URL must be an origin such as https://mcp.example.com, without a path")
        if self.cimd_allow_http_loopback and (parts.hostname not in LOOPBACK_HOSTS or self.host not in LOOPBACK_HOSTS):
            # SSRF: fetches from loopback only for a developer's own machine, where nobody else can ask for them.
            raise ValueError(
                "MCP_CIMD_ALLOW_HTTP_LOOPBACK is for local development only: "
                "unset it, or serve on localhost only (MCP_HOST or --host, and MCP_SERVER_URL)"
            )
        return self

    @model_validator(mode="after")
    def _demo_on_loopback(self) -> Settings:
        if not self.demo:
            return self
        if self.host not in LOOPBACK_HOSTS or urlsplit(self.server_url).hostname not in LOOPBACK_HOSTS:
            # The stand-in lets anyone sign in as anyone: it must not be reachable from other machines.
            raise ValueError(
                "--demo serves on loopback only: drop --host, MCP_HOST and MCP_SERVER_URL, or set them to localhost"
            )
        host = "[::1]" if self.host == "::1" else "127.0.0.1"
        self.github_url = self.github_api_url = f"http://{host}:{self.port}/demo-github"
        return self

    @property
    def https(self) -> bool:
        return self.server_url.startswith("https://")

    @property
    def callback_url(self) -> str:
        return f"{self.server_url}/github/callback"

    @property
    def resource_url(self) -> str:
        """RFC 8707 resource indicator of the MCP endpoint this process serves."""
        return f"{self.server_url}/mcp" if self.transport == "streamable-http" else f"{self.server_url}/sse"


_FIXES = {
    "github_client_id": "create a GitHub OAuth App (see README) and put its client ID in .env",
    "github_client_secret": "generate a client secret for your GitHub OAuth App and put it in .env",
}


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `.env`; CLI flags arrive as `overrides`."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        if not error["loc"]:  # a cross-field check, whose message already names the setting
            raise ConfigError(str(error["msg"]).removeprefix("Value error, ") + ".") from None
        field = str(error["loc"][0])
        name = f"MCP_{field.upper()}"
        if error["type"] == "missing" or (field in _FIXES and error["type"] == "string_too_short"):
            fix = _FIXES.get(field, "set it in .env (see .env.example)")
            raise ConfigError(f"{name} is not set: {fix}.") from None
        raise ConfigError(f"{name} is invalid ({error['msg']}): fix it in .env or the environment.") from None
