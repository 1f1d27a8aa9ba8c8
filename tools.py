"""The MCP tools. Add yours here.

A tool declares the MCP scope it needs with `@scoped_tool(mcp, "<scope>")` (scopes.py holds
the vocabulary), and reaches GitHub with `await github.call(...)`, which uses the caller's own
GitHub token and turns every GitHub failure into a tool error the user can act on.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from github_api import GitHubError, GitHubUnauthorized
from github_provider import GitHubAccessToken, GitHubOAuthProvider, ReconnectRequired
from scopes import TOOL_SCOPES

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

RECONNECT = "Your GitHub sign-in is no longer valid. Reconnect this server in your MCP client to sign in again."
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class UserProfile(BaseModel):
    id: int
    login: str
    name: str | None = None
    email: str | None = None
    avatar_url: str | None = None
    html_url: str | None = None
    company: str | None = None
    blog: str | None = None
    location: str | None = None
    bio: str | None = None
    public_repos: int | None = None
    followers: int | None = None
    following: int | None = None
    created_at: str | None = None


class Repository(BaseModel):
    full_name: str
    private: bool
    html_url: str
    description: str | None = None
    stargazers_count: int = 0
    updated_at: str | None = None


class RepositoryPage(BaseModel):
    page: int
    repositories: list[Repository]


class StarResult(BaseModel):
    repository: str
    starred: bool


class GitHubCaller:
    """Runs a GitHub request as the MCP caller, mapping failures to clear tool errors."""

    def __init__(self, provider: GitHubOAuthProvider) -> None:
        self.provider = provider

    async def call(self, request: Callable[[str], Awaitable[T]]) -> T:
        access = get_access_token()
        if not isinstance(access, GitHubAccessToken):
            raise ToolError("This tool needs a signed-in caller.")
        try:
            token = await self.provider.github_token(access)
            return await request(token)
        except ReconnectRequired:
            raise ToolError(RECONNECT) from None
        except GitHubUnauthorized:
            # The user revoked the app at GitHub, or the token expired: stop honouring this grant.
            await self.provider.grant_revoked(access.grant_id)
            raise ToolError(RECONNECT) from None
        except GitHubError as exc:
            raise ToolError(f"{exc}. Try again in a moment.") from None


def scoped_tool(mcp: MCPServer, scope: str, **options: Any) -> Callable[[F], F]:
    """Register a tool that callers may only use with `scope` (enforced in scopes.BearerChallenge)."""

    def decorator(fn: F) -> F:
        TOOL_SCOPES[options.get("name") or fn.__name__] = scope
        return mcp.tool(**options)(fn)

    return decorator


def register_tools(mcp: MCPServer, provider: GitHubOAuthProvider) -> None:
    github = GitHubCaller(provider)
    api = provider.github

    @scoped_tool(mcp, "user", annotations=ToolAnnotations(read_only_hint=True))
    async def get_user_profile() -> UserProfile:
        """The signed-in user's own GitHub profile."""
        return UserProfile.model_validate(await github.call(api.get_user))

    @scoped_tool(mcp, "repo:read", annotations=ToolAnnotations(read_only_hint=True))
    async def list_my_repositories(
        page: int = Field(default=1, ge=1, le=100), per_page: int = Field(default=30, ge=1, le=100)
    ) -> RepositoryPage:
        """Repositories the signed-in user owns or collaborates on, most recently updated first."""
        items = await github.call(lambda token: api.list_repos(token, per_page=per_page, page=page))
        return RepositoryPage(page=page, repositories=[Repository.model_validate(i) for i in items])

    @scoped_tool(mcp, "repo:write", annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=True))
    async def star_repository(owner: str, repo: str, star: bool = True) -> StarResult:
        """Star (or, with star=false, unstar) a public repository as the signed-in user."""
        if not NAME.match(owner) or not NAME.match(repo):
            raise ToolError("owner and repo must be GitHub names such as 'octocat' and 'hello-world'.")
        await github.call(lambda token: api.set_star(token, owner, repo, star))
        return StarResult(repository=f"{owner}/{repo}", starred=star)
