"""Tool argument errors in one sentence: "Invalid argument `limit`: must be at most 100."

The SDK checks a call's arguments against the tool's argument model and, when they fail, answers
with pydantic's report: several lines, the model's internal name, "Input should be", and a
documentation URL, none of which helps the person or model that made the call. `ArgumentErrors`
is an SDK middleware, so every tool gets the sentence, one a forker adds later too. It leaves the
SDK's decision alone (the tool still never runs) and only rewrites the text of a refusal that the
arguments caused: a successful call costs nothing extra, and the SDK keeps shaping the response.
ghmcp/web/build.py installs it; a tool module needs nothing.

Prompts get the same treatment, as JSON-RPC errors (a prompt has no error result): an unknown
prompt, a missing argument or a bad value is an invalid-params error naming the prompt, where the
SDK would answer "Internal server error".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ghmcp import sdk

# pydantic's error types, as rules; the {names} are the error's context. Others: `_fallback`.
RULES = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "string_too_long": "must be at most {max_length} characters long",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "string_pattern_mismatch": "must match the pattern '{pattern}'",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
}


class ArgumentErrors:
    """Rewrites a `tools/call` refused for its arguments to one sentence naming the argument and the rule.

    Installed inside `ScopeCheck`, and it acts only on what the SDK answered: a caller without the
    scope gets the scope refusal whatever the arguments.
    """

    def __init__(self, mcp: MCPServer) -> None:
        self.mcp = mcp

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "prompts/get":
            return await self._prompt(ctx, call_next)
        if ctx.method == "resources/read":
            return await self._resource(ctx, call_next)
        result = await call_next(ctx)
        if ctx.method != "tools/call" or not isinstance(result, dict) or not result.get("isError"):
            return result
        sentence = self._sentence(ctx.params)
        return result if sentence is None else {**result, "content": [{"type": "text", "text": sentence}]}

    async def _prompt(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Refuse an unknown prompt or a missing argument before it renders; a bad value after."""
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, Mapping):
            return await call_next(ctx)  # the SDK's own validation answers a malformed request
        prompts = await self.mcp.list_prompts()
        prompt = next((p for p in prompts if p.name == name), None)
        if prompt is None:
            known = ", ".join(p.name for p in prompts) or "none"
            raise MCPError(INVALID_PARAMS, f"Unknown prompt {name[:100]!r}: the prompts are {known}.")
        missing = [a.name for a in prompt.arguments or [] if a.required and a.name not in arguments]
        if missing:
            names = [f"`{m}`" for m in missing]
            listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
            raise MCPError(INVALID_PARAMS, f"Prompt {name!r}: missing argument{'s' * (len(names) > 1)} {listed}.")
        return await _reworded(ctx, call_next, f"Prompt {name!r}", {name})

    async def _resource(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """A URI whose parts fail its template's argument types (e.g. a bad owner): invalid params."""
        templates = {t.name for t in await self.mcp.list_resource_templates()}
        return await _reworded(ctx, call_next, "Resource URI", templates)

    def _sentence(self, params: Mapping[str, Any] | None) -> str | None:
        """The sentence when the call's arguments fail its tool's model; None for every other error."""
        if not isinstance(params, Mapping):
            return None
        arguments = params.get("arguments") or {}
        tool = next((t for t in sdk.tools(self.mcp) if t.name == params.get("name")), None)
        if tool is None or not isinstance(arguments, Mapping):
            return None
        try:
            tool.fn_metadata.validate_arguments(dict(arguments))
        except ValidationError as exc:
            return describe(exc)
        except Exception:  # a validator that crashes: the SDK reported a crash, not a bad argument
            return None
        return None  # the arguments are fine: the tool itself refused


def describe(error: ValidationError) -> str:
    """One sentence: the missing arguments, then the first invalid one and how many more there are."""
    problems = error.errors(include_url=False, include_input=False)
    missing = [_name(p["loc"]) for p in problems if p["type"] == "missing"]
    invalid = [p for p in problems if p["type"] != "missing"]
    parts = []
    if missing:
        names = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
        parts.append(f"missing argument{'s' if len(missing) > 1 else ''} {names}")
    if invalid:
        first = invalid[0]
        where = f"argument {_name(first['loc'])}" if first["loc"] else "arguments"
        more = len(invalid) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        parts.append(f"invalid {where}: {_rule(first)}{tail}")
    sentence = "; ".join(parts)
    return f"{sentence[:1].upper()}{sentence[1:]}."


async def _reworded(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext, what: str, functions: set[str]
) -> HandlerResult:
    """`call_next`, with a failed argument check of one of `functions` said as one sentence."""
    try:
        return await call_next(ctx)
    except (ValueError, MCPError) as exc:
        invalid = _validation_error(exc, functions)
        if invalid is None:
            raise
        raise MCPError(INVALID_PARAMS, f"{what}: {describe(invalid)}") from None


def _validation_error(exc: BaseException, functions: set[str]) -> ValidationError | None:
    """The argument check of one of `functions` that the SDK wrapped in the error it raised.

    pydantic titles an argument check with the function's name; a ValidationError the function's
    own body raised (bad data from GitHub) has a model's title, and stays the server's error.
    """
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, ValidationError):
        seen = seen.__cause__ or seen.__context__
    return seen if isinstance(seen, ValidationError) and seen.title.split(".")[-1] in functions else None


def _name(loc: Sequence[int | str]) -> str:
    """`labels[0]` for the first item of `labels`, `config.name` for a field of an object."""
    name = str(loc[0]) if loc else "arguments"
    for part in loc[1:]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return f"`{name}`"


def _rule(problem: ErrorDetails) -> str:
    context = problem.get("ctx", {})
    if problem["type"] in ("value_error", "assertion_error") and "error" in context:
        rule = str(context["error"])  # the validator's own words (tools/core.py: "must be ...")
    elif problem["type"] == "string_too_short":
        least = context.get("min_length", 1)
        rule = "must not be empty" if least == 1 else f"must be at least {least} characters long"
    elif problem["type"] in RULES:
        rule = RULES[problem["type"]].format_map(context)
    else:
        rule = _fallback(problem["msg"])
    return rule.rstrip(".")


def _fallback(message: str) -> str:
    """pydantic's wording made a rule: "Input should be a valid date, ..." -> "must be a valid date"."""
    rule = re.sub(r"^\w+ should\b", "must", message)
    return re.sub(r",? (?:unable to|got|after validation)\b.*$", "", rule)
