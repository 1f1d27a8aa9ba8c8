"""Tools about pull requests: list, and read one with its changed files."""

from __future__ import annotations

from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from tools.core import READ, GitHubCaller, Limit, Number, Owner, Repo, progress, scoped_tool
from tools.issues import UNTRUSTED

MAX_FILES = 300  # three pages; GitHub itself lists at most 3000


class PullRequest(BaseModel):
    number: int
    title: str = Field(description=UNTRUSTED)
    state: str
    draft: bool = False
    author: str | None = None
    head: str | None = None
    base: str | None = None
    html_url: str
    created_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_github(cls, data: dict[str, Any]) -> PullRequest:
        return cls.model_validate(
            data
            | {
                "author": (data.get("user") or {}).get("login"),
                "head": (data.get("head") or {}).get("ref"),
                "base": (data.get("base") or {}).get("ref"),
            }
        )


class PullRequestList(BaseModel):
    repository: str
    pull_requests: list[PullRequest]


class ChangedFile(BaseModel):
    filename: str
    status: str
    additions: int
    deletions: int


class PullRequestDetails(PullRequest):
    body: str | None = Field(default=None, description=UNTRUSTED)
    merged: bool | None = None
    additions: int | None = None
    deletions: int | None = None
    changed_files: int | None = None
    files: list[ChangedFile] = Field(description=f"At most the first {MAX_FILES} changed files")


def register(mcp: MCPServer, github: GitHubCaller) -> None:
    api = github.api

    @scoped_tool(mcp, "repo:read", annotations=READ)
    async def list_pull_requests(
        ctx: Context, owner: Owner, repo: Repo, state: Literal["open", "closed", "all"] = "open", limit: Limit = 30
    ) -> PullRequestList:
        """Pull requests of a repository, most recently created first."""
        path, report = ("repos", owner, repo, "pulls"), progress(ctx, limit)
        items = await github.call(lambda token: api.paginate(token, path, {"state": state}, limit, on_page=report))
        return PullRequestList(repository=f"{owner}/{repo}", pull_requests=[PullRequest.from_github(i) for i in items])

    @scoped_tool(mcp, "repo:read", annotations=READ)
    async def get_pull_request(owner: Owner, repo: Repo, number: Number) -> PullRequestDetails:
        """One pull request with its changed files (name, status, additions, deletions)."""
        path = ("repos", owner, repo, "pulls", str(number))

        async def fetch(token: str) -> tuple[Any, list[Any]]:
            return await api.get(token, path), await api.paginate(token, (*path, "files"), {}, MAX_FILES)

        pull, files = await github.call(fetch)
        summary = PullRequest.from_github(pull).model_dump()
        return PullRequestDetails.model_validate(pull | summary | {"files": files})
