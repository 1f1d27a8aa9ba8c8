"""The MCP tools. Start here: add yours to the module of its subject, or drop a new module here.

Every module in this folder with a `register(mcp, github)` function is loaded at start, in name
order: a new tool needs one file and nothing else.

A tool takes three lines more than a plain async function: the scope it needs, its hints, and
the GitHub call made with the caller's own token.

    @scoped_tool(mcp, "repo:read", annotations=READ)
    async def count_my_repositories() -> int:
        return len(await github.call(lambda token: github.api.list_repos(token, per_page=100, page=1)))

`github.call` turns every GitHub failure into a tool error the user can act on. `github.api`
(ghmcp/upstream/api.py) builds URLs from path segments (`api.get(token, ("repos", owner, repo))`),
caches and revalidates GETs, and respects rate limits. Return a Pydantic model for structured
output; keep text other people wrote in its own fields. A tool registered without
`scoped_tool` stops the server at startup.

    users.py   get_user_profile
    repos.py   list_my_repositories, get_repository, get_file_contents, search_repositories, star_repository
    issues.py  list_issues, get_issue, create_issue, add_issue_comment
    pulls.py   list_pull_requests, get_pull_request

`core.py` holds what they share; `arguments.py` (no tools) turns a bad argument into one sentence.
"""

from __future__ import annotations

import importlib
import pkgutil

from mcp.server.mcpserver import MCPServer

from ghmcp import sdk
from ghmcp.auth.scopes import TOOL_SCOPES
from ghmcp.config import ConfigError, Settings
from github_provider import GitHubOAuthProvider
from tools.core import READ, GitHubCaller, audit_tools, scoped_tool

__all__ = ["READ", "GitHubCaller", "register_tools", "scoped_tool"]


def register_tools(mcp: MCPServer, provider: GitHubOAuthProvider) -> None:
    github = GitHubCaller(provider)
    for found in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{found.name}")
        if callable(getattr(module, "register", None)):
            module.register(mcp, github)
    select_tools(mcp, provider.settings)
    audit_tools(mcp, provider)


def select_tools(mcp: MCPServer, settings: Settings) -> None:
    """MCP_TOOLS and MCP_READ_ONLY: a tool left out is neither listed nor callable."""
    tools = {tool.name: tool for tool in sdk.tools(mcp)}
    unknown = [name for name in settings.tools if name not in tools]
    if unknown:
        raise ConfigError(f"MCP_TOOLS names an unknown tool {unknown[0]!r}: the tools are {', '.join(tools)}.")
    for name, tool in tools.items():
        writes = not (tool.annotations and tool.annotations.read_only_hint)
        if settings.read_only and writes and name in settings.tools:
            raise ConfigError(f"MCP_TOOLS names {name!r}, a write tool, but MCP_READ_ONLY=true hides write tools.")
        if (settings.read_only and writes) or (settings.tools and name not in settings.tools):
            mcp.remove_tool(name)
            TOOL_SCOPES.pop(name, None)
