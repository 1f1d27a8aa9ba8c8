"""What can go wrong talking to GitHub, as exceptions a tool can turn into a sentence for the user."""

from __future__ import annotations

import time

import httpx2


class GitHubError(Exception):
    """GitHub could not be reached or answered something unusable."""


class GitHubUnavailable(GitHubError):
    """GitHub did not answer in time, answered 5xx, or dropped the connection: an outage that
    passes, so the same request started again later will likely work."""


class GitHubUnauthorized(GitHubError):
    """GitHub refused the token (HTTP 401): it was revoked, or it expired."""


class GitHubOAuthError(GitHubError):
    """The OAuth token endpoint answered `{"error": ...}` (GitHub does so with HTTP 200)."""

    def __init__(self, error: str) -> None:
        super().__init__(f"GitHub refused the request: {error}")
        self.error = error


class GitHubNotFound(GitHubError):
    """HTTP 404: GitHub also answers so for private data the token may not see."""


class GitHubInvalidInput(GitHubError):
    """A path segment we refuse to send, or GitHub's 422 validation message."""


class GitHubForbidden(GitHubError):
    """HTTP 403 that is not a rate limit: usually a scope the token lacks (`accepted_scopes`)."""

    def __init__(self, message: str, accepted_scopes: tuple[str, ...]) -> None:
        super().__init__(message)
        self.accepted_scopes = accepted_scopes


class GitHubUnsupported(GitHubError):
    """HTTP 501: this GitHub (the demo stand-in, or an older GitHub Enterprise Server) lacks the endpoint."""


class GitHubRateLimited(GitHubError):
    """A primary (quota used up) or secondary (too fast) rate limit, until `reset_at`."""

    def __init__(self, reset_at: float, *, secondary: bool = False) -> None:
        wait = max(int(reset_at - time.time()) + 1, 1)
        if secondary:
            text = f"GitHub asks to slow down (secondary rate limit): wait {wait} seconds and try again"
        else:
            when = time.strftime("%H:%M:%S UTC", time.gmtime(reset_at))
            text = f"GitHub's rate limit for your account is used up: it resets at {when} (in {wait} seconds)"
        super().__init__(text)
        self.reset_at = reset_at


def error_message(response: httpx2.Response) -> str:
    """GitHub's own error text (`message` plus any per-field `errors`), never a body dump."""
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(data, dict):
        return f"HTTP {response.status_code}"
    details = [
        str(e.get("message") or " ".join(str(e.get(k, "")) for k in ("resource", "field", "code")).strip())
        for e in data.get("errors") or []
        if isinstance(e, dict)
    ]
    message = str(data.get("message") or f"HTTP {response.status_code}")
    return f"{message} ({'; '.join(details)})" if details else message
