"""ghmcp/sdk.py reads the SDK's private managers: fail loudly, here, if an `mcp` release renames them."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.server.mcpserver import MCPServer

from ghmcp import sdk

pytestmark = pytest.mark.anyio


async def test_the_adapter_sees_what_the_sdk_lists() -> None:
    mcp = MCPServer("pin")
    mcp.tool(name="a_tool")(lambda: "ok")
    mcp.prompt(name="a_prompt")(lambda: "hello")
    mcp.resource("test://static", name="static")(lambda: "text")
    mcp.resource("test://item/{name}", name="item")(lambda name: name)

    assert [t.name for t in sdk.tools(mcp)] == [t.name for t in await mcp.list_tools()] == ["a_tool"]
    assert (found := sdk.tool(mcp, "a_tool")) is not None and found.name == "a_tool"
    assert sdk.tool(mcp, "no_tool") is None
    assert [p.name for p in sdk.prompts(mcp)] == [p.name for p in await mcp.list_prompts()] == ["a_prompt"]
    assert [str(r.uri) for r in sdk.resources(mcp)] == [str(r.uri) for r in await mcp.list_resources()]
    assert [t.uri_template for t in sdk.resource_templates(mcp)] == ["test://item/{name}"]
    assert [t.uri_template for t in await mcp.list_resource_templates()] == ["test://item/{name}"]


def test_no_other_module_reads_private_sdk_attributes() -> None:
    """Everything else goes through the adapter, so an SDK change has one place to land."""
    root = Path(__file__).resolve().parent.parent
    sources = [*root.glob("*.py"), *root.glob("tools/*.py"), *root.glob("ghmcp/**/*.py")]
    private = ("._tool_manager", "._prompt_manager", "._resource_manager", "._lowlevel_server")
    readers = sorted(str(p.relative_to(root)) for p in sources if any(name in p.read_text() for name in private))
    assert readers == ["ghmcp/sdk.py"]
