"""Upstream helpers: every request this server makes to GitHub goes through `GitHubClient`.

Base URLs are settings, which is both how the tests point at a fake GitHub and how GitHub
Enterprise Server is supported. One `httpx2.AsyncClient` is shared per process: creating one
per call costs tens of milliseconds of CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx2

TIMEOUT = httpx2.Timeout(10.0, connect=5.0)


class GitHubError(Exception):
    """GitHub could not be reached or answered something unusable."""


class GitHubUnauthorized(GitHubError):
    """GitHub refused the token (HTTP 401): it was revoked, or it expired."""


class GitHubOAuthError(GitHubError):
    """The OAuth token endpoint answered `{"error": ...}` (GitHub does so with HTTP 200)."""

    def __init__(self, error: str) -> None:
        super().__init__(f"GitHub refused the request: {error}")
        self.error = error


@dataclass
class GitHubTokens:
    access_token: str
    scopes: str
    expires_at: float | None = None  # GitHub App user tokens expire; OAuth App tokens do not
    refresh_token: str | None = None
    refresh_expires_at: float | None = None


def new_http_client() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(timeout=TIMEOUT, headers={"User-Agent": "github-mcp-server-template"})


class GitHubClient:
    def __init__(
        self, http: httpx2.AsyncClient, github_url: str, api_url: str, client_id: str, client_secret: str
    ) -> None:
        self.http = http
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
        data = await self._json("POST", f"{self.github_url}/login/oauth/access_token", data=body)
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

    async def get_user(self, token: str) -> dict[str, Any]:
        return await self._json("GET", f"{self.api_url}/user", token=token)

    async def list_repos(self, token: str, *, per_page: int, page: int) -> list[dict[str, Any]]:
        params = {"per_page": str(per_page), "page": str(page), "sort": "updated"}
        data = await self._json("GET", f"{self.api_url}/user/repos", token=token, params=params)
        return list(data["items"])

    async def is_org_member(self, token: str, org: str) -> bool:
        try:
            data = await self._json("GET", f"{self.api_url}/user/memberships/orgs/{org}", token=token)
        except GitHubError:
            return False
        return data.get("state") == "active"

    async def set_star(self, token: str, owner: str, repo: str, star: bool) -> None:
        await self._send("PUT" if star else "DELETE", f"{self.api_url}/user/starred/{owner}/{repo}", token=token)

    async def revoke(self, token: str) -> bool:
        """Delete this one token at GitHub. Best effort: False on failure."""
        return await self._app_delete("token", token)

    async def revoke_grant(self, token: str) -> bool:
        """Delete the user's whole authorization of this app (every token it holds), so that GitHub
        asks for consent again at the next sign-in. Best effort: False on failure."""
        return await self._app_delete("grant", token)

    async def _app_delete(self, what: str, token: str) -> bool:
        try:
            response = await self.http.request(
                "DELETE",
                f"{self.api_url}/applications/{self.client_id}/{what}",
                auth=(self.client_id, self._client_secret),
                json={"access_token": token},
                headers={"Accept": "application/vnd.github+json"},
            )
        except httpx2.HTTPError:
            return False
        return response.status_code in (204, 404)

    async def _json(self, method: str, url: str, *, token: str | None = None, **kwargs: Any) -> dict[str, Any]:
        response = await self._send(method, url, token=token, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise GitHubError("GitHub answered something that is not JSON") from None
        return data if isinstance(data, dict) else {"items": data}

    async def _send(self, method: str, url: str, *, token: str | None = None, **kwargs: Any) -> httpx2.Response:
        headers = {"Accept": "application/json" if token is None else "application/vnd.github+json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self.http.request(method, url, headers=headers, **kwargs)
        except httpx2.HTTPError as exc:
            raise GitHubError(f"GitHub is unreachable ({type(exc).__name__})") from None
        if response.status_code == 401:
            raise GitHubUnauthorized("GitHub no longer accepts this sign-in")
        if response.status_code >= 400:
            raise GitHubError(f"GitHub answered HTTP {response.status_code}")
        return response
