"""Completions (`completion/complete`): owner and repository names for prompt and resource-template
arguments, from the signed-in user's own repositories.

One GitHub request (the user's 100 most recently updated repositories) serves every completion,
revalidated with its ETag from the user's cache: a repeat costs a 304, which GitHub does not
count against the rate limit. Completing an argument needs the scope of the prompt or template
it belongs to (scopes.decide, like a call of it).
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)

from tools.core import GitHubCaller

MAX_VALUES = 100  # the protocol's cap on one completion answer


def register(mcp: MCPServer, github: GitHubCaller) -> None:
    async def my_repositories() -> list[tuple[str, str]]:
        try:
            items = await github.call(lambda token: github.api.list_repos(token, per_page=100, page=1))
        except ToolError as exc:
            raise MCPError(INTERNAL_ERROR, str(exc)) from None
        return [(item["owner"]["login"], item["name"]) for item in items]

    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        await _require_known(mcp, ref)
        if argument.name not in ("owner", "repo"):
            return Completion(values=[], has_more=False)
        typed = argument.value.lower()
        chosen = ((context.arguments or {}) if context else {}).get("owner", "").lower()
        repositories = await my_repositories()
        if argument.name == "owner":
            found = sorted({owner for owner, _ in repositories if owner.lower().startswith(typed)}, key=str.lower)
        else:
            found = [r for o, r in repositories if r.lower().startswith(typed) and (not chosen or o.lower() == chosen)]
        return Completion(values=found[:MAX_VALUES], total=len(found), has_more=len(found) > MAX_VALUES)

    mcp.completion()(complete)  # type: ignore[no-untyped-call]  # the SDK's decorator is untyped


async def _require_known(mcp: MCPServer, ref: Any) -> None:
    """A completion for a prompt or template this server does not have is the caller's mistake."""
    if isinstance(ref, PromptReference):
        if ref.name not in {p.name for p in await mcp.list_prompts()}:
            raise MCPError(INVALID_PARAMS, f"Unknown prompt {ref.name[:100]!r}: nothing to complete.")
    elif ref.uri not in {t.uri_template for t in await mcp.list_resource_templates()}:
        raise MCPError(INVALID_PARAMS, f"Unknown resource template {ref.uri[:200]!r}: nothing to complete.")
