"""The connected-apps page (`/account`): a user sees which MCP clients hold access to their GitHub
through this server, and disconnects any of them, without asking the client to call `/revoke`.

The page has its own short-lived sign-in: GitHub proves who the user is (the GitHub token used for
that is revoked at once), and a signed session cookie (`__Host-` on https) remembers it for
`SESSION_SECONDS`. Every form posts to `/account` (so the rate limit and body bound of that path
cover them all) with the consent page's CSRF defence and an `action`: `disconnect` only asks for
confirmation, `confirm` disconnects, `narrow` keeps only the checked scopes of one app, `sign-out`
forgets the session. Narrowing bounds the app's grant (`Grant.scopes`), which every token of the
grant is read with: it holds on every replica within the token cache's bound
(auth/token_cache.py), and a refresh afterwards carries only the narrowed scopes. Widening is
never done here: the app asks again, and the user approves on the consent page.

What a row says is what the store already keeps: "connected" is the earliest `signed_in_at` of the
app's live sign-ins, and "last used" the latest `rotated_at`, when it last obtained a token (at
sign-in or refresh). Calls made with a token it already holds are not recorded: writing on every
call would cost the hot path (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ghmcp import audit
from ghmcp.asgi import pages
from ghmcp.auth import choice
from ghmcp.auth.cimd import is_document_url, verified_host
from ghmcp.auth.keys import new_secret
from ghmcp.auth.scopes import SCOPES
from ghmcp.config import Settings
from ghmcp.web import account_repositories
from ghmcp.web.consent import BrowserCookies
from github_provider import GitHubOAuthProvider

SESSION_SECONDS = 900
SHORT_ID = 8  # characters of a registered client's id shown: enough to tell two apps of one name apart


@dataclass
class ConnectedApp:
    grant_id: str
    name: str
    host: str
    verified: bool
    client_id: str  # as shown: a registered client's first characters, a metadata document's whole URL
    scopes: list[tuple[str, str]]  # (scope, in words): its tokens may use these now; the narrowing form's boxes
    connected: str
    last_used: str
    login: str  # the GitHub login and the whole client id, for the audit log
    full_client_id: str
    repositories: list[str] | None = None  # None: every repository the user can reach


class AccountPage:
    def __init__(self, settings: Settings, provider: GitHubOAuthProvider, cookies: BrowserCookies) -> None:
        self.settings = settings
        self.provider = provider
        self.cookies = cookies

    async def show(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return pages.render(
                "account.html",
                app_name=self.settings.app_name,
                form_targets=(self.settings.github_url,),  # the sign-in form's redirect goes to GitHub
                title="Connected apps",
                login=None,
            )
        subject, login = session
        held = self.cookies.read(request, "mcp_csrf", SESSION_SECONDS)
        nonce = held if isinstance(held, str) else new_secret()
        response = pages.render(
            "account.html",
            app_name=self.settings.app_name,
            title="Connected apps",
            login=login,
            apps=await self._apps(subject),
            sign_in_scope=choice.SIGN_IN_SCOPE,
            csrf=self.cookies.keyring.signer("account-csrf").dumps([subject, nonce]),
        )
        self.cookies.write(response, "mcp_csrf", nonce, SESSION_SECONDS)
        return response

    async def sign_in(self, request: Request) -> Response:
        started = await self.provider.login.start_account_sign_in()
        if started is None:
            return pages.message(self.settings.app_name, "Too many sign-ins", "Try again in a few minutes.", 503)
        github_url, state = started
        response = RedirectResponse(github_url, status_code=303)
        self.cookies.bind_login(request, response, state)  # login CSRF: the callback must come back here
        return response

    async def complete(self, state: str, code: str | None) -> Response:
        """The GitHub callback of an account sign-in (routes.GitHubCallback hands it over)."""
        identity = await self.provider.login.account_identity(state, code) if code else None
        if identity is None:
            return pages.message(self.settings.app_name, "Sign-in did not complete", "Try again.", 400)
        response = RedirectResponse("/account", status_code=303)
        self.cookies.write(response, "mcp_account", list(identity), SESSION_SECONDS)
        return response

    async def submit(self, request: Request) -> Response:
        session = self._session(request)
        try:
            form = await request.form()
        except Exception:  # malformed bodies raise a variety of parser errors
            form = None
        nonce = self.cookies.read(request, "mcp_csrf", SESSION_SECONDS)
        if session is None or form is None or not isinstance(nonce, str):
            return self._refused()
        csrf = str(form.get("csrf", ""))
        if self.cookies.keyring.load_signed("account-csrf", csrf, SESSION_SECONDS) != [session[0], nonce]:
            return self._refused()
        action = str(form.get("action", ""))
        if action == "sign-out":
            return self._sign_out()
        if action == "narrow-repositories":
            return await self._narrow_repositories(session[0], str(form.get("grant", "")), form)
        if action == "narrow":
            return await self._narrow(session[0], form)
        if action not in ("disconnect", "confirm"):
            return self._answer("Request not understood", "Use the buttons of the connected-apps page.", 400)
        grant_id = str(form.get("grant", ""))
        app = next((a for a in await self._apps(session[0]) if a.grant_id == grant_id), None)
        if app is None:
            return self._answer("Nothing to disconnect", "That app is not connected.", 404)
        if action == "disconnect":  # only asks: a stray click must not cut an app off
            return pages.render(
                "disconnect.html", app_name=self.settings.app_name, title=f"Disconnect {app.name}?", app=app, csrf=csrf
            )
        revoked = await self.provider.grants.disconnect(session[0], grant_id)
        if revoked is None:
            return self._answer("Nothing to disconnect", "That app is not connected.", 404)  # gone meanwhile
        github = (
            "its GitHub access was revoked"
            if revoked
            else "GitHub did not confirm revoking its GitHub access (revoke it under GitHub → Settings → Applications)"
        )
        return self._answer(
            "App disconnected",
            f"Disconnected {app.name}: its tokens stopped working and {github}. "
            "To use it again, connect it from the app and approve it once more.",
        )

    def _sign_out(self) -> Response:
        response = pages.message(
            self.settings.app_name,
            "Signed out",
            "You are signed out of the connected-apps page. Your apps stay connected.",
            200,
            link="/account",
            link_text="Sign in again",
        )
        self.cookies.clear(response, "mcp_account")
        self.cookies.clear(response, "mcp_csrf")
        return response

    def _session(self, request: Request) -> tuple[str, str] | None:
        value = self.cookies.read(request, "mcp_account", SESSION_SECONDS)
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
            return value[0], value[1]
        return None

    async def _apps(self, subject: str) -> list[ConnectedApp]:
        apps = []
        for grant, families in await self.provider.storage.connected(subject):
            client = await self.provider.get_client(grant.client_id)
            document = is_document_url(grant.client_id, self.settings.cimd_allow_http_loopback)
            redirect = str(client.redirect_uris[0]) if client and client.redirect_uris else ""
            scopes = sorted({s for f in families for s in choice.within(f.scopes, grant.scopes)})
            apps.append(
                ConnectedApp(
                    grant_id=grant.grant_id,
                    name=(client.client_name if client else None) or grant.client_id,
                    host=verified_host(grant.client_id) if document else urlsplit(redirect).netloc or redirect,
                    verified=document,
                    client_id=grant.client_id if document else grant.client_id[:SHORT_ID],
                    scopes=[(s, SCOPES[s].description if s in SCOPES else s) for s in scopes],
                    connected=_when(min((f.signed_in_at for f in families if f.signed_in_at), default=0), "unknown"),
                    last_used=_when(max((f.rotated_at for f in families), default=0), "never"),
                    repositories=account_repositories.shown(grant),
                    login=grant.github_login,
                    full_client_id=grant.client_id,
                )
            )
        return apps

    async def _narrow_repositories(self, subject: str, grant_id: str, form: FormData) -> Response:
        grant = next((g for g, _ in await self.provider.storage.connected(subject) if g.grant_id == grant_id), None)
        if grant is None:
            return self._answer("Nothing to change", "That app is not connected.", 404)
        try:
            title, text = await account_repositories.narrow(self.provider, grant, form)
        except ValueError as exc:
            return self._answer("Repositories not changed", str(exc), 400)
        return self._answer(title, text)

    async def _narrow(self, subject: str, form: FormData) -> Response:
        """Keep only the checked scopes of one app; the sign-in scope and anything not shown cannot be
        added here (a forged scope refuses the form: widening goes through a new consent)."""
        grant_id = str(form.get("grant", ""))
        app = next((a for a in await self._apps(subject) if a.grant_id == grant_id), None)
        if app is None:
            return self._answer("Nothing to change", "That app is not connected.", 404)
        submitted = [s for s in form.getlist("scope") if isinstance(s, str)]
        granted = [name for name, _ in app.scopes]
        kept = choice.kept(granted, submitted)
        if kept is None:
            return self._answer(
                "Request not accepted",
                f"Access can only be narrowed here. To give {app.name} more, use it: it asks again, and you approve.",
                400,
            )
        removed = [s for s in granted if s not in kept]
        if not removed:
            return self._answer("Nothing changed", f"{app.name} keeps the access it had.")
        if not await self.provider.storage.narrow_grant(grant_id, subject, " ".join(kept)):
            return self._answer("Nothing to change", "That app is not connected.", 404)  # gone meanwhile
        self.provider.cache.invalidate()  # here at once; other replicas within token_cache.TTL_SECONDS
        audit.event("grant_narrowed", login=app.login, client_id=app.full_client_id, scopes=kept, removed=removed)
        words = "; ".join(SCOPES[s].description for s in removed)
        return self._answer(
            "Access narrowed",
            f"{app.name} can no longer: {words}. Its tokens lost this access at once. "
            "If it asks for it again, you decide on the consent page.",
        )

    def _refused(self) -> Response:
        return self._answer("Request not accepted", "Reload the page and try again.", 403)

    def _answer(self, title: str, text: str, status_code: int = 200) -> Response:
        return pages.message(
            self.settings.app_name, title, text, status_code, link="/account", link_text="Back to connected apps"
        )


def _when(timestamp: float, otherwise: str) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp)) if timestamp else otherwise
