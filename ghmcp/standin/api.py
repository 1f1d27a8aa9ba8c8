"""What every REST endpoint shares: the token check, rate limits, GitHub's headers, and its 404s.

Each subject's mixin (``users``, ``repos``, ``issues``, ``pulls``, ``stars``) builds on ``ApiBase``
so that authentication, rate accounting and visibility are decided in one place, the way GitHub
applies them to every endpoint alike.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from ghmcp.standin.http import error_body, etag_matches, rest_error
from ghmcp.standin.model import RATE_LIMIT, RATE_WINDOW, REST_DOCS_URI, Issue, Repo, User, _AccessToken
from ghmcp.standin.state import StandInState, record


class ApiBase(StandInState):
    def _authenticate(self, request: Request) -> tuple[_AccessToken, User] | Response:
        header = request.headers.get("authorization")
        if not header:
            return rest_error(401, "Requires authentication")
        scheme, _, value = header.partition(" ")
        with self._lock:
            tok = self._live_access(value.strip()) if scheme.lower() in ("bearer", "token") else None
            user = self._user(tok.login) if tok is not None else None
        if tok is None or user is None:
            return rest_error(401, "Bad credentials")
        with self._lock:
            retry_after, self.secondary_limit_next = self.secondary_limit_next, 0
            remaining, reset = self._rate.get(user.login.lower(), (RATE_LIMIT, 0))
        docs = f"{REST_DOCS_URI}/using-the-rest-api/rate-limits-for-the-rest-api"
        if retry_after:
            response = rest_error(403, "You have exceeded a secondary rate limit. Please wait a few minutes.", docs)
            response.headers["retry-after"] = str(retry_after)
            return response
        if remaining == 0 and self.now() < reset:
            response = rest_error(403, f"API rate limit exceeded for user ID {user.id}.", docs)
            response.headers.update(
                {"x-ratelimit-limit": str(RATE_LIMIT), "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
            )
            return response
        return tok, user

    def _rest_json(
        self,
        request: Request,
        tok: _AccessToken,
        user: User,
        data: object,
        *,
        status: int = 200,
        accepted_scopes: str = "",
        extra_headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Serialise with GitHub's headers; a 304 does not count against the limit."""
        body = json.dumps(data, separators=(",", ":")).encode()
        etag = 'W/"' + hashlib.sha256(body).hexdigest() + '"'
        not_modified = status == 200 and etag_matches(request.headers.get("if-none-match"), etag)
        with self._lock:
            now = int(self.now())
            remaining, reset = self._rate.get(user.login.lower(), (RATE_LIMIT, now + RATE_WINDOW))
            if now >= reset:
                remaining, reset = RATE_LIMIT, now + RATE_WINDOW
            if not not_modified:
                remaining = max(remaining - 1, 0)
            self._rate[user.login.lower()] = (remaining, reset)
        headers = {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-used": str(RATE_LIMIT - remaining),
            "x-ratelimit-resource": "core",
            "x-oauth-scopes": ", ".join(tok.scopes),
            "x-accepted-oauth-scopes": accepted_scopes,
            "x-github-media-type": "github.v3; format=json",
            "x-github-api-version-selected": "2022-11-28",
            "x-github-request-id": secrets.token_hex(8).upper(),
            "vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
            **(extra_headers or {}),
        }
        if tok.expires_at is not None:
            headers["github-authentication-token-expiration"] = time.strftime(
                "%Y-%m-%d %H:%M:%S UTC", time.gmtime(tok.expires_at)
            )
        if status == 200:
            headers["etag"] = etag
        if not_modified:
            with self._lock:
                record(self.not_modified, (request.method, str(request.scope["path"])))
            return Response(status_code=304, headers=headers)
        return Response(
            body,
            status_code=status,
            headers=headers,
            media_type="application/json; charset=utf-8",
        )

    def _may_see(self, tok: _AccessToken, user: User, owner: User, repo: Repo) -> bool:
        """Private repos need the owner's token with `repo` scope; GitHub App tokens are assumed to have it."""
        return not repo.private or (owner is user and (self.expiring_tokens or "repo" in tok.scopes))

    def _repo_request(
        self, request: Request, *, write: bool = False
    ) -> tuple[_AccessToken, User, User, Repo] | Response:
        """Authenticate and find ``{owner}/{repo}``: 404 when missing or not visible, as GitHub does."""
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        owner = self._user(str(request.path_params["owner"]))
        wanted = str(request.path_params["repo"]).lower()
        repo = next((r for r in owner.repos if r.name.lower() == wanted), None) if owner else None
        if owner is None or repo is None or not self._may_see(tok, user, owner, repo):
            return self._rest_json(request, tok, user, error_body(404, "Not Found", REST_DOCS_URI), status=404)
        needed = {"repo"} if repo.private else {"repo", "public_repo"}
        if write and not self.expiring_tokens and not needed & set(tok.scopes):
            # GitHub's docs do not say whether this is 403 or 404; 403 with the accepted scopes is documented.
            body = error_body(403, "Resource not accessible by OAuth App", REST_DOCS_URI)
            accepted = ", ".join(sorted(needed))
            return self._rest_json(request, tok, user, body, status=403, accepted_scopes=accepted)
        return tok, user, owner, repo

    def _issue_request(
        self, request: Request, *, pull: bool, write: bool = False
    ) -> tuple[_AccessToken, User, User, Repo, Issue] | Response:
        """``_repo_request`` plus issue (or, with ``pull``, pull request) ``{number}``: 404 when missing."""
        found = self._repo_request(request, write=write)
        if isinstance(found, Response):
            return found
        tok, user, owner, repo = found
        number = str(request.path_params["number"])
        issue = next((i for i in repo.issues if str(i.number) == number), None)
        if issue is None or (pull and issue.files is None):
            return self._rest_json(request, tok, user, error_body(404, "Not Found", REST_DOCS_URI), status=404)
        return tok, user, owner, repo, issue
