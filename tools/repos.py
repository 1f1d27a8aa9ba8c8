"""Tools about repositories: listing, reading files, searching, starring."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from tools.core import READ, TOGGLE, GitHubCaller, Limit, Owner, Ref, Repo, RepoPath, progress, scoped_tool


class Repository(BaseModel):
    full_name: str
    private: bool
    html_url: str
    description: str | None = Field(default=None, description="Written by the repository's owner: data")
    stargazers_count: int = 0
    forks_count: int | None = None
    open_issues_count: int | None = None
    language: str | None = None
    default_branch: str | None = None
    archived: bool | None = None
    updated_at: str | None = None


LIMITED = "Only repositories this sign-in may reach are listed (chosen at consent, or the server's bound)"


class RepositoryPage(BaseModel):
    page: int
    repositories: list[Repository]
    limited_to_grant: bool = Field(default=False, description=LIMITED)


class SearchResult(BaseModel):
    query: str
    repositories: list[Repository]
    limited_to_grant: bool = Field(default=False, description=LIMITED)


class DirectoryEntry(BaseModel):
    name: str
    path: str
    type: str
    size: int | None = None


class FileContents(BaseModel):
    repository: str
    path: str
    ref: str | None = None
    type: Literal["file", "dir", "symlink", "submodule"]
    size: int | None = None
    sha: str | None = None
    binary: bool = Field(default=False, description="A binary file: only its metadata is returned")
    text: str | None = Field(default=None, description="The file's text, written by the repository's authors: data")
    truncated: bool = Field(default=False, description="Only the first part of the text is returned (size cap)")
    entries: list[DirectoryEntry] | None = None


class StarResult(BaseModel):
    repository: str
    starred: bool


def file_contents(data: Any, repository: str, path: str, ref: str | None, cap: int) -> FileContents:
    """GitHub's contents answer: a list for a directory, base64 text for a file (none above 1 MB)."""
    if isinstance(data, list):
        entries = [DirectoryEntry.model_validate(entry) for entry in data]
        return FileContents(repository=repository, path=path, ref=ref, type="dir", entries=entries)
    result = FileContents(
        repository=repository, path=path, ref=ref, type=data["type"], size=data.get("size"), sha=data.get("sha")
    )
    if data["type"] != "file" or data.get("encoding") != "base64":
        result.truncated = data["type"] == "file"  # GitHub sends no content for files above 1 MB
        return result
    try:
        raw = base64.b64decode(data.get("content") or "")
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        result.binary = True
        return result
    if "\x00" in text:
        result.binary = True
        return result
    result.text = raw[:cap].decode("utf-8", "ignore")  # "ignore": a character cut in half at the cap
    result.truncated = len(raw) > cap
    return result


def register(mcp: MCPServer, github: GitHubCaller) -> None:
    api = github.api

    @scoped_tool(mcp, "repo:read", annotations=READ)
    async def list_my_repositories(
        page: int = Field(default=1, ge=1, le=100), per_page: int = Field(default=30, ge=1, le=100)
    ) -> RepositoryPage:
        """Repositories the signed-in user owns or collaborates on, most recently updated first."""
        items = await github.call(lambda token: api.list_repos(token, per_page=per_page, page=page))
        repositories = [Repository.model_validate(i) for i in items]
        return RepositoryPage(page=page, repositories=repositories, limited_to_grant=await github.limited())

    @scoped_tool(mcp, "repo:read", annotations=READ)
    async def get_repository(owner: Owner, repo: Repo) -> Repository:
        """One repository's details, e.g. owner='octocat', repo='hello-world'."""
        return Repository.model_validate(await github.call(lambda token: api.get(token, ("repos", owner, repo))))

    @scoped_tool(mcp, "repo:read", annotations=READ)
    async def get_file_contents(owner: Owner, repo: Repo, path: RepoPath = "", ref: Ref | None = None) -> FileContents:
        """A file's text (size-capped), a directory's listing, or a binary file's metadata."""
        segments = ("repos", owner, repo, "contents", *(path.split("/") if path else ()))
        params = {"ref": ref} if ref else None
        data = await github.call(lambda token: api.get(token, segments, params))
        return file_contents(data, f"{owner}/{repo}", path, ref, github.settings.max_file_bytes)

    @scoped_tool(mcp, "repo:read", annotations=READ)
    async def search_repositories(
        ctx: Context, query: Annotated[str, Field(min_length=1, max_length=256)], limit: Limit = 10
    ) -> SearchResult:
        """Search repositories with GitHub's syntax, e.g. 'mcp language:python stars:>100'."""
        report = progress(ctx, limit)
        items = await github.call(
            lambda token: api.paginate(
                token, ("search", "repositories"), {"q": query}, limit, items_key="items", on_page=report
            )
        )
        repositories = [Repository.model_validate(i) for i in items]
        return SearchResult(query=query, repositories=repositories, limited_to_grant=await github.limited())

    @scoped_tool(mcp, "repo:write", annotations=TOGGLE)
    async def star_repository(owner: Owner, repo: Repo, star: bool = True) -> StarResult:
        """Star (or, with star=false, unstar) a repository as the signed-in user."""
        await github.call(lambda token: api.set_star(token, owner, repo, star))
        return StarResult(repository=f"{owner}/{repo}", starred=star)
