"""The MCP scope vocabulary, its mapping to GitHub scopes, and per-tool enforcement.

To add a scope: add a row to `SCOPES`. To protect a tool with one: `@scoped_tool(mcp, ...)` in
`tools/`. A call to a tool whose scope the token lacks is answered (bearer.py) with HTTP 403 and a
`WWW-Authenticate` challenge naming the scope, so MCP clients can step up (RFC 6750 §3.1).

Fail closed: a tool, prompt, resource or resource template that declares no scope stops the
server at startup (`require_declared_scopes`), and a call to one registered later is refused. A
tool meant for every signed-in caller declares `EVERYONE`. A resource read through a template
needs the template's scope; completing an argument of a prompt or template needs the scope of
that prompt or template: the same `decide`, never a second rule.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import pydantic_core
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resources import ResourceSecurityError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_REQUEST

from ghmcp import audit, sdk
from ghmcp.config import ConfigError


@dataclass(frozen=True)
class ScopeInfo:
    description: str  # shown on the consent page
    github: tuple[str, ...]  # what GitHub must grant for tools behind this scope to work


SCOPES: dict[str, ScopeInfo] = {
    "user": ScopeInfo("Read your GitHub profile", ("read:user",)),
    # Public repository data needs no GitHub scope at all.
    "repo:read": ScopeInfo("Read public repositories: files, issues and pull requests", ()),
    "repo:write": ScopeInfo(
        "Create issues and comments, and star repositories, as you on public repositories", ("public_repo",)
    ),
    # GitHub has no read-only scope for private repositories: say so where the user decides.
    "repo:private": ScopeInfo(
        "Private repositories too. Warning: GitHub's repo scope gives this server full read and write"
        " access to all your private repositories",
        ("repo",),
    ),
}
# What a client gets when it asks for no scope: everything that needs no extra GitHub permission,
# so the first tool calls need no step-up (repo:read maps to no GitHub scope at all).
DEFAULT_SCOPES = ["user", "repo:read"]
EVERYONE = ""  # the declared scope of a tool any signed-in caller may use

# JSON-RPC method -> (tool or prompt name, or resource URI or URI template -> the MCP scope it needs).
DECLARED: dict[str, dict[str, str]] = {"tools/call": {}, "prompts/get": {}, "resources/read": {}}
TOOL_SCOPES = DECLARED["tools/call"]  # filled by `scoped_tool` in tools/
# Methods the scope check reads: the declared ones, and completions of a prompt's or template's arguments.
GATED = [*DECLARED, "completion/complete"]
# (method, name or URI) of the call under way, once the scope check passed it.
CALLED: ContextVar[tuple[str, str]] = ContextVar("called", default=("", ""))


def mcp_scope_for(github_scopes: Iterable[str]) -> str | None:
    """The narrowest MCP scope whose GitHub scopes satisfy one of `github_scopes` (from a 403)."""
    accepted = set(github_scopes)
    return next((name for name, info in SCOPES.items() if accepted & set(info.github)), None)


def undeclared(mcp: MCPServer) -> list[str]:
    """Tools, prompts and resources `mcp` serves without a declared scope, as 'Tool x' phrases."""
    tools = [t.name for t in sdk.tools(mcp)]
    prompts = [p.name for p in sdk.prompts(mcp)]
    resources = [str(r.uri) for r in sdk.resources(mcp)]
    templates = [t.uri_template for t in sdk.resource_templates(mcp)]
    return (
        [f"Tool {n}" for n in tools if n not in DECLARED["tools/call"]]
        + [f"Prompt {n}" for n in prompts if n not in DECLARED["prompts/get"]]
        + [f"Resource {n}" for n in resources if n not in DECLARED["resources/read"]]
        + [f"Resource template {n}" for n in templates if n not in DECLARED["resources/read"]]
    )


def require_declared_scopes(mcp: MCPServer) -> None:
    """Fail closed at startup: everything callable must say which scope it needs, from the vocabulary."""
    for method, declared in DECLARED.items():
        unknown = {name: scope for name, scope in declared.items() if scope != EVERYONE and scope not in SCOPES}
        for name, scope in unknown.items():
            what = {"tools/call": "Tool", "prompts/get": "Prompt", "resources/read": "Resource"}[method]
            known = ", ".join(SCOPES)
            raise ConfigError(
                f"{what} {name} declares an unknown scope {scope!r}: "
                f"the scopes are {known} (or EVERYONE for any signed-in caller)."
            )
    missing = undeclared(mcp)
    if not missing:
        return
    if missing[0].startswith("Tool "):
        fix = 'use @scoped_tool(mcp, "<scope>") (or scopes.EVERYONE) in tools/'
    else:
        fix = "add it with its scope to scopes.DECLARED (in tools/: @scoped_prompt or @scoped_resource)"
    raise ConfigError(f"{missing[0]} declares no scope: {fix}.")


def github_scopes(mcp_scopes: Iterable[str], *, orgs_configured: bool) -> list[str]:
    """Only the GitHub scopes the chosen MCP scopes need (least privilege)."""
    wanted = {g for s in mcp_scopes if s in SCOPES for g in SCOPES[s].github}
    if orgs_configured:
        wanted.add("read:org")  # admission checks org membership with the user's token
    return sorted(wanted)


def challenge(error: str, scopes: Iterable[str], resource_metadata: str, description: str) -> str:
    """A `WWW-Authenticate` value naming the scopes to ask for (RFC 6750 §3; MCP clients pick scopes from it)."""
    return (
        f'Bearer error="{error}", error_description="{description}", '
        f'scope="{" ".join(scopes)}", resource_metadata="{resource_metadata}"'
    )


@dataclass(frozen=True)
class Refusal:
    """Why a call may not go on: a missing scope (`wanted` is what to ask for), or an undeclared one."""

    error: str
    wanted: list[str]
    description: str


UNREADABLE = Refusal("parse_error", [], "The request body must be UTF-8 JSON")


async def decide(mcp: MCPServer, called: list[tuple[str, str]], granted: Collection[str]) -> Refusal | None:
    """The one scope decision: whether `called` ((method, name) pairs) needs more than `granted`.

    Fail closed: a tool, prompt or resource registered without a declared scope is refused.
    """
    missing: list[str] = []
    unknown: list[tuple[str, str]] = []
    for method, name in called:  # one pass, in order: this runs twice on every tool call
        declared = DECLARED[method]
        needed = declared.get(name)
        if needed is None:
            name = _declared_name(mcp, method, name)
            needed = declared.get(name)
        if needed is None:
            unknown.append((method, name))
        elif needed != EVERYONE and needed not in granted:
            missing.append(needed)
    if unknown and await _undeclared(mcp, unknown):
        audit.event("scope_refused", reason="undeclared_scope")
        return Refusal("undeclared_scope", [], "This is served without a declared scope")
    if missing:
        held = list(granted)
        audit.event("scope_refused", reason="insufficient_scope", missing=sorted(set(missing)))
        return Refusal("insufficient_scope", held + sorted(set(missing)), f"This tool needs the {missing[0]} scope")
    return None


async def refusal(mcp: MCPServer, body: bytes, granted: list[str]) -> Refusal | None:
    """The HTTP fast path (bearer.py): the decision for the JSON-RPC message or batch in `body`.

    Only an early answer, for the 403 challenge clients step up from: `ScopeCheck` decides again on
    what the SDK decoded. A body not read here as strict UTF-8 JSON is refused, never taken for a
    body that calls nothing: the SDK's decoders accept more (a BOM, UTF-16/32, lone surrogates).
    """
    if not _may_be_gated(body):
        return None
    called = _gated_calls(body)
    return UNREADABLE if called is None else await decide(mcp, called, granted)


class ScopeCheck:
    """The authority on scopes: an SDK middleware, so it sees each message as the SDK decoded it.

    It runs after decoding on every transport and protocol revision (2026-07-28 and legacy
    Streamable HTTP, SSE), one message at a time, before the SDK looks up what to run, so no
    encoding, escape, duplicate key or batch can make it read a different call than the one that
    runs. Every tool, prompt and resource call passes here: a forker cannot forget it.
    """

    def __init__(self, mcp: MCPServer) -> None:
        self.mcp = mcp

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method in GATED:
            await self._check(ctx.method, ctx.params)
        return await call_next(ctx)

    async def _check(self, method: str, params: Mapping[str, Any] | None) -> None:
        target = called_target(method, params)
        if target is None:
            return  # the SDK's own validation refuses it before anything runs
        access = get_access_token()
        # Fail closed: no caller (a transport without the bearer gate) holds no scope.
        refused = await decide(self.mcp, [target], access.scopes if access else [])
        if refused is not None:
            raise MCPError(code=INVALID_REQUEST, message=f"Forbidden: {refused.description}.", data=refused.error)
        CALLED.set(target)  # for the audit of what runs next (tools/core.py: a refused repository)


def called_target(method: str, params: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(declared method, name or URI) that a gated request calls; a completion counts as a call of
    the prompt or template whose argument it completes. None when the request names nothing."""
    if not isinstance(params, Mapping):
        return None
    if method == "completion/complete":
        ref = params.get("ref")
        if not isinstance(ref, Mapping):
            return None
        method, params = ("prompts/get", ref) if ref.get("type") == "ref/prompt" else ("resources/read", ref)
    name = params.get("uri" if method == "resources/read" else "name")
    return (method, name) if isinstance(name, str) else None


def _declared_name(mcp: MCPServer, method: str, name: str) -> str:
    """The key `name` is declared under: a URI that a resource template serves is declared by the template."""
    if method != "resources/read" or name in DECLARED[method]:
        return name
    for template in sdk.resource_templates(mcp):  # in the SDK's order: the first match serves the URI
        try:
            matched = template.matches(name) is not None
        except ResourceSecurityError:
            matched = True  # the SDK refuses it; gated like any URI of the template meanwhile
        if matched:
            return template.uri_template
    return name


async def _undeclared(mcp: MCPServer, unknown: list[tuple[str, str]]) -> bool:
    """Whether a call names something registered without a declared scope (unknown names pass on)."""
    registered = {
        "tools/call": {t.name for t in await mcp.list_tools()},
        "prompts/get": {p.name for p in await mcp.list_prompts()},
        "resources/read": {str(r.uri) for r in await mcp.list_resources()}
        | {t.uri_template for t in await mcp.list_resource_templates()},
    }
    return any(name in registered[method] for method, name in unknown)


def _may_be_gated(body: bytes) -> bool:
    """False only when the strict parse (`_gated_calls`) would find no gated call and no fault.

    JSON can spell a string with escapes ("tools\\/call", "\\u0074ools/call"), and every escape
    needs a backslash. Without one, in a body that is UTF-8 (no NUL byte, so not UTF-16/32; no
    BOM; no encoded surrogate), each string's bytes appear verbatim. Anything else is parsed, and
    refused if the strict parse fails. Saves a parse of every ping, initialize and list request.
    """
    return _GATED_BYTES.search(body) is not None


_NOT_PLAIN_UTF8 = [re.escape(b"\\"), b"\x00", re.escape(b"\xef\xbb\xbf"), b"\xed[\xa0-\xbf]"]
_GATED_BYTES = re.compile(b"|".join([*_NOT_PLAIN_UTF8, *(re.escape(method.encode()) for method in GATED)]))


def _gated_calls(body: bytes) -> list[tuple[str, str]] | None:
    """(method, tool/prompt name or resource URI) of every gated request in a message or batch.

    None when `body` is not strict UTF-8 JSON (RFC 8259 §8.1): the gate refuses it.
    """
    try:
        parsed: Any = pydantic_core.from_json(body)
    except ValueError:
        return None
    messages = parsed if isinstance(parsed, list) else [parsed]
    called = []
    for message in messages:
        method = message.get("method") if isinstance(message, dict) else None
        target = called_target(method, message.get("params")) if method in GATED else None
        if target is not None:
            called.append(target)
    return called
