"""The GitHub leg of a sign-in: to GitHub after consent, and back through `/github/callback`.

The browser is sent to GitHub with this server's own single-use `state` (never the client's) and
a PKCE challenge derived from it; the callback exchanges GitHub's code, learns who signed in,
admits them or not, and records the grant with their GitHub token (encrypted). The account page
signs in the same way, but keeps no GitHub token: it only needs to know who the user is.
"""

from __future__ import annotations

import logging
import time

from ghmcp import audit
from ghmcp.asgi.origin import client_origin, wide_origin_key
from ghmcp.auth.keys import Keyring, new_secret, s256, token_hash
from ghmcp.auth.records import AccountLogin, LoginOutcome, PendingAuthorization
from ghmcp.auth.scopes import github_scopes
from ghmcp.config import Settings
from ghmcp.storage import Grant, PendingLimits, Storage, new_id
from ghmcp.upstream.admission import Admission
from ghmcp.upstream.answers import GitHubTokens
from ghmcp.upstream.api import GitHubClient
from ghmcp.upstream.errors import GitHubError, GitHubUnavailable
from ghmcp.upstream.grants import GitHubGrants

logger = logging.getLogger(__name__)


class SignedIn:
    """A user GitHub signed in and admission let through, with the grant now holding their token."""

    def __init__(self, subject: str, grant_id: str) -> None:
        self.subject = subject
        self.grant_id = grant_id


def _failed(pending: PendingAuthorization, exc: GitHubError) -> LoginOutcome:
    """Where the client learns its sign-in failed at GitHub (RFC 6749 §4.1.2.1).

    An outage (no answer in time, 5xx, dropped connection) is `temporarily_unavailable`: it passes,
    and the same sign-in started again will likely work. Anything else GitHub answered (a refused
    code, an unusable /user) is `server_error`: trying again would not help. The pending sign-in
    was consumed at the callback either way: GitHub's code is single use and may already have been
    redeemed when its answer was lost, so the client starts afresh at /authorize.
    """
    if isinstance(exc, GitHubUnavailable):
        audit.event("sign_in_failed", client_id=pending.client_id, reason="github_unavailable")
        description = "GitHub is not answering right now; try signing in again in a moment"
        return LoginOutcome(pending.redirect(error="temporarily_unavailable", error_description=description))
    audit.event("sign_in_failed", client_id=pending.client_id, reason="github_error")
    return LoginOutcome(pending.redirect(error="server_error", error_description="GitHub sign-in failed"))


class GitHubLogin:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        keyring: Keyring,
        github: GitHubClient,
        admission: Admission,
        grants: GitHubGrants,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.keyring = keyring
        self.github = github
        self.admission = admission
        self.grants = grants
        self.pending_limits = PendingLimits(
            settings.max_pending_per_client, settings.max_pending_per_client, settings.max_pending_authorizations
        )

    async def start(self, request_id: str, pending: PendingAuthorization) -> tuple[str, str] | None:
        """Consent given: mint the GitHub `state` (never the client's) and return (GitHub URL, state)."""
        state = new_secret()  # RFC 6749 §10.12: our own unguessable, single-use state
        if not await self.storage.approve_pending(
            token_hash(request_id), token_hash(state), self.settings.state_seconds, time.time(), pending.model_dump()
        ):
            return None
        scopes = github_scopes(pending.scopes, orgs_configured=bool(self.settings.allowed_github_orgs))
        return self._authorize_url(state, scopes), state

    def _authorize_url(self, state: str, scopes: list[str]) -> str:
        challenge = s256(self._verifier(state))
        return self.github.authorize_url(
            redirect_uri=self.settings.callback_url, state=state, scopes=scopes, code_challenge=challenge
        )

    def _verifier(self, state: str) -> str:
        """PKCE verifier toward GitHub, derived from the secret state so it need not be stored."""
        return self.keyring.derive_secret("github-pkce", state)

    async def take(self, state: str) -> PendingAuthorization | AccountLogin | None:
        """Consume the pending sign-in a GitHub callback names (single use)."""
        record = await self.storage.take_pending_by_state(token_hash(state), time.time())
        if record is None:
            return None
        if record.get("kind") == "account":
            return AccountLogin.model_validate(record)
        return PendingAuthorization.model_validate(record)

    async def complete(
        self, pending: PendingAuthorization, state: str, code: str, repositories: str | None = ""
    ) -> SignedIn | LoginOutcome:
        """Exchange GitHub's code, admit the user, and record their grant (or where the browser goes instead).

        `repositories`: the grant's choice as stored (ghmcp/auth/repositories.py; "" for every one), or
        None to keep the choice of the grant this sign-in replaces (every one if there is none)."""
        try:
            tokens = await self._exchange(state, code)
        except GitHubError as exc:
            logger.warning("GitHub sign-in failed: %s", exc)
            return _failed(pending, exc)
        try:
            github_id, login = await self.github.identity(tokens.access_token)
            admitted_via = await self.admission.at_sign_in(login, github_id, tokens.access_token)
        except GitHubError as exc:
            # Fail closed: nothing is stored, and the fresh GitHub token is not left behind.
            logger.warning("GitHub sign-in failed: the user or their membership could not be checked (%s)", exc)
            await self.github.revoke(tokens.access_token)
            return _failed(pending, exc)
        if admitted_via is None:
            audit.event("admission_refused", login=login, github_id=github_id, client_id=pending.client_id)
            await self.github.revoke(tokens.access_token)  # nothing is kept for a refused user
            denied = pending.redirect(error="access_denied", error_description="This GitHub account is not allowed")
            return LoginOutcome(denied, refused_login=login)
        subject = f"github:{github_id}"
        narrowed = await self._narrowed_grant(subject, pending) if pending.remembered else None
        if narrowed is not None:
            if self.keyring.decrypt(narrowed.token_enc) != tokens.access_token:  # GitHub may hand back the same
                await self.github.revoke(tokens.access_token)  # nothing is kept: the user decides on the page first
            return await self._ask_again(pending)
        if repositories is None:
            # Issue 19: no new choice was made, so a narrowing made on /account is not undone by a re-sign-in.
            previous = [g for g, _ in await self.storage.connected(subject) if g.client_id == pending.client_id]
            repositories = previous[0].repositories if previous else ""
        grant_id, replaced = await self.storage.upsert_grant(
            Grant(
                grant_id=new_id(),
                subject=subject,
                client_id=pending.client_id,
                github_login=login,
                token_enc=self.keyring.encrypt(tokens.access_token),
                refresh_enc=self.keyring.encrypt(tokens.refresh_token) if tokens.refresh_token else None,
                expires_at=tokens.expires_at,
                refresh_expires_at=tokens.refresh_expires_at,
                github_scopes=tokens.scopes,
                dead=False,
                admitted_via=admitted_via,
                repositories=repositories,
                scopes=" ".join(pending.scopes),  # what the user kept at this consent bounds every token
            )
        )
        if replaced is not None:
            self.grants.cache.invalidate()  # tokens cached here carry the replaced GitHub token
            await self.grants.revoke_upstream(replaced, keep=tokens.access_token)
        await self.storage.record_consent(
            subject, pending.client_id, pending.redirect_uri, " ".join(pending.scopes), time.time()
        )
        audit.event("sign_in", login=login, github_id=github_id, client_id=pending.client_id, scopes=pending.scopes)
        return SignedIn(subject, grant_id)

    async def _narrowed_grant(self, subject: str, pending: PendingAuthorization) -> Grant | None:
        """The user's grant for this app if `pending` asks for more than it allows now (narrowed since)."""
        held = [g for g, _ in await self.storage.connected(subject) if g.client_id == pending.client_id]
        if not held or held[0].scopes is None or set(pending.scopes) <= set(held[0].scopes.split()):
            return None
        return held[0]

    async def _ask_again(self, pending: PendingAuthorization) -> LoginOutcome:
        """The consent page once more: a remembered approval never gives back what the user narrowed since
        (on /account, or by unchecking it in another browser). Widening is a consent on the page."""
        request_id, now, origin = new_secret(), time.time(), client_origin.get()
        full = await self.storage.add_pending(
            token_hash(request_id),
            pending.model_copy(update={"remembered": False, "ask": True}).model_dump(),
            client_id=pending.client_id,
            origin=origin,
            wide_origin=wide_origin_key(origin),
            expires_at=now + self.settings.consent_seconds,
            limits=self.pending_limits,
            now=now,
        )
        if full is not None:
            busy = "Too many sign-ins in progress; try again shortly"
            return LoginOutcome(pending.redirect(error="temporarily_unavailable", error_description=busy))
        return LoginOutcome(f"{self.settings.server_url}/consent?request={request_id}")

    # The connected-apps page (web/account.py): its own GitHub sign-in, which keeps no GitHub token.
    async def start_account_sign_in(self) -> tuple[str, str] | None:
        """(GitHub URL, state) for a sign-in to the account page, or None when too many are under way."""
        origin, now = client_origin.get(), time.time()
        key, state = token_hash(new_secret()), new_secret()
        full = await self.storage.add_pending(
            key,
            AccountLogin().model_dump(),
            client_id=f"account:{origin}",
            origin=origin,
            wide_origin=wide_origin_key(origin),
            expires_at=now + self.settings.consent_seconds,
            limits=self.pending_limits,
            now=now,
        )
        if full is not None or not await self.storage.approve_pending(
            key, token_hash(state), self.settings.state_seconds, now
        ):
            return None
        return self._authorize_url(state, []), state  # identity only: GitHub's /user needs no scope

    async def account_identity(self, state: str, code: str) -> tuple[str, str] | None:
        """(subject, login) of the user who signed in to the account page; their token is revoked at once."""
        try:
            tokens = await self._exchange(state, code)
        except GitHubError:
            return None
        try:
            github_id, login = await self.github.identity(tokens.access_token)
        except GitHubError:
            return None
        finally:
            await self.github.revoke(tokens.access_token)
        return f"github:{github_id}", login

    async def _exchange(self, state: str, code: str) -> GitHubTokens:
        return await self.github.exchange_code(
            code, redirect_uri=self.settings.callback_url, code_verifier=self._verifier(state)
        )
