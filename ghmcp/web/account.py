"""The connected-apps page (`/account`): a user sees which MCP clients hold access to their GitHub
through this server, and disconnects any of them, without asking the client to call `/revoke`.

The page has its own short-lived sign-in: GitHub proves who the user is (the GitHub token used for
that is revoked at once), and a signed session cookie (`__Host-` on https) remembers it for
`SESSION_SECONDS`. Disconnecting is a form post with the consent page's CSRF defence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ghmcp.asgi import pages
from ghmcp.auth.cimd import is_document_url, verified_host
from ghmcp.auth.keys import new_secret
from ghmcp.config import Settings
from ghmcp.web.consent import BrowserCookies
from github_provider import GitHubOAuthProvider

SESSION_SECONDS = 900


@dataclass
class ConnectedApp:
    grant_id: str
    name: str
    host: str
    verified: bool
    scopes: list[str]
    signed_in: str
    last_used: str


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
        signed = self.cookies.keyring.load_signed("account-csrf", str(form.get("csrf", "")), SESSION_SECONDS)
        if signed != [session[0], nonce]:
            return self._refused()
        if not await self.provider.grants.disconnect(session[0], str(form.get("grant", ""))):
            return pages.message(self.settings.app_name, "Nothing to disconnect", "That app is not connected.", 404)
        return RedirectResponse("/account", status_code=303)

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
            apps.append(
                ConnectedApp(
                    grant_id=grant.grant_id,
                    name=(client.client_name if client else None) or grant.client_id,
                    host=verified_host(grant.client_id) if document else urlsplit(redirect).netloc or redirect,
                    verified=document,
                    scopes=sorted({s for f in families for s in f.scopes}),
                    signed_in=_when(min((f.signed_in_at for f in families), default=0)),
                    last_used=_when(max((f.rotated_at for f in families), default=0)),
                )
            )
        return apps

    def _refused(self) -> Response:
        return pages.message(
            self.settings.app_name, "Request not accepted", "Reload the page and try again.", 403, link="/account"
        )


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp)) if timestamp else "never"
