"""Tools about GitHub users."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel

from tools.core import READ, GitHubCaller, scoped_tool


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


def register(mcp: MCPServer, github: GitHubCaller) -> None:
    @scoped_tool(mcp, "user", annotations=READ)
    async def get_user_profile() -> UserProfile:
        """The signed-in user's own GitHub profile."""
        return UserProfile.model_validate(await github.call(github.api.get_user))
