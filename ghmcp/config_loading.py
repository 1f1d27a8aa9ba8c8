"""Loading the settings: any problem becomes one sentence naming the flag or setting that gave the value.

A newcomer never reads a pydantic traceback or pydantic's wording: `Settings`' validators say
what a value must be, and this module makes the sentence.
"""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ghmcp.config import FLAGS, ConfigError, Settings

_DEMO_HINT = ", or try `uv run main.py --demo`, which needs none"
_FIXES = {
    "github_client_id": "create a GitHub OAuth App (see README) and put its client ID in .env" + _DEMO_HINT,
    "github_client_secret": "generate a client secret for your GitHub OAuth App and put it in .env" + _DEMO_HINT,
}
_NEVER_QUOTED = ("github_client_secret", "secret_key", "storage_url")  # they may hold a password


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `.env`; CLI flags (FLAGS) and `--demo` arrive as `overrides`.
    A problem becomes one sentence naming the flag or setting that gave the value."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        # MCP_DEMO is not a setting: demo mode is `--demo`, which also makes its throw-away store.
        return Settings(**({"demo": False} | given))
    except ValidationError as exc:
        error = exc.errors()[0]
    if not error["loc"]:  # a cross-field check, whose message already names the setting
        raise ConfigError(str(error["msg"]).removeprefix("Value error, ") + ".")
    field = str(error["loc"][0])
    if error["type"] == "missing" or (field in _FIXES and error["type"] == "string_too_short"):
        raise ConfigError(f"MCP_{field.upper()} is not set: {_FIXES.get(field, 'set it in .env (see .env.example)')}.")
    got = "" if field in _NEVER_QUOTED else f" (got {_quoted(error['input'])})"
    if field in FLAGS and field in given:
        raise ConfigError(f"{FLAGS[field]} must be {_expected(field, error)}{got}.")
    raise ConfigError(f"MCP_{field.upper()} must be {_expected(field, error)}{got}: fix it in .env or the environment.")


def _expected(field: str, error: ErrorDetails) -> str:
    """What a value of `field` must be, in words rather than pydantic's."""
    info = Settings.model_fields[field]
    if error["type"] == "value_error":  # our validators say it themselves
        return str(error["ctx"]["error"])
    if error["type"] == "bool_parsing":
        return "true or false"
    if error["type"] == "literal_error":
        return " or ".join(get_args(info.annotation))
    if error["type"] in ("int_parsing", "greater_than_equal", "less_than_equal"):
        low, high = (
            next((getattr(m, bound) for m in info.metadata if hasattr(m, bound)), None) for bound in ("ge", "le")
        )
        return f"a whole number from {low} to {high}" if high is not None else f"a whole number of at least {low}"
    return "a value described in docs/settings.md"


def _quoted(value: Any) -> str:
    return str(value) if re.fullmatch(r"-?\d+", str(value)) else repr(str(value))
