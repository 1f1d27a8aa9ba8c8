"""The server's identity to MCP clients: its version, and light and dark icons on the server and on
every tool, served by the server itself without sign-in."""

from __future__ import annotations

import tomllib
from typing import Any

import httpx2
import pytest

from ghmcp.web.identity import VERSION
from tests.fake_github import FakeGitHub
from tests.support import ROOT, ServerProcess, sign_in_tokens, signed_in_client

pytestmark = pytest.mark.anyio

MAGIC = {"image/svg+xml": b"<svg ", "image/png": b"\x89PNG\r\n\x1a\n"}


def assert_both_themes_on_this_server(icons: list[dict[str, Any]], server: ServerProcess) -> None:
    assert {(i["theme"], i["mimeType"]) for i in icons} == {
        (theme, media) for theme in ("light", "dark") for media in ("image/svg+xml", "image/png")
    }
    assert all(i["src"].startswith(f"{server.url}/icons/") for i in icons), icons


def test_the_version_is_the_projects() -> None:
    assert VERSION == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


async def test_discovery_and_tools_list_carry_both_icons(module_server: ServerProcess, github: FakeGitHub) -> None:
    async with signed_in_client(module_server) as client:
        tools = (await client.list_tools()).tools
        info = client.server_info
    assert info is not None and info.version == VERSION
    assert_both_themes_on_this_server([i.model_dump(by_alias=True) for i in info.icons or []], module_server)
    for tool in tools:
        assert_both_themes_on_this_server([i.model_dump(by_alias=True) for i in tool.icons or []], module_server)


async def test_a_legacy_initialize_carries_both_icons(module_server: ServerProcess, github: FakeGitHub) -> None:
    bearer = (await sign_in_tokens(module_server)).access
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(module_server.mcp_url, json=body, headers=headers)
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        response = httpx2.Response(200, content=response.text.split("data:", 1)[1].split("\n", 1)[0])
    server_info = response.json()["result"]["serverInfo"]
    assert server_info["version"] == VERSION
    assert_both_themes_on_this_server(server_info["icons"], module_server)


async def test_the_icon_urls_answer_without_sign_in_and_are_cacheable(
    module_server: ServerProcess, github: FakeGitHub
) -> None:
    async with signed_in_client(module_server) as client:
        icons = (client.server_info.icons if client.server_info else None) or []
    assert len(icons) == 4
    async with httpx2.AsyncClient(timeout=10) as http:
        for icon in icons:
            response = await http.get(icon.src)
            assert response.status_code == 200, icon.src
            assert response.headers["content-type"].split(";")[0] == icon.mime_type
            assert response.headers["cache-control"] == "public, max-age=86400"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.content.startswith(MAGIC[icon.mime_type or ""])
            assert len(response.content) < 4096
        unknown = await http.get(f"{module_server.url}/icons/other.svg")
    assert unknown.status_code == 404
