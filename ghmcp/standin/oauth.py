"""GitHub's OAuth web flow (authorize, token, token and grant deletion) and the stand-in's routes."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ghmcp.asgi import pages
from ghmcp.standin.http import (
    basic_credentials,
    missing_endpoint,
    not_found,
    page,
    read_params,
    rest_error,
    token_error,
    token_success,
)
from ghmcp.standin.model import (
    _VERIFIER_RE,
    AUTHORIZE_ERRORS_URI,
    CODE_TTL,
    REDIRECT_MISMATCH,
    REFRESH_DOCS_URI,
    REST_DOCS_URI,
    TOKEN_ERRORS_URI,
    _Code,
    parse_scopes,
    pkce_challenge,
    redirect_uri_allowed,
    with_query,
)
from ghmcp.standin.pages import WebPages
from ghmcp.standin.rest import RestApi
from ghmcp.standin.state import record


class GitHubStandIn(RestApi, WebPages):
    """One github.com with a single registered OAuth App (or GitHub App, ``expiring_tokens``), and its pages."""

    def _build_app(self) -> Starlette:
        routes = [
            Route("/login/oauth/authorize", self._authorize_endpoint, methods=["GET"]),
            Route("/login/oauth/access_token", self._token_endpoint, methods=["POST"]),
            Route("/user", self._user_endpoint, methods=["GET"]),
            Route(
                "/user/memberships/orgs/{org}",
                self._membership_endpoint,
                methods=["GET"],
            ),
            Route("/user/repos", self._repos_endpoint, methods=["GET"]),
            Route("/users/{login}", self._account_endpoint, methods=["GET"]),
            Route("/search/repositories", self._search_endpoint, methods=["GET"]),
            Route("/repos/{owner}/{repo}", self._repo_endpoint, methods=["GET"]),
            Route("/repos/{owner}/{repo}/readme", self._readme_endpoint, methods=["GET"]),
            Route("/repos/{owner}/{repo}/contents", self._contents_endpoint, methods=["GET"]),
            Route("/repos/{owner}/{repo}/contents/{path:path}", self._contents_endpoint, methods=["GET"]),
            Route("/repos/{owner}/{repo}/issues", self._issues_endpoint, methods=["GET", "POST"]),
            Route("/repos/{owner}/{repo}/issues/{number}", self._issue_endpoint, methods=["GET"]),
            Route("/repos/{owner}/{repo}/issues/{number}/comments", self._comments_endpoint, methods=["GET", "POST"]),
            Route("/repos/{owner}/{repo}/pulls", self._pulls_endpoint, methods=["GET"]),
            Route("/repos/{owner}/{repo}/pulls/{number}", self._pull_endpoint, methods=["GET"]),
            Route("/repos/{owner}/{repo}/pulls/{number}/files", self._pull_endpoint, methods=["GET"]),
            Route(
                "/user/starred/{owner}/{repo}",
                self._star_endpoint,
                methods=["PUT", "DELETE"],
            ),
            Route(
                "/applications/{client_id}/token",
                self._delete_token_endpoint,
                methods=["DELETE"],
            ),
            Route(
                "/applications/{client_id}/grant",
                self._delete_token_endpoint,
                methods=["DELETE"],
            ),
            # The html_url pages (pages.py): last, so that no REST path is taken for one.
            Route("/{owner}", self._user_page, methods=["GET"]),
            Route("/{owner}/{repo}", self._repo_page, methods=["GET"]),
            Route("/{owner}/{repo}/issues/{number}", self._issue_page, methods=["GET"]),
            Route("/{owner}/{repo}/pull/{number}", self._issue_page, methods=["GET"]),
        ]
        # A wrong method gets GitHub's JSON 404; a path not served here says so (http.missing_endpoint).
        return Starlette(routes=routes, exception_handlers={404: missing_endpoint, 405: not_found})

    # ------------------------------------------------------------ OAuth flow

    async def _authorize_endpoint(self, request: Request) -> Response:
        """GitHub's authorize page; with nobody signed in, a user picker stands in for GitHub's login."""
        params = dict(request.query_params)
        picked = params.pop("login", None)  # the picker's choice
        with self._lock:
            record(self.authorize_requests, dict(params))
        if params.get("client_id") != self.client_id:
            return page(404, "Not Found", "No application is registered with this client_id.")
        redirect_uri = params.get("redirect_uri") or self.callback_url
        if not redirect_uri:
            return page(
                400,
                "Bad Request",
                "redirect_uri is required: no callback URL is registered.",
            )
        state = params.get("state")
        if self.callback_url is not None and not redirect_uri_allowed(redirect_uri, self.callback_url):
            # GitHub sends this error to the *registered* callback, not the offered URI.
            return self._authorize_error(
                self.callback_url,
                state,
                "redirect_uri_mismatch",
                REDIRECT_MISMATCH,
                "redirect-uri-mismatch",
            )
        challenge = params.get("code_challenge") or None
        if challenge is not None and params.get("code_challenge_method") != "S256":
            # GitHub accepts only S256; the RFC's implicit "plain" default is refused.
            return page(400, "Bad Request", "Only the S256 code_challenge_method is supported.")
        code: str | None = None
        with self._lock:
            denied, self.deny_next = self.deny_next, False
            login = picked if picked is not None else self.current_login
            user = self._user(login) if login is not None else None
            if login is None and not denied:  # nobody signed in: GitHub would ask who you are
                return self._user_picker(request)
            if not denied and user is not None:
                scopes = () if self.expiring_tokens else parse_scopes(params.get("scope", ""))
                code = secrets.token_hex(10)
                self._codes[code] = _Code(
                    client_id=self.client_id,
                    redirect_uri=redirect_uri,
                    scopes=scopes,
                    login=user.login,
                    code_challenge=challenge,
                    expires_at=self.now() + CODE_TTL,
                )
        if denied:
            return self._authorize_error(
                redirect_uri,
                state,
                "access_denied",
                "The user has denied your application access.",
                "access-denied",
            )
        if code is None:
            return page(
                400,
                "Unknown user",
                "No such user: pick one of the listed accounts.",
            )
        return RedirectResponse(with_query(redirect_uri, {"code": code, "state": state}), status_code=302)

    def _user_picker(self, request: Request) -> Response:
        """One link per account back to this page with `login` added: links, not a form, so no CSP
        form-action has to admit the chain of redirects that follows (callback, then the client)."""
        users = sorted(self.users.values(), key=lambda u: u.login.lower())
        here = f"{request.url.path}?{request.url.query}"
        return pages.render(
            "github_standin.html",
            app_name="GitHub stand-in",
            title="Sign in to GitHub",
            choices=[(u.login, u.name, with_query(here, {"login": u.login})) for u in users],
        )

    @staticmethod
    def _authorize_error(url: str, state: str | None, error: str, description: str, anchor: str) -> Response:
        query = {
            "error": error,
            "error_description": description,
            "error_uri": f"{AUTHORIZE_ERRORS_URI}#{anchor}",
            "state": state,
        }
        return RedirectResponse(with_query(url, query), status_code=302)

    async def _token_endpoint(self, request: Request) -> Response:
        params = await read_params(request)
        basic = basic_credentials(request)
        wants_json = "json" in request.headers.get("accept", "").lower()
        with self._lock:
            record(self.token_requests, dict(params))
        client_id = params.get("client_id") or (basic[0] if basic else None)
        client_secret = params.get("client_secret") or (basic[1] if basic else None)
        if client_id != self.client_id or client_secret != self.client_secret:
            return token_error(
                wants_json,
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
                f"{TOKEN_ERRORS_URI}#incorrect-client-credentials",
            )
        grant_type = params.get("grant_type") or "authorization_code"
        if grant_type == "refresh_token":
            return self._refresh_grant(params, wants_json)
        if grant_type != "authorization_code":
            return token_error(
                wants_json,
                "unsupported_grant_type",
                "The grant type is not supported.",
                TOKEN_ERRORS_URI,
            )
        return self._code_grant(params, wants_json)

    def _code_grant(self, params: Mapping[str, str], wants_json: bool) -> Response:
        bad_code = token_error(
            wants_json,
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            f"{TOKEN_ERRORS_URI}#bad-verification-code",
        )
        with self._lock:
            code = self._codes.get(params.get("code", ""))
            if code is None or code.used or code.expires_at <= self.now() or code.client_id != self.client_id:
                return bad_code
            # Any presentation with valid client credentials burns the code, even a
            # failed one (OAuth 2.1 / security BCP); GitHub does not document this.
            code.used = True
            redirect_uri = params.get("redirect_uri")
            if redirect_uri and redirect_uri != code.redirect_uri:
                return token_error(
                    wants_json,
                    "redirect_uri_mismatch",
                    REDIRECT_MISMATCH,
                    f"{AUTHORIZE_ERRORS_URI}#redirect-uri-mismatch2",
                )
            if code.code_challenge is not None:
                verifier = params.get("code_verifier", "")
                if not _VERIFIER_RE.match(verifier) or pkce_challenge(verifier) != code.code_challenge:
                    return bad_code
            pair = self._mint(code.login, code.scopes)
        return token_success(pair, wants_json)

    def _refresh_grant(self, params: Mapping[str, str], wants_json: bool) -> Response:
        with self._lock:
            old = self._refresh.get(params.get("refresh_token", ""))
            if self.refuse_refresh or old is None or old.used or old.expires_at <= self.now():
                return token_error(
                    wants_json,
                    "bad_refresh_token",
                    "The refresh token passed is incorrect or expired.",
                    REFRESH_DOCS_URI,
                )
            # "Once you use a refresh token, that refresh token and the old user
            # access token will no longer work."
            old.used = True
            if old.access_token in self._access:
                self._access[old.access_token].revoked = True
            pair = self._mint(old.login, old.scopes)
        return token_success(pair, wants_json)

    async def _delete_token_endpoint(self, request: Request) -> Response:
        """`DELETE .../token` kills one token; `DELETE .../grant` the user's whole authorization."""
        whole_grant = request.url.path.endswith("/grant")
        anchor = "delete-an-app-authorization" if whole_grant else "delete-an-app-token"
        docs = f"{REST_DOCS_URI}/apps/oauth-applications#{anchor}"
        basic = basic_credentials(request)
        if basic is None:
            return rest_error(401, "Requires authentication", docs)
        if basic != (self.client_id, self.client_secret):
            return rest_error(401, "Bad credentials", docs)
        if request.path_params["client_id"] != self.client_id:
            return rest_error(404, "Not Found", docs)
        params = await read_params(request)
        token = params.get("access_token")
        if not token:
            return rest_error(422, 'Invalid request.\n\n"access_token" wasn\'t supplied.', docs)
        if self.fail_revocations:
            return rest_error(500, "Server Error", docs)
        with self._lock:
            tok = self._access.get(token)
            if tok is None or tok.revoked:
                return rest_error(404, "Not Found", docs)
            if whole_grant:
                for other in [t for t in self._access.values() if t.login.lower() == tok.login.lower()]:
                    self._kill(other.token)
                record(self.grant_revocations, tok.login)
            else:
                self._kill(token)
            record(self.revocations, token)
        return Response(status_code=204)
