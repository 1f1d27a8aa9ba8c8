"""Confirmed writes (MCP_CONFIRM_WRITES): a write tool runs only after the user confirms the exact action.

A model can be talked into anything by text it reads (an issue body, a file): prompt injection. So
before any write tool runs, the user sees what it will do, as them, on GitHub, and says yes. A write
tool is one whose `read_only_hint` is not true (the rule `select_tools` uses for MCP_READ_ONLY), so
a forker's new write tool is confirmed without a line of its own. `ConfirmWrites` is an SDK
middleware inside the scope and argument checks; ghmcp/web/build.py installs it.

On the 2026-07-28 protocol the first call answers `input_required` with a form elicitation that
shows the tool and every argument, and a request state. The SDK seals that state (AES-GCM, shared
keys, bound to this tool, these arguments and this caller) and unseals it on the retry, refusing a
tampered, expired or borrowed one before this code runs; the state names tool, arguments, grant and
client once more, checked here. Only a retry carrying `accept` runs the tool. Older protocol
revisions get the same question as a server-initiated `elicitation/create` when the connection can
carry one (a session, not stateless HTTP); otherwise the caller is told how to proceed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    TextContent,
)
from mcp_types.version import is_version_at_least
from pydantic import ValidationError

from ghmcp import audit, sdk
from ghmcp.auth.keys import token_hash
from ghmcp.auth.records import GitHubAccessToken
from ghmcp.storage import Storage

QUESTION = "confirm_write"  # the key of the one input request
MULTI_ROUND = "2026-07-28"  # first revision that carries elicitation in `input_required` results
SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}  # accepting is the answer; nothing to fill in
_NOTHING_UNTIL = "Nothing is sent to GitHub unless you accept."
MISMATCH = (
    "This confirmation was given for another action or caller: nothing was done. Call the tool again to be asked."
)
USED = "This confirmation was already used: nothing was done again. Call the tool again to be asked."


class ConfirmWrites:
    """Asks the user before every write tool runs; runs it only on their `accept`."""

    def __init__(self, mcp: MCPServer, storage: Storage, state_seconds: float) -> None:
        self.mcp = mcp
        self.storage = storage
        self.state_seconds = state_seconds  # how long the SDK accepts a sealed state: each is spent before then

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        tool = self._write_tool(params.get("name")) if ctx.method == "tools/call" else None
        if tool is None:
            return await call_next(ctx)
        arguments = params.get("arguments") or {}
        shown = _validated(tool, arguments)
        if shown is None:
            # Never ask about a call that cannot run; ArgumentErrors (outside) says what is wrong.
            return _error("Invalid arguments: nothing was done.")
        if not is_version_at_least(ctx.protocol_version, MULTI_ROUND):
            return await self._ask_now(ctx, call_next, tool, shown)
        state = params.get("requestState")
        if state is None:
            return _ask(ctx, tool, arguments, shown)
        # The SDK checked the seal, expiry, tool, arguments and principal; this is the same rule again, in words.
        binding, _, nonce = str(state).rpartition(":")
        if not nonce or binding != _binding(tool.name, arguments):
            _audit(tool.name, "mismatch")
            raise MCPError(INVALID_PARAMS, MISMATCH)
        answer = _answer(params.get("inputResponses"))
        if answer is None:
            return _ask(ctx, tool, arguments, shown)
        if answer.action != "accept":
            return _not_done(tool.name, answer.action)
        # One yes, one write: an accepted state is spent on first use, on every replica (single use, as codes are).
        if not await self.storage.use_once(token_hash(nonce), time.time() + self.state_seconds):
            _audit(tool.name, "replayed")
            return _error(USED)
        _audit(tool.name, "accepted")
        # The tool gets a plain call: the confirmation rounds are this middleware's, not the tool's.
        plain = {k: v for k, v in params.items() if k not in ("requestState", "inputResponses")}
        return await call_next(replace(ctx, params=plain))

    def _write_tool(self, name: Any) -> Tool | None:
        tool = sdk.tool(self.mcp, name) if isinstance(name, str) else None
        return tool if tool is not None and not (tool.annotations and tool.annotations.read_only_hint) else None

    async def _ask_now(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext, tool: Tool, shown: dict[str, Any]
    ) -> HandlerResult:
        """Before 2026-07-28: the question as a server-initiated request, answered within this call."""
        # First: without a session, the legacy protocol carries neither the question nor the capabilities.
        if not ctx.session.can_send_request:
            _audit(tool.name, "no_back_channel")
            return _error(
                f"{tool.name} needs your confirmation, but this connection cannot carry the question (stateless"
                " HTTP before protocol 2026-07-28). Nothing was done. Use a client that speaks 2026-07-28, or"
                " ask the server's operator to set MCP_CONFIRM_WRITES=false."
            )
        if not _can_elicit(ctx):
            return _cannot_ask(tool.name)
        _audit(tool.name, "asked")
        answer = await ctx.session.elicit_form(_message(tool, shown), SCHEMA, related_request_id=ctx.request_id)
        if answer.action != "accept":
            return _not_done(tool.name, answer.action)
        _audit(tool.name, "accepted")
        return await call_next(ctx)


def _ask(ctx: ServerRequestContext[Any, Any], tool: Tool, arguments: Any, shown: dict[str, Any]) -> HandlerResult:
    if not _can_elicit(ctx):
        return _cannot_ask(tool.name)
    _audit(tool.name, "asked")
    question = ElicitRequest(params=ElicitRequestFormParams(message=_message(tool, shown), requested_schema=SCHEMA))
    # The SDK's RequestStateBoundary seals this state on the way out (MCP 2026-07-28: requestState is untrusted);
    # the nonce makes each question's yes single-use.
    state = f"{_binding(tool.name, arguments)}:{secrets.token_urlsafe(16)}"
    return InputRequiredResult(input_requests={QUESTION: question}, request_state=state)


def _validated(tool: Tool, arguments: Any) -> dict[str, Any] | None:
    """The arguments the tool would run with, defaults included; None when they fail its checks."""
    if not isinstance(arguments, Mapping):
        return None
    try:
        return tool.fn_metadata.validate_arguments(dict(arguments))
    except (ValidationError, ValueError, TypeError):
        return None


def _message(tool: Tool, shown: dict[str, Any]) -> str:
    """What the user confirms: the tool, what it does, and every value it will send."""
    what = (tool.description or "").strip().split("\n")[0]
    lines = [f"  {name}: {_literal(value)}" for name, value in shown.items()]
    return "\n".join(
        [f"Allow {tool.name} to act on GitHub as you?", *([what] if what else []), "", *lines, "", _NOTHING_UNTIL]
    )


def _literal(value: Any) -> str:
    """A value as one line of JSON, with invisible and direction-changing characters escaped: text the
    model chose cannot fake a line of the question or hide what it says (bidi spoofing: CVE-2021-42574)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in _HIDDEN else c for c in text)


_HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"}


def _binding(tool: str, arguments: Any) -> str:
    """One value naming this tool, these exact arguments and this caller's sign-in (grant) and client."""
    access = get_access_token()
    grant = access.grant_id if isinstance(access, GitHubAccessToken) else None
    client = access.client_id if access is not None else None
    canonical = json.dumps(
        {"tool": tool, "arguments": arguments, "grant": grant, "client": client}, sort_keys=True, separators=(",", ":")
    )
    return "confirm-write-v1:" + base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode()


def _answer(responses: Any) -> ElicitResult | None:
    answer = responses.get(QUESTION) if isinstance(responses, Mapping) else None
    try:
        return ElicitResult.model_validate(answer) if answer is not None else None
    except ValidationError:
        return None  # not an answer to this question: ask again


def _audit(tool: str, outcome: str) -> None:
    access = get_access_token()
    audit.event("write_confirmation", tool=tool, client_id=access.client_id if access else None, outcome=outcome)


def _can_elicit(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Form elicitation declared; a bare `elicitation: {}` (before modes existed) means form."""
    capabilities = ctx.session.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _cannot_ask(tool: str) -> HandlerResult:
    _audit(tool, "no_elicitation")
    return _error(
        f"{tool} changes things on GitHub, so this server asks you to confirm it first, but your MCP client"
        " declared no form elicitation capability to show the question. Nothing was done. Enable elicitation"
        " in your client (or use one that supports it), or ask the server's operator to set"
        " MCP_CONFIRM_WRITES=false."
    )


def _not_done(tool: str, action: str) -> HandlerResult:
    _audit(tool, action)
    said = "declined" if action == "decline" else "cancelled"
    return _error(f"You {said} {tool}: nothing was done and nothing was sent to GitHub.")


def _error(text: str) -> dict[str, Any]:
    """An error result (a normal one would have to carry the tool's structured output), in its wire form
    as the SDK's own results reach ArgumentErrors."""
    result = CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)
