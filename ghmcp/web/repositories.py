"""Choosing repositories after the GitHub sign-in (issue 19): the picker page and its form.

When the user picked "only some" on the consent page, the GitHub callback records the grant
reaching nothing (`NOTHING`) and mints no code; it shows this page instead. Only its submission,
from the same browser (signed double-submit CSRF, as on the consent page), stores the choice and
sends the code to the client. Abandoned, it leaves a grant no code or token refers to: the sweep
deletes it and revokes its GitHub token.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ghmcp.asgi import pages
from ghmcp.asgi.origin import client_origin, wide_origin_key
from ghmcp.auth.keys import new_secret, token_hash
from ghmcp.auth.records import PendingAuthorization, ReconnectRequired
from ghmcp.auth.repositories import NOTHING, encode, parse_bound, parse_names
from ghmcp.config import Settings
from ghmcp.upstream import choosing
from ghmcp.upstream.errors import GitHubError
from ghmcp.web.consent import BrowserCookies, form_target
from github_provider import GitHubOAuthProvider

CSRF = "repositories-csrf"


def to_client(settings: Settings, pending: PendingAuthorization, url: str) -> Response:
    """The browser back to the client: a redirect, or for a native app's own scheme a page handing it over."""
    if urlsplit(url).scheme in ("http", "https"):
        return RedirectResponse(url, status_code=302)
    failed = "error" in dict(parse_qsl(urlsplit(url).query))
    return pages.render(
        "message.html",
        app_name=settings.app_name,
        title="Sign-in did not complete" if failed else "Signed in",
        message=f"GitHub could not complete the sign-in. {pending.client_name} can try again."
        if failed
        else f"You are signed in. {pending.client_name} takes it from here; you can close this tab.",
        link=url,
        link_text=f"Open {pending.client_name}",
        refresh_to=url,
    )


class RepositoryPicker:
    def __init__(self, settings: Settings, provider: GitHubOAuthProvider, cookies: BrowserCookies) -> None:
        self.settings = settings
        self.provider = provider
        self.cookies = cookies
        self.bound = parse_bound(settings.allowed_repositories)

    async def start(self, request: Request, pending: PendingAuthorization, subject: str, grant_id: str) -> Response:
        """After the callback: keep what the code needs (single use, expiring) and show the picker."""
        secret, now, origin = new_secret(), time.time(), client_origin.get()
        record = pending.model_dump() | {"subject": subject, "grant_id": grant_id}
        full = await self.provider.storage.add_pending(
            _key(secret),
            record,
            client_id=pending.client_id,
            origin=origin,
            wide_origin=wide_origin_key(origin),
            expires_at=now + self.settings.consent_seconds,
            limits=self.provider.login.pending_limits,
            now=now,
        )
        if full is not None:
            return self._expired()
        return await self._page(request, secret, record)

    async def submit(self, request: Request) -> Response:
        try:
            form = await request.form()
        except Exception:  # malformed bodies raise a variety of parser errors
            return self._refused()
        secret, csrf = str(form.get("choice", "")), str(form.get("csrf", ""))
        nonce = self.cookies.read(request, "mcp_csrf", self.settings.consent_seconds)
        signed = self.cookies.keyring.load_signed(CSRF, csrf, self.settings.consent_seconds)
        if not (isinstance(nonce, str) and signed == [_key(secret), nonce]):
            return self._refused()
        record = await self.provider.storage.get_pending(_key(secret), time.time())
        if record is None:
            return self._expired()
        picked = [str(v) for v in form.getlist("repo")][: choosing.MAX_OFFERED]
        typed = str(form.get("typed", ""))[:4000]
        try:
            names = parse_names(" ".join([*picked, typed]))
            if not names:
                raise ValueError("Choose at least one repository or owner (or go back to the app and choose all).")
            outside = [o if r is None else f"{o}/{r}" for o, r in names if not self._within_bound(o, r)]
            if outside:
                raise ValueError(
                    f"{outside[0]} is outside the repositories this server allows (MCP_ALLOWED_REPOSITORIES)."
                )
            grant = await self.provider.storage.get_grant(str(record["grant_id"]))
            if grant is None or grant.dead:
                return self._expired()
            choice = await choosing.resolved(self.provider.github, await self.provider.grants.token(grant), names)
        except ValueError as exc:  # choosing.NotResolved too: a name GitHub does not show this user
            return await self._page(request, secret, record, error=str(exc), picked=picked, typed=typed)
        except (GitHubError, ReconnectRequired):
            return await self._page(request, secret, record, error="GitHub did not answer; try again.", picked=picked)
        # Single use: the record goes before the choice is stored and the code minted.
        if await self.provider.storage.take_pending(_key(secret), time.time()) is None:
            return self._expired()
        if not await self.provider.storage.replace_grant_repositories(grant.grant_id, NOTHING, encode(choice)):
            return self._expired()  # the grant was replaced or ended meanwhile
        pending = PendingAuthorization.model_validate(record)
        response = to_client(
            self.settings, pending, await self.provider.issue_code(pending, grant.subject, grant.grant_id)
        )
        self.cookies.clear(response, "mcp_csrf")
        return response

    async def _page(
        self,
        request: Request,
        secret: str,
        record: dict[str, object],
        *,
        error: str = "",
        picked: list[str] | None = None,
        typed: str = "",
    ) -> Response:
        pending = PendingAuthorization.model_validate(record)
        grant = await self.provider.storage.get_grant(str(record["grant_id"]))
        offered, note = [], "GitHub lists no repository of yours: type the names below."
        try:
            if grant is not None:
                listed = await choosing.offered(self.provider.github, await self.provider.grants.token(grant))
                offered = [name for name in listed if self._within_bound(*name.partition("/")[::2])]
        except (GitHubError, ReconnectRequired):
            note = "GitHub did not list your repositories just now: type the names below."
        held = self.cookies.read(request, "mcp_csrf", self.settings.consent_seconds)
        nonce = held if isinstance(held, str) else new_secret()
        response = pages.render(
            "repositories.html",
            app_name=self.settings.app_name,
            status_code=400 if error else 200,
            form_targets=(form_target(pending.redirect_uri),),
            title=f"Choose repositories for {pending.client_name}",
            client_name=pending.client_name,
            login=grant.github_login if grant else "",
            offered=offered,
            offered_note=note,
            picked=set(picked or ()),
            typed=typed,
            error=error,
            choice=secret,
            csrf=self.cookies.keyring.signer(CSRF).dumps([_key(secret), nonce]),
        )
        self.cookies.write(response, "mcp_csrf", nonce, self.settings.consent_seconds)
        return response

    def _within_bound(self, owner: str, repo: str | None) -> bool:
        return self.bound.touches(owner) if repo is None else self.bound.allows(owner, repo)

    def _expired(self) -> Response:
        return pages.message(
            self.settings.app_name,
            "This sign-in is no longer valid",
            "It expired or was already completed. Start the connection again from your app.",
            400,
        )

    def _refused(self) -> Response:
        return pages.message(
            self.settings.app_name,
            "Request not accepted",
            "This form could not be verified. Start the sign-in again from your app.",
            403,
        )


def _key(secret: str) -> str:
    # Its own namespace: a choice's secret can never name a consent request, nor the reverse.
    return token_hash(f"repositories\0{secret}")
