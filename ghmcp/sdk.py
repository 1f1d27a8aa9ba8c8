"""The one place this project reads the SDK's private parts; tests/test_sdk_adapter.py pins them.

`MCPServer`'s listing methods are async, but the startup checks (every tool declares a scope) and
the tool selection (MCP_TOOLS, MCP_READ_ONLY) run while the app is built, outside any event loop.
So they read the SDK's managers, which hold the same lists. `mcp` 2.x may rename them in a minor
release: the pin test then fails loudly, and only this module needs to change.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.server.mcpserver.resources import Resource, ResourceTemplate
from mcp.server.mcpserver.tools import Tool


def tools(mcp: MCPServer) -> list[Tool]:
    return mcp._tool_manager.list_tools()


def tool(mcp: MCPServer, name: str) -> Tool | None:
    """One tool by name without building the list: read on every `tools/call` (ghmcp/auth/confirm.py)."""
    return mcp._tool_manager.get_tool(name)


def prompts(mcp: MCPServer) -> list[Prompt]:
    return mcp._prompt_manager.list_prompts()


def resources(mcp: MCPServer) -> list[Resource]:
    return mcp._resource_manager.list_resources()


def resource_templates(mcp: MCPServer) -> list[ResourceTemplate]:
    return mcp._resource_manager.list_templates()
