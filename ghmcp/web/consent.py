"""The consent step between `/authorize` and GitHub, and the browser cookies that guard the flow.

Without it, any dynamically registered client could obtain a token for a user who once
approved the GitHub App, since GitHub skips its own screen (MCP spec, "confused deputy").
"""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ghmcp import audit
from ghmcp.asgi import pages
from ghmcp.auth import choice
from ghmcp.auth.keys import Keyring, new_secret, token_hash
from ghmcp.auth.records import PendingAuthorization
from ghmcp.auth.registration import LOOPBACK_HOSTS
from ghmcp.auth.scopes import SCOPES
from ghmcp.config import Settings
from github_provider import GitHubOAuthProvider

MAX_REMEMBERED = 20  # (client, redirect URI) pairs per browser; the oldest is forgotten first
MAX_LOGINS = 5  # sign-ins one browser may have under way at GitHub at once


class BrowserCookies:
    """Signed, HttpOnly, SameSite=Lax cookies; `__Host-` and Secure when served over https."""

    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        self.settings = settings
        self.keyring = keyring

    def name(self, base: str) -> str:
        return f"__Host-{base}" if self.settings.https else base

    def read(self, request: Request, base: str, max_age: int) -> Any:
        return self.keyring.load_signed(base, request.cookies.get(self.name(base)), max_age)

    def write(self, response: Response, base: str, payload: Any, max_age: int) -> None:
        value = self.keyring.signer(base).dumps(payload)
        response.set_cookie(
            self.name(base), value, max_age=max_age, path="/", secure=self.settings.https, httponly=True, samesite="lax"
        )

    def clear(self, response: Response, base: str) -> None:
        response.delete_cookie(self.name(base), path="/", secure=self.settings.https, httponly=True, samesite="lax")

    def _logins(self, request: Request) -> list[str]:
        bound = self.read(request, "mcp_login", self.settings.state_seconds)
        return [b for b in bound if isinstance(b, str)] if isinstance(bound, list) else []

    def bind_login(self, request: Request, response: Response, state: str) -> None:
        """Mark this browser as the one that approved `state` (several sign-ins may be under way)."""
        logins = [*self._logins(request), token_hash(state)][-MAX_LOGINS:]
        self.write(response, "mcp_login", logins, self.settings.state_seconds)

    def login_matches(self, request: Request, state: str) -> bool:
        """Login-CSRF defence: the callback must arrive in the browser that approved."""
        wanted = token_hash(state)
        return any(hmac.compare_digest(bound, wanted) for bound in self._logins(request))

    # Issue 19: what the user said about repositories, per sign-in (by state): "chosen" (only some, picked
    # after GitHub), "all", or nothing at all ("keep": a remembered consent showed no page).
    def mark_repositories(self, request: Request, response: Response, state: str, mode: str) -> None:
        marks = [m for m in self._repository_marks(request) if m[0] != token_hash(state)]
        marks = [*marks, [token_hash(state), mode]][-MAX_LOGINS:]
        self.write(response, "mcp_repositories", marks, self.settings.state_seconds)

    def repositories_mode(self, request: Request, state: str) -> str:
        return next((m[1] for m in self._repository_marks(request) if m[0] == token_hash(state)), "keep")

    def _repository_marks(self, request: Request) -> list[list[str]]:
        marks = self.read(request, "mcp_repositories", self.settings.state_seconds)
        return [m for m in marks if isinstance(m, list) and len(m) == 2] if isinstance(marks, list) else []

    def release_login(self, request: Request, response: Response, state: str) -> None:
        rest = [bound for bound in self._logins(request) if bound != token_hash(state)]
        if rest:
            self.write(response, "mcp_login", rest, self.settings.state_seconds)
        else:
            self.clear(response, "mcp_login")


class ConsentPage:
    def __init__(self, settings: Settings, provider: GitHubOAuthProvider, cookies: BrowserCookies) -> None:
        self.settings = settings
        self.provider = provider
        self.cookies = cookies

    async def show(self, request: Request) -> Response:
        request_id = request.query_params.get("request", "")
        pending = await self.provider.pending(request_id) if request_id else None
        if pending is None:
            return self._expired()
        if not self.settings.consent_always_ask and not pending.ask and self._remembered(request, pending):
            return await self._approve(request, request_id, pending)
        # CSRF (signed double submit): the form's token names this request, the cookie's nonce and
        # the scopes the page shows (only those can be kept).
        # A nonce this browser already holds is kept, so two consent tabs open at once both work;
        # each token is still single use, since approving or denying consumes its request.
        held = self.cookies.read(request, "mcp_csrf", self.settings.state_seconds)
        nonce = held if isinstance(held, str) else new_secret()
        shown = choice.offered(pending.scopes)
        csrf = self.cookies.keyring.signer("csrf").dumps([token_hash(request_id), nonce, shown])
        host, warning = describe_redirect(pending.redirect_uri)
        response = pages.render(
            "consent.html",
            app_name=self.settings.app_name,
            form_targets=(self.settings.github_url, form_target(pending.redirect_uri)),
            title=f"Authorize {pending.client_name}",
            client_name=pending.client_name,
            client_host=pending.client_host,
            redirect_host=host,
            github_host=urlsplit(self.settings.github_url).netloc,
            redirect_warning=warning,
            scopes=[
                {"name": s, "description": SCOPES[s].description, "locked": s == choice.SIGN_IN_SCOPE} for s in shown
            ],
            request_id=request_id,
            csrf=csrf,
        )
        self.cookies.write(response, "mcp_csrf", nonce, self.settings.state_seconds)
        return response

    async def submit(self, request: Request) -> Response:
        try:
            form = await request.form()
        except Exception:  # malformed multipart bodies raise a variety of parser errors
            return self._refused()
        request_id, csrf, action = (str(form.get(k, "")) for k in ("request", "csrf", "action"))
        signed = self.cookies.keyring.load_signed("csrf", csrf, self.settings.state_seconds)
        nonce = self.cookies.read(request, "mcp_csrf", self.settings.state_seconds)
        if not (isinstance(signed, list) and isinstance(nonce, str) and signed[:2] == [token_hash(request_id), nonce]):
            return self._refused()
        if action == "deny":
            redirect = await self.provider.deny(request_id)
            if redirect is None:
                return self._expired()
            response: Response = RedirectResponse(redirect, status_code=303)
        elif action == "approve":
            pending = await self.provider.pending(request_id)
            if pending is None:
                return self._expired()
            kept = _kept_scopes(signed, form.getlist("scope"))
            if kept is None:
                return self._forged_scope()
            chosen = "chosen" if str(form.get("repositories", "all")) == "chosen" else "all"
            response = await self._approve(request, request_id, pending, kept, repositories=chosen)
        else:
            return self._refused()
        self.cookies.clear(response, "mcp_csrf")  # single use
        return response

    async def _approve(
        self,
        request: Request,
        request_id: str,
        pending: PendingAuthorization,
        kept: list[str] | None = None,
        *,
        repositories: str = "keep",
    ) -> Response:
        """Consent to the scopes the user `kept` (None: a remembered consent, to all that were asked)."""
        approved = await self.provider.approve(request_id, kept)
        if approved is None:
            return self._expired()
        github_url, state = approved
        scopes = pending.scopes if kept is None else [s for s in pending.scopes if s in kept]
        unchecked = [s for s in pending.scopes if s not in scopes]
        audit.event("consent_given", client_id=pending.client_id, scopes=scopes, unchecked=unchecked)
        pending = pending.model_copy(update={"scopes": scopes})  # a remembered approval covers only these
        response = RedirectResponse(github_url, status_code=303)
        self.cookies.bind_login(request, response, state)
        self.cookies.mark_repositories(request, response, state, repositories)
        if repositories == "chosen":
            # A limited sign-in is not remembered: the next one shows the page again rather than skip it.
            self._remember(request, response, pending, forget=True)
        elif not self.settings.consent_always_ask:
            self._remember(request, response, pending)
        return response

    def _remembered(self, request: Request, pending: PendingAuthorization) -> bool:
        key = remember_key(pending.client_id, pending.redirect_uri)
        return any(e[0] == key and set(pending.scopes) <= set(e[1]) for e in self._remembered_entries(request))

    def _remembered_entries(self, request: Request) -> list[list[Any]]:
        entries = self.cookies.read(request, "mcp_consent", self.settings.consent_remember_seconds)
        now = time.time()
        if not isinstance(entries, list):
            return []
        return [e for e in entries if isinstance(e, list) and len(e) == 3 and e[2] > now]

    def _remember(
        self, request: Request, response: Response, pending: PendingAuthorization, *, forget: bool = False
    ) -> None:
        """Remember this approval for (browser, client, redirect URI), or `forget` it; other scopes ask again."""
        key = remember_key(pending.client_id, pending.redirect_uri)
        entries = [e for e in self._remembered_entries(request) if e[0] != key]
        if not forget:
            entries.append([key, sorted(pending.scopes), time.time() + self.settings.consent_remember_seconds])
        self.cookies.write(response, "mcp_consent", entries[-MAX_REMEMBERED:], self.settings.consent_remember_seconds)

    def _expired(self) -> Response:
        return pages.message(
            self.settings.app_name,
            "This sign-in link is no longer valid",
            "It expired or was already used. Start the connection again from your app.",
            400,
        )

    def _refused(self) -> Response:
        return pages.message(
            self.settings.app_name,
            "Request not accepted",
            "This form could not be verified. Reload the sign-in from your app and try again.",
            403,
        )

    def _forged_scope(self) -> Response:
        return pages.message(
            self.settings.app_name,
            "Request not accepted",
            "The form named access that this page did not offer. Reload the sign-in from your app and try again.",
            400,
        )


def _kept_scopes(signed: list[Any], submitted: list[Any]) -> list[str] | None:
    """The scopes the user kept, of those the page showed (named in its signed CSRF token); None when
    the form names another (forged: nothing is approved or stored)."""
    shown = signed[2] if len(signed) == 3 and isinstance(signed[2], list) else None
    if shown is None or not all(isinstance(s, str) for s in [*shown, *submitted]):
        return None
    return choice.kept(shown, submitted)


def remember_key(client_id: str, redirect_uri: str) -> str:
    """(client, redirect URI) as a short digest: the cookie stays far below the 4 KiB browsers keep,
    however long the URIs, and does not list the apps a user approved."""
    return token_hash(f"{client_id}\0{redirect_uri}")[:32]


def describe_redirect(uri: str) -> tuple[str, str | None]:
    """Where the user will be sent, in words, and a warning when that place is not a web site."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return (
            f"the {parts.scheme}: app",
            f"The sign-in result goes to an app on this device through the {parts.scheme}: link type, "
            "which any installed app can register. Continue only if you started this from that app.",
        )
    host = parts.netloc
    if parts.hostname in LOOPBACK_HOSTS:
        return host, (
            "The sign-in result goes to a program running on this computer (localhost). "
            "Continue only if you just started this sign-in from an app on this device."
        )
    return host, None


def form_target(uri: str) -> str:
    """The CSP form-action source for a redirect URI: its origin, or its scheme for app links."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:"
