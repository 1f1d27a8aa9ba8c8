"""The settings reference (docs/settings.md), `.env.example` and `Settings` agree (issue 16)."""

from __future__ import annotations

import re

from ghmcp import config_docs
from ghmcp.config import Settings

FIX = "run `uv run python -m ghmcp.config_docs` and commit the result"


def test_the_reference_is_generated_from_settings() -> None:
    assert config_docs.REFERENCE.read_text() == config_docs.reference(), FIX


def test_env_example_is_generated_from_settings() -> None:
    assert config_docs.ENV_EXAMPLE.read_text() == config_docs.env_example(), FIX


def test_every_setting_is_described_and_listed_once_in_both() -> None:
    names = {f"MCP_{name.upper()}" for name, info in Settings.model_fields.items() if not info.exclude}
    assert all(info.description for info in Settings.model_fields.values())
    in_env = re.findall(r"^(?:# )?(MCP_[A-Z_]+)=", config_docs.ENV_EXAMPLE.read_text(), re.M)
    in_reference = re.findall(r"^\| `(MCP_[A-Z_]+)`", config_docs.REFERENCE.read_text(), re.M)
    assert sorted(in_env) == sorted(in_reference) == sorted(names)
    assert "MCP_APP_NAME" in names
