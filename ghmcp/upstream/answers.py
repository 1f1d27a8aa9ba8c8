"""Reading GitHub's answers: REST bodies, token-endpoint answers, and HTTP statuses as exceptions."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx2

from ghmcp.upstream.cache import Cached, RateLimitGate
from ghmcp.upstream.errors import (
    GitHubError,
    GitHubForbidden,
    GitHubInvalidInput,
    GitHubNotFound,
    GitHubOAuthError,
    GitHubRateLimited,
    GitHubUnauthorized,
    GitHubUnsupported,
    error_message,
)


@dataclass(frozen=True)
class Answer:
    data: Any
    link: str | None

    @classmethod
    def of(cls, entry: Cached) -> Answer:
        try:
            return cls(json.loads(entry.body) if entry.body else None, entry.link)
        except ValueError:
            raise GitHubError("GitHub answered something that is not JSON") from None


def number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@dataclass
class GitHubTokens:
    access_token: str
    scopes: str
    expires_at: float | None = None  # GitHub App user tokens expire; OAuth App tokens do not
    refresh_token: str | None = None
    refresh_expires_at: float | None = None


def tokens_from(response: httpx2.Response) -> GitHubTokens:
    """The OAuth token endpoint's answer; `GitHubOAuthError` for its `{"error": ...}`."""
    try:
        data = response.json()
    except ValueError:
        raise GitHubError("GitHub answered something that is not JSON") from None
    if response.status_code >= 400 or not isinstance(data, dict):
        raise GitHubError(f"GitHub answered HTTP {response.status_code}")
    # GitHub reports token-endpoint failures as HTTP 200 with an "error" member.
    if "error" in data or not isinstance(data.get("access_token"), str):
        raise GitHubOAuthError(str(data.get("error", "no access_token in answer")))
    now = time.time()
    expires_in = data.get("expires_in")
    refresh_in = data.get("refresh_token_expires_in")
    return GitHubTokens(
        access_token=data["access_token"],
        scopes=str(data.get("scope", "")),
        expires_at=now + float(expires_in) if expires_in else None,
        refresh_token=data.get("refresh_token") or None,
        refresh_expires_at=now + float(refresh_in) if refresh_in else None,
    )


def raise_for_status(response: httpx2.Response, who: str, limits: RateLimitGate) -> None:
    """A REST error status as the exception a tool turns into a sentence (5xx: see sending.py)."""
    status = response.status_code
    if status < 400:
        return
    message = error_message(response)
    if status == 401:
        raise GitHubUnauthorized("GitHub no longer accepts this sign-in")
    reset = limits.blocked_until(who)
    if status in (403, 429) and response.headers.get("x-ratelimit-remaining") == "0" and reset:
        raise GitHubRateLimited(reset)
    if status in (403, 429) and response.headers.get("retry-after"):
        wait = number(response.headers.get("retry-after")) or 60
        limits.block(who, time.time() + wait)
        raise GitHubRateLimited(time.time() + wait, secondary=True)
    if status == 403:
        accepted = response.headers.get("x-accepted-oauth-scopes", "")
        raise GitHubForbidden(message, tuple(s.strip() for s in accepted.split(",") if s.strip()))
    if status == 404:
        raise GitHubNotFound("Not found, or you have no access")
    if status == 422:
        raise GitHubInvalidInput(f"GitHub refused the input: {message}")
    if status == 501:
        raise GitHubUnsupported(message)
    raise GitHubError(f"GitHub answered HTTP {status}")
