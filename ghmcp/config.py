"""Configuration: every setting is an `MCP_*` environment variable, also read from `.env`.

`config_loading.load_settings` turns any problem into one sentence naming the setting and the fix, so a
newcomer never has to read a pydantic traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Transport = Literal["streamable-http", "sse"]

CommaList = Annotated[list[str], NoDecode]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
HOUR = 3600
DAY = 24 * HOUR
COMMON: dict[str, Any] = {"common": True}
# The command-line flags that set a setting: an error in a value given as a flag names the flag.
FLAGS = {"host": "--host", "port": "--port", "transport": "--transport", "stateless_http": "--stateless"}
# GitHub's rule for logins: letters, digits and single hyphens, neither first nor last, at most 39 characters.
GITHUB_LOGIN = re.compile(r"(?=.{1,39}$)[A-Za-z0-9](?:-?[A-Za-z0-9])*")
# `owner/*` or `owner/repo` (a repository name is [A-Za-z0-9_.-], not "." or "..").
REPOSITORY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/(?:\*|(?!\.\.?$)[A-Za-z0-9_.-]{1,100})")


class ConfigError(Exception):
    """A configuration problem, worded as one sentence for the person starting the server."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MCP_", env_file=".env", extra="ignore")

    # Fields marked COMMON are the ones most deployments set: the README and .env.example show them first.
    # Every description is the settings reference (docs/settings.md and .env.example are generated
    # from this class: `uv run python -m ghmcp.config_docs`).
    github_client_id: str = Field(
        min_length=1, description="Client ID of your GitHub OAuth App", json_schema_extra=COMMON
    )
    github_client_secret: SecretStr = Field(
        description="Client secret of your GitHub OAuth App", json_schema_extra=COMMON
    )
    server_url: str = Field(
        default="",
        description="Public origin clients connect to (issuer, resource, `<url>/github/callback`); https unless "
        "on localhost. Default `http://localhost:<port>`",
        json_schema_extra=COMMON,
    )
    app_name: str = Field(
        default="GitHub MCP Server", description="Shown on the pages and to MCP clients", json_schema_extra=COMMON
    )
    host: str = Field(default="127.0.0.1", description="Bind address (`--host`)", json_schema_extra=COMMON)
    port: int = Field(default=8000, ge=1, le=65535, description="Port (`--port`)", json_schema_extra=COMMON)
    storage_url: str = Field(
        default="sqlite:///./data/mcp.sqlite3",
        description="The store. SQLite: `sqlite:///data/mcp.sqlite3` (three slashes) is relative to the working "
        "directory, `sqlite:////var/lib/mcp/mcp.sqlite3` (four) is absolute; the resolved path is logged at start. "
        "Redis 7+ for replicas: `redis://HOST:PORT/DB`, `rediss://:PASSWORD@HOST:PORT/DB` (TLS)",
        json_schema_extra=COMMON,
    )
    redis_ca_file: str = Field(
        default="",
        description="PEM file of the CA that signed the Redis server's certificate, for a `rediss://` store whose "
        "CA is not among the system's (a private CA); empty uses the system's CAs",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Encrypts GitHub tokens and client secrets, signs cookies; comma-separated ring, newest first, "
        "each >= 32 characters (`new,old` rotates). Generated next to a SQLite store when unset; required with Redis",
        json_schema_extra=COMMON,
    )
    allowed_github_users: CommaList = Field(
        default=[],
        description="Comma-separated GitHub logins or numeric user ids admitted (`alice,bob,583231`); "
        "empty admits everyone",
        json_schema_extra=COMMON,
    )
    allowed_github_orgs: CommaList = Field(
        default=[],
        description="Comma-separated GitHub organisation logins whose members are admitted (`acme,octo-org`)",
        json_schema_extra=COMMON,
    )
    allowed_repositories: CommaList = Field(
        default=[],
        description="Comma-separated `owner/*` and `owner/repo` patterns bounding every sign-in's repositories, "
        "on top of what each user chose; empty: no bound",
        json_schema_extra=COMMON,
    )
    read_only: bool = Field(
        default=False, description="`true`: write tools are neither listed nor callable", json_schema_extra=COMMON
    )
    tools: CommaList = Field(default=[], description="Comma-separated tool names: only these are listed and callable")
    confirm_writes: bool = Field(
        default=True,
        description="`true`: a write tool acts only after the user confirms the exact action in their client"
        " (form elicitation). On by default so that a prompt-injected model cannot write as the user unseen;"
        " `false` for trusted automation with no human to ask",
        json_schema_extra=COMMON,
    )

    transport: Transport = Field(default="streamable-http", description="`streamable-http` or `sse` (`--transport`)")
    stateless_http: bool = Field(
        default=False, description="Streamable HTTP without in-memory sessions, so any replica answers (`--stateless`)"
    )
    github_url: str = Field(
        default="https://github.com", description="GitHub's OAuth pages (GitHub Enterprise Server: `https://HOST`)"
    )
    github_api_url: str = Field(
        default="https://api.github.com",
        description="GitHub's REST API (GitHub Enterprise Server: `https://HOST/api/v3`)",
    )
    # RFC 8252 §7.1 private-use schemes.
    allowed_redirect_schemes: CommaList = Field(
        default=["cursor", "vscode", "vscode-insiders"],
        description="App-link schemes clients may register as redirect URIs",
    )
    consent_always_ask: bool = Field(
        default=False, description="Ask for consent on every sign-in, even for a known client"
    )
    consent_remember_seconds: int = Field(default=30 * DAY, ge=0, description="How long a consent is remembered")

    access_token_seconds: int = Field(default=HOUR, ge=60, description="Lifetime of an MCP access token")
    refresh_token_seconds: int = Field(default=30 * DAY, ge=HOUR, description="Lifetime of an MCP refresh token")
    code_seconds: int = Field(default=300, ge=30, le=600, description="Lifetime of an authorization code")
    consent_seconds: int = Field(
        default=300, ge=30, le=3600, description="A pending sign-in waiting on the consent page"
    )
    state_seconds: int = Field(
        default=600,
        ge=60,
        le=3600,
        description="The GitHub round trip after Approve (never past the consent deadline plus this)",
    )
    sign_in_max_seconds: int = Field(
        default=90 * DAY, ge=HOUR, description="Absolute lifetime of a sign-in across all its refreshes"
    )
    refresh_grace_seconds: int = Field(
        default=30,
        ge=0,
        le=300,
        description="A retried refresh gets the same new pair within this window; `0` turns it off",
    )
    unused_client_seconds: int = Field(
        default=DAY, ge=60, description="A registered client never used is removed after this"
    )
    idle_client_seconds: int = Field(default=90 * DAY, ge=HOUR, description="A client unused for this long is removed")
    max_pending_authorizations: int = Field(default=10_000, ge=10, description="Sign-ins under way, in total")
    max_pending_per_client: int = Field(
        default=20, ge=1, description="Sign-ins under way per client and per client address (5x that per IPv6 /48)"
    )
    sweep_interval_seconds: int = Field(default=300, ge=1, description="How often expired rows are deleted")
    cimd_allow_http_loopback: bool = Field(
        default=False, description="Local development only: admit `http://127.0.0.1:PORT/...` client metadata documents"
    )

    rate_limit: str = Field(
        default="60/minute", description="Requests per client address to the OAuth and page endpoints"
    )
    registration_rate_limit: str = Field(default="20/hour", description="Client registrations per client address")
    trusted_proxies: CommaList = Field(default=[], description="IPs or CIDRs whose `X-Forwarded-For` is believed")

    max_file_bytes: int = Field(
        default=100_000, ge=1, le=10_000_000, description="The most text `get_file_contents` returns (the rest is cut)"
    )
    github_cache_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=0,
        description="Per-process cache of GitHub answers for ETag revalidation; `0` is off",
    )
    github_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=25,  # below upstream.grants.REFRESH_LEASE_SECONDS, so a refresh ends before its lease does
        description="The most one request to GitHub may take, its one retry included; past it the tool or "
        "sign-in says GitHub did not answer",
    )
    audit_log: str = Field(
        default="", description="`stdout` or a file path: one JSON line per security event; empty is off"
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the Prometheus metrics endpoint (`/metrics`, docs/observability.md); unset is off",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Bind address of the metrics endpoint: loopback unless set otherwise"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="`json`: one JSON object per log line, with the trace id inside a traced request"
    )
    # Set by `main.py --demo` only (load_settings never reads it from the environment).
    demo: bool = Field(default=False, exclude=True, description="Demo mode: set by `--demo`")

    @field_validator(
        "allowed_redirect_schemes",
        "allowed_github_users",
        "allowed_github_orgs",
        "allowed_repositories",
        "trusted_proxies",
        "tools",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    # A field validator's ValueError says what the value must be: load_settings makes the sentence.
    @field_validator("github_url", "github_api_url", "server_url")
    @classmethod
    def _plain_base_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("an https:// or http:// URL")
        return value.rstrip("/")

    @field_validator("allowed_github_users", "allowed_github_orgs")
    @classmethod
    def _github_logins(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not all(GITHUB_LOGIN.fullmatch(entry) for entry in value):
            if info.field_name == "allowed_github_users":
                raise ValueError("comma-separated GitHub logins or numeric ids, such as alice,bob")
            raise ValueError("comma-separated GitHub organisation logins, such as acme,octo-org")
        return value

    @field_validator("allowed_repositories")
    @classmethod
    def _repository_patterns(cls, value: list[str]) -> list[str]:
        if not all(REPOSITORY_PATTERN.fullmatch(entry) for entry in value):
            raise ValueError("comma-separated owner/* or owner/repository patterns, such as octo-org/*,alice/notes")
        return value

    @field_validator("rate_limit", "registration_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError("a rate such as 60/minute or 1000/hour") from exc
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        try:
            for network in value:
                ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError("comma-separated IP addresses or networks, such as 10.0.0.0/8,192.0.2.7") from None
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

    @field_validator("redis_ca_file")
    @classmethod
    def _readable_file(cls, value: str) -> str:
        if value and not os.access(value, os.R_OK):
            raise ValueError("a readable PEM file")
        return value

    @model_validator(mode="after")
    def _ca_file_for_tls(self) -> Settings:
        if self.redis_ca_file and not self.storage_url.startswith("rediss://"):
            raise ValueError("MCP_REDIS_CA_FILE is for a TLS store: unset it, or use a rediss:// MCP_STORAGE_URL")
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
