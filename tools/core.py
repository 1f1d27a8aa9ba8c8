"""What every tool module uses: the GitHub caller, the scope decorator, annotations, input types.

Inputs are checked by these types before the tool runs, so bad input never reaches GitHub: the
caller gets one sentence naming the argument and the rule, e.g. "Invalid argument `limit`: must be
at most 100." (tools/arguments.py; a `limit` out of range is refused, not clamped). A check of your
own raises `ValueError("must be ...")`: its text becomes the rule.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import AfterValidator, Field

from ghmcp import audit, sdk
from ghmcp.auth.records import GitHubAccessToken, ReconnectRequired
from ghmcp.auth.repositories import parse_bound
from ghmcp.auth.scopes import DECLARED, TOOL_SCOPES, mcp_scope_for
from ghmcp.config import Settings
from ghmcp.upstream.api import GitHubClient
from ghmcp.upstream.boundary import RepositoryRefused, boundary_of, refusal, within
from ghmcp.upstream.errors import (
    GitHubError,
    GitHubForbidden,
    GitHubInvalidInput,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubUnauthorized,
    GitHubUnsupported,
)
from github_provider import GitHubOAuthProvider

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

RECONNECT = "Your GitHub sign-in is no longer valid. Reconnect this server in your MCP client to sign in again."
NOT_FOUND = "Not found, or you have no access (private repositories need the repo:private scope)."

# Honest hints: every tool talks to GitHub (open world); reads change nothing.
READ = ToolAnnotations(read_only_hint=True, open_world_hint=True)
CREATE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
TOGGLE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True)


class GitHubCaller:
    """Runs a GitHub request as the MCP caller, mapping failures to clear tool errors."""

    def __init__(self, provider: GitHubOAuthProvider) -> None:
        self.grants = provider.grants
        self.api: GitHubClient = provider.github
        self.settings: Settings = provider.settings
        self.bound = parse_bound(self.settings.allowed_repositories)

    async def limited(self) -> bool:
        """Whether the caller's listings are filtered to chosen repositories (for the note tools add)."""
        access = get_access_token()
        if not isinstance(access, GitHubAccessToken):
            return True
        try:
            return not boundary_of(await self.grants.grant_for(access), self.bound).everything
        except ReconnectRequired:
            return True

    async def call(self, request: Callable[[str], Awaitable[T]]) -> T:
        access = get_access_token()
        if not isinstance(access, GitHubAccessToken):
            raise ToolError("This tool needs a signed-in caller.")
        try:
            grant = await self.grants.grant_for(access)
            token = await self.grants.token(grant)
            # Issue 19: every request below is held to the grant's repositories (upstream/boundary.py).
            with within(boundary_of(grant, self.bound)):
                try:
                    return await request(token)
                except GitHubUnauthorized:
                    # A 401 means GitHub did nothing: safe to try once more if the store holds a newer token.
                    return await request(await self.grants.token_refused(access, token))
        except RepositoryRefused as exc:
            raise ToolError(refusal(exc, grant.github_login, self.settings.server_url)) from None
        except ReconnectRequired:
            raise ToolError(RECONNECT) from None
        except GitHubUnauthorized:
            # The newest stored token was refused too: the user revoked the app at GitHub, or it expired.
            await self.grants.revoked_at_github(access.grant_id)
            raise ToolError(RECONNECT) from None
        except GitHubForbidden as exc:
            scope = mcp_scope_for(exc.accepted_scopes)
            if scope is None:
                raise ToolError(f"GitHub refused the request: {exc}") from None
            raise ToolError(
                f"GitHub refused: your sign-in lacks the access this needs. Reconnect and grant the {scope} scope."
            ) from None
        except GitHubNotFound:
            raise ToolError(NOT_FOUND) from None
        except (GitHubRateLimited, GitHubInvalidInput, GitHubUnsupported) as exc:
            raise ToolError(f"{exc}.") from None
        except GitHubError as exc:
            raise ToolError(f"{exc}. Try again in a moment.") from None


def audit_tools(mcp: MCPServer, provider: GitHubOAuthProvider) -> None:
    """With MCP_AUDIT_LOG set, every tool run records a `tool_called` line: name, caller, outcome, no arguments."""
    if not audit.enabled():
        return
    for tool in sdk.tools(mcp):  # wrapping `fn` keeps the schema the SDK derived from it
        tool.fn = _audited(tool.name, tool.fn, provider)


def _audited(name: str, fn: Callable[..., Awaitable[Any]], provider: GitHubOAuthProvider) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def run(**arguments: Any) -> Any:
        outcome = "error"
        try:
            result = await fn(**arguments)
            outcome = "ok"
            return result
        finally:
            access = get_access_token()
            grant = await provider.storage.get_grant(access.grant_id) if isinstance(access, GitHubAccessToken) else None
            who = {"login": grant.github_login} if grant else {}
            client = access.client_id if access else None
            audit.event("tool_called", tool=name, **who, client_id=client, outcome=outcome)

    return run


def progress(ctx: Context, limit: int) -> Callable[[int], Awaitable[None]]:
    """A `paginate(on_page=...)` hook: one progress notification per GitHub page, to a caller that asked
    for them with a `progressToken` (without one the SDK sends nothing).

    Take the SDK's `Context` as a tool parameter (`ctx: Context`, never shown to the caller) and pass
    `on_page=progress(ctx, limit)`. Only rising counts are sent, as the protocol requires: a request
    `github.call` retries after a refused token starts its pages over.
    """
    sent = 0

    async def report(items: int) -> None:
        nonlocal sent
        if items > sent:
            sent = items
            await ctx.report_progress(items, limit, f"{items} of up to {limit} items")

    return report


def scoped_tool(mcp: MCPServer, scope: str, **options: Any) -> Callable[[F], F]:
    """Register a tool that callers may only use with `scope` (enforced in bearer.BearerGate)."""

    def decorator(fn: F) -> F:
        TOOL_SCOPES[options.get("name") or fn.__name__] = scope
        return mcp.tool(**options)(fn)

    return decorator


def scoped_prompt(mcp: MCPServer, scope: str, **options: Any) -> Callable[[F], F]:
    """Register a prompt that callers may only get, or complete arguments of, with `scope`."""

    def decorator(fn: F) -> F:
        DECLARED["prompts/get"][options.get("name") or fn.__name__] = scope
        return mcp.prompt(**options)(fn)

    return decorator


def scoped_resource(mcp: MCPServer, scope: str, uri: str, **options: Any) -> Callable[[F], F]:
    """Register a resource (or a template, when `uri` has {parameters}) readable only with `scope`."""

    def decorator(fn: F) -> F:
        DECLARED["resources/read"][uri] = scope
        return mcp.resource(uri, **options)(fn)

    return decorator


def _checked(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        # "." and ".." match the repo pattern but would climb the URL path.
        if value in (".", "..") or not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return AfterValidator(check)


def _repo_path(value: str) -> str:
    if value and any(part in ("", ".", "..") for part in value.split("/")):
        raise ValueError("must be a path inside the repository such as 'docs/README.md' (no '.', '..' or '//')")
    if any(ord(c) < 32 for c in value):
        raise ValueError("must not contain control characters")
    return value


# GitHub's rules: logins are alphanumerics and hyphens (not first), up to 39; repo names [A-Za-z0-9_.-].
Owner = Annotated[str, _checked(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}", "a GitHub user or organisation such as 'octocat'")]
Repo = Annotated[str, _checked(r"[A-Za-z0-9_.-]{1,100}", "a repository name such as 'hello-world'")]
RepoPath = Annotated[str, Field(max_length=4096), AfterValidator(_repo_path)]
Ref = Annotated[
    str, _checked(r"(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}", "a branch, tag or commit SHA such as 'main'")
]
Number = Annotated[int, Field(ge=1, le=2**31 - 1)]
Limit = Annotated[int, Field(ge=1, le=100)]
Label = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[^,]+$")]
Labels = Annotated[list[Label], Field(max_length=20)]
Title = Annotated[str, Field(min_length=1, max_length=256)]
Body = Annotated[str, Field(max_length=65536)]
