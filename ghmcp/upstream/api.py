"""Upstream helpers: every request this server makes to GitHub goes through `GitHubClient`.

Base URLs are settings, which is both how the tests point at a fake GitHub and how GitHub
Enterprise Server is supported. One `httpx2.AsyncClient` is shared per process: creating one
per call costs tens of milliseconds of CPU.

REST calls are polite: each user's GET answers are kept in a bounded cache and revalidated with
`If-None-Match`/`If-Modified-Since` (GitHub does not count a 304 against the rate limit), and
after a rate-limit answer nothing is sent for that user until GitHub's reset time.

Every request goes out through `sending.request`: a bounded total time, and one retry for a safe
read only. The answers are read in `answers.py`.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx2

from ghmcp.upstream import sending
from ghmcp.upstream.answers import Answer, GitHubTokens, number, raise_for_status, tokens_from
from ghmcp.upstream.boundary import RepositoryGuard
from ghmcp.upstream.cache import Cached, RateLimitGate, ResponseCache
from ghmcp.upstream.errors import (
    GitHubError,
    GitHubForbidden,
    GitHubInvalidInput,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubUnauthorized,
)

# Per phase; the whole call is bounded by GitHubClient's `timeout_seconds` (sending.py).
TIMEOUT = httpx2.Timeout(10.0, connect=5.0)
# One connection per request in flight (HTTP/1.1). Every call ends within its time budget, so a
# slow GitHub holds a connection for at most that long; a fast call waits for the pool only when
# more than `max_connections` calls are in flight at once. 200 stays well under a process's usual
# 1024 open files, which incoming connections share; 50 idle ones are kept warm for bursts.
LIMITS = httpx2.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30.0)
DEFAULT_BUDGET_SECONDS = 10.0
API_VERSION = "2022-11-28"
MAX_PAGES = 10
NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')


def new_http_client(
    wrap: Callable[[httpx2.AsyncBaseTransport], httpx2.AsyncBaseTransport] | None = None,
) -> httpx2.AsyncClient:
    """The one client every GitHub request of this process shares (see LIMITS). `wrap` (the tracing and
    metrics layer) gets the pooled transport, so LIMITS hold with observability on too."""
    headers = {"User-Agent": "github-mcp-server-template"}
    if wrap is None:
        return httpx2.AsyncClient(timeout=TIMEOUT, limits=LIMITS, headers=headers)
    return httpx2.AsyncClient(
        timeout=TIMEOUT, headers=headers, transport=wrap(httpx2.AsyncHTTPTransport(limits=LIMITS))
    )


class GitHubClient:
    def __init__(
        self,
        http: httpx2.AsyncClient,
        github_url: str,
        api_url: str,
        client_id: str,
        client_secret: str,
        *,
        cache_bytes: int = 32 * 1024 * 1024,
        timeout_seconds: float = DEFAULT_BUDGET_SECONDS,
    ) -> None:
        self.http = http
        self.timeout_seconds = timeout_seconds
        self.cache = ResponseCache(cache_bytes)
        self.limits = RateLimitGate()
        self.guard = RepositoryGuard()
        self.github_url = github_url
        self.api_url = api_url
        self.client_id = client_id
        self._client_secret = client_secret

    def authorize_url(self, *, redirect_uri: str, state: str, scopes: list[str], code_challenge: str) -> str:
        query = {
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "scope": " ".join(scopes),
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            "allow_signup": "false",
        }
        return f"{self.github_url}/login/oauth/authorize?{urlencode(query)}"

    async def exchange_code(self, code: str, *, redirect_uri: str, code_verifier: str) -> GitHubTokens:
        return await self._token_request({"code": code, "redirect_uri": redirect_uri, "code_verifier": code_verifier})

    async def refresh(self, refresh_token: str) -> GitHubTokens:
        return await self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def _token_request(self, form: dict[str, str]) -> GitHubTokens:
        body = {"client_id": self.client_id, "client_secret": self._client_secret, **form}
        # Sent once, whatever happens: the code and the refresh token are single use (sending.py).
        response = await self._send(
            "POST", f"{self.github_url}/login/oauth/access_token", data=body, headers={"Accept": "application/json"}
        )
        return tokens_from(response)

    async def get_user(self, token: str) -> dict[str, Any]:
        data = await self.get(token, ("user",))
        if not isinstance(data, dict):
            raise GitHubError("GitHub's /user answer is not an object")
        return data

    async def identity(self, token: str) -> tuple[int, str]:
        """(account id, login) of the token's user; GitHubError when /user does not name them usably."""
        user = await self.get_user(token)
        github_id, login = user.get("id"), user.get("login")
        if not isinstance(github_id, int) or isinstance(github_id, bool) or not isinstance(login, str) or not login:
            raise GitHubError("GitHub's /user answer has no usable id and login")
        return github_id, login

    async def list_repos(self, token: str, *, per_page: int, page: int) -> list[dict[str, Any]]:
        params = {"per_page": str(per_page), "page": str(page), "sort": "updated"}
        return list(await self.get(token, ("user", "repos"), params))

    async def is_org_member(self, token: str, org: str) -> bool:
        """Active membership; GitHubError when GitHub cannot tell right now (so callers never
        mistake an outage for "not a member", nor for "member")."""
        try:
            data = await self.get(token, ("user", "memberships", "orgs", org))
        except (GitHubNotFound, GitHubForbidden, GitHubUnauthorized):
            return False
        return isinstance(data, dict) and data.get("state") == "active"

    async def set_star(self, token: str, owner: str, repo: str, star: bool) -> None:
        await self.send(token, "PUT" if star else "DELETE", ("user", "starred", owner, repo))

    # The REST API. `path` is a tuple of segments, each percent-encoded by `api_url_for`. Each method
    # asks the repository guard first (boundary.py: the grant's repositories), and filters listings.

    async def get(self, token: str, path: tuple[str, ...], params: dict[str, str] | None = None) -> Any:
        """GET one resource, revalidated from this user's cache when it was fetched before."""
        await self._guarded(token, path, params)
        data = (await self._rest(token, "GET", self.api_url_for(path, params))).data
        if isinstance(data, list):
            return self.guard.filtered(data)
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            return data | {"items": self.guard.filtered(data["items"])}
        return data

    async def paginate(
        self,
        token: str,
        path: tuple[str, ...],
        params: dict[str, str],
        limit: int,
        *,
        items_key: str | None = None,
        keep: Callable[[Any], bool] = lambda item: True,
        on_page: Callable[[int], Awaitable[None]] | None = None,
    ) -> list[Any]:
        """Up to `limit` items, following `Link: rel="next"` (search answers wrap them in `items_key`).

        At most `MAX_PAGES` requests, so a filter (`keep`) that drops most items cannot walk a huge list.
        `on_page` hears how many items are gathered after each page (tools send it as progress).
        """
        await self._guarded(token, path, params)
        url: str | None = self.api_url_for(path, params | {"per_page": str(min(max(limit, 1), 100))})
        items: list[Any] = []
        for _ in range(MAX_PAGES):
            if url is None or len(items) >= limit:
                break
            answer = await self._rest(token, "GET", url)
            page = answer.data[items_key] if items_key else answer.data
            items.extend(item for item in self.guard.filtered(page) if keep(item))
            url = self._next_page(answer.link)
            if on_page is not None:
                await on_page(min(len(items), limit))
        return items[:limit]

    async def send(self, token: str, method: str, path: tuple[str, ...], body: dict[str, Any] | None = None) -> Any:
        await self._guarded(token, path, None)
        return (await self._rest(token, method, self.api_url_for(path), body)).data

    async def _guarded(self, token: str, path: tuple[str, ...], params: dict[str, str] | None) -> None:
        async def lookup(repository: tuple[str, ...]) -> Any:
            return (await self._rest(token, "GET", self.api_url_for(repository))).data

        await self.guard.check(path, params, lookup)

    def api_url_for(self, path: tuple[str, ...], params: dict[str, str] | None = None) -> str:
        """The one place a REST URL is built: every segment is checked and percent-encoded."""
        for segment in path:
            # "." and ".." survive percent-encoding and would climb the path (e.g. `/repos/../user`).
            if segment in ("", ".", ".."):
                raise GitHubInvalidInput(f"{segment!r} is not a valid name or path segment")
        url = self.api_url + "/" + "/".join(quote(segment, safe="") for segment in path)
        return f"{url}?{urlencode(sorted(params.items()))}" if params else url

    def _next_page(self, link: str | None) -> str | None:
        match = NEXT_LINK.search(link or "")
        # Never send the user's token to a host GitHub's header might name other than the API.
        if match is None or not match.group(1).startswith(self.api_url + "/"):
            return None
        return match.group(1)

    async def _rest(self, token: str, method: str, url: str, body: dict[str, Any] | None = None) -> Answer:
        who = hashlib.sha256(token.encode()).hexdigest()  # cache and limits are per user; no token kept
        until = self.limits.blocked_until(who)
        if until is not None:
            raise GitHubRateLimited(until)
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": API_VERSION,
        }
        key = f"{who} {url}"
        cached = self.cache.get(key) if method == "GET" else None
        if cached is not None:
            headers.update(cached.validators())
        response = await self._send(method, url, headers=headers, json=body)
        if response.headers.get("x-ratelimit-remaining") == "0":
            # The last unit is spent (or was already): nothing more leaves for this user before the reset.
            self.limits.block(who, number(response.headers.get("x-ratelimit-reset")) or time.time() + 60)
        if response.status_code == 304 and cached is not None:
            return Answer.of(cached)  # GitHub does not count a 304 against the rate limit
        raise_for_status(response, who, self.limits)
        entry = Cached(
            response.content,
            response.headers.get("link"),
            response.headers.get("etag"),
            response.headers.get("last-modified"),
        )
        if method == "GET" and (entry.etag or entry.last_modified):
            self.cache.put(key, entry)
        return Answer.of(entry)

    async def revoke(self, token: str) -> bool:
        """Delete this one token at GitHub. Best effort: False on failure."""
        return await self._app_delete("token", token)

    async def revoke_grant(self, token: str) -> bool:
        """Delete the user's whole authorization of this app (every token it holds), so that GitHub
        asks for consent again at the next sign-in. Best effort: False on failure."""
        return await self._app_delete("grant", token)

    async def _app_delete(self, what: str, token: str) -> bool:
        try:
            response = await self._send(
                "DELETE",
                f"{self.api_url}/applications/{self.client_id}/{what}",
                auth=(self.client_id, self._client_secret),
                json={"access_token": token},
                headers={"Accept": "application/vnd.github+json"},
            )
        except GitHubError:
            return False
        return response.status_code in (204, 404)

    async def _send(self, method: str, url: str, **options: Any) -> httpx2.Response:
        return await sending.request(self.http, method, url, budget=self.timeout_seconds, **options)
