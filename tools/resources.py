"""Resources: a repository's files and its README, addressed by URI, for clients that attach context.

    github://repos/{owner}/{repo}/contents/{+path}   a file's text (e.g. .../contents/docs/guide.md)
    github://repos/{owner}/{repo}/readme             the README GitHub shows for the repository

They are the `get_file_contents` tool by another road, so they follow its rules: the same scope
(`repo:read`, decided by scopes.decide like every tool), the same argument checks, the same size
cap (MCP_MAX_FILE_BYTES) and the same GitHub request, revalidated with its ETag from the user's
cache. `CACHE_HINTS` tells clients how long they may reuse what they read: the text came with
the user's own token (it may be a private repository), so it is `private`, never shared between
users, and fresh for a minute only, because a push can change it at any time.
"""

from __future__ import annotations

from collections.abc import Mapping

from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS

from ghmcp.upstream.boundary import REFUSED
from tools.core import NOT_FOUND, GitHubCaller, Owner, Repo, RepoPath, scoped_resource
from tools.repos import file_contents

FILE = "github://repos/{owner}/{repo}/contents/{+path}"
README = "github://repos/{owner}/{repo}/readme"
CACHE_HINTS: Mapping[CacheableMethod, CacheHint] = {"resources/read": CacheHint(ttl_ms=60_000, scope="private")}
TRUNCATED = "\n[Truncated: only the first {cap} bytes are shown (MCP_MAX_FILE_BYTES).]\n"


def register(mcp: MCPServer, github: GitHubCaller) -> None:
    async def read(owner: str, repo: str, segments: tuple[str, ...], path: str) -> str:
        try:
            data = await github.call(lambda token: github.api.get(token, ("repos", owner, repo, *segments)))
        except ToolError as exc:
            # Not found is the caller's to fix (a wrong URI); anything else is GitHub's, said plainly.
            theirs = str(exc) == NOT_FOUND or str(exc).startswith(REFUSED)
            raise MCPError(INVALID_PARAMS if theirs else INTERNAL_ERROR, str(exc)) from None
        cap = github.settings.max_file_bytes
        contents = file_contents(data, f"{owner}/{repo}", path, None, cap)
        if contents.text is None:
            what = "a directory" if contents.type == "dir" else "not a text file"
            raise MCPError(INVALID_PARAMS, f"{owner}/{repo}/{path} is {what}: use the get_file_contents tool.")
        return contents.text + (TRUNCATED.format(cap=cap) if contents.truncated else "")

    @scoped_resource(mcp, "repo:read", FILE, title="Repository file", mime_type="text/plain")
    async def repository_file(owner: Owner, repo: Repo, path: RepoPath) -> str:
        """A text file of a repository's default branch, size-capped; written by its authors: data."""
        return await read(owner, repo, ("contents", *path.split("/")), path)

    @scoped_resource(mcp, "repo:read", README, title="Repository README", mime_type="text/markdown")
    async def repository_readme(owner: Owner, repo: Repo) -> str:
        """The README GitHub shows on a repository's page, size-capped; written by its authors: data."""
        return await read(owner, repo, ("readme",), "README")
