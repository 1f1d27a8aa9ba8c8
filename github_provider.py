"""The OAuth 2.1 authorization server toward MCP clients: the SDK's provider protocol.

Flow: `/authorize` (SDK) -> `authorize()` stores a pending request -> consent page
(ghmcp/web/consent.py) -> `approve()` -> GitHub (ghmcp/upstream/login.py) -> `/github/callback`
-> `complete_login()` mints an MCP code bound to that GitHub user -> `/token` (SDK) ->
`exchange_authorization_code()`: our own opaque tokens. The user's GitHub token stays on this
server, encrypted (ghmcp/upstream/grants.py hands it to tools).

What the SDK checks before calling in here, and what is left to us, is in docs/security.md.
"""

from __future__ import annotations

import logging
import re
import time

from mcp.server.auth.provider import AuthorizationParams, AuthorizeError, OAuthAuthorizationServerProvider, TokenError
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl

from ghmcp import audit
from ghmcp.asgi.origin import client_origin, wide_origin_key
from ghmcp.auth.choice import within
from ghmcp.auth.cimd import verified_host
from ghmcp.auth.clients import Clients
from ghmcp.auth.issuing import alive, deadline, first_family, token_answer, token_rows
from ghmcp.auth.keys import Keyring, new_secret, token_hash
from ghmcp.auth.records import (
    GitHubAccessToken,
    GitHubAuthorizationCode,
    GitHubRefreshToken,
    LoginOutcome,
    PendingAuthorization,
)
from ghmcp.auth.repositories import NOTHING
from ghmcp.auth.scopes import DEFAULT_SCOPES
from ghmcp.auth.token_cache import TokenCache
from ghmcp.config import Settings
from ghmcp.storage import Storage, TokenRecord
from ghmcp.upstream.admission import Admission
from ghmcp.upstream.api import GitHubClient
from ghmcp.upstream.errors import GitHubError
from ghmcp.upstream.grants import GitHubGrants
from ghmcp.upstream.login import GitHubLogin, SignedIn

logger = logging.getLogger(__name__)

MAX_STATE = 500
PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # RFC 7636 §4.2: BASE64URL(SHA256(verifier)), unpadded


class GitHubOAuthProvider(
    OAuthAuthorizationServerProvider[GitHubAuthorizationCode, GitHubRefreshToken, GitHubAccessToken]
):
    """The SDK's provider protocol, backed by `Storage`, with sign-in delegated to GitHub."""

    def __init__(self, settings: Settings, storage: Storage, keyring: Keyring, github: GitHubClient) -> None:
        self.settings = settings
        self.storage = storage
        self.keyring = keyring
        self.github = github
        self.clients = Clients(settings, storage, keyring)
        self.cache: TokenCache[tuple[float, GitHubAccessToken]] = TokenCache(keyring.decrypt)
        admission = Admission(settings, storage, github)
        self.grants = GitHubGrants(storage, keyring, github, admission, self.cache)
        self.login = GitHubLogin(settings, storage, keyring, github, admission, self.grants)

    # Clients (RFC 7591, and metadata documents: ghmcp/auth/cimd.py)
    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return await self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        await self.clients.register(client_info)

    # Authorization: the SDK has checked client, redirect_uri, PKCE method and scope ceiling.
    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        resource = params.resource or self.settings.resource_url
        if resource.rstrip("/") != self.settings.resource_url:
            # RFC 8707 §2: tokens are only minted for this server's own resource.
            raise AuthorizeError("invalid_target", "This server only issues tokens for its own MCP endpoint")
        if params.state is not None and len(params.state) > MAX_STATE:
            raise AuthorizeError("invalid_request", f"state must be at most {MAX_STATE} characters")
        if not PKCE_CHALLENGE.match(params.code_challenge):
            raise AuthorizeError("invalid_request", "code_challenge must be 43 base64url characters (S256)")
        document_client = self.clients.is_document(client.client_id)
        pending = PendingAuthorization(
            client_id=client.client_id,
            client_name=client.client_name or client.client_id,
            redirect_uri=str(params.redirect_uri),
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            code_challenge=params.code_challenge,
            scopes=list(dict.fromkeys(params.scopes or DEFAULT_SCOPES)),
            resource=self.settings.resource_url,
            client_state=params.state,
            issuer=self.settings.server_url,
            client_host=verified_host(client.client_id) if document_client else None,
        )
        request_id, now, origin = new_secret(), time.time(), client_origin.get()
        full = await self.storage.add_pending(
            token_hash(request_id),
            pending.model_dump(),
            client_id=client.client_id,
            origin=origin,
            wide_origin=wide_origin_key(origin),
            expires_at=now + self.settings.consent_seconds,
            limits=self.login.pending_limits,
            now=now,
        )
        if full is not None:
            logger.warning("Sign-in refused: too many sign-ins under way (per %s)", full)
            raise AuthorizeError("temporarily_unavailable", "Too many sign-ins in progress; try again shortly")
        return f"{self.settings.server_url}/consent?request={request_id}"

    # Consent (web/consent.py asks these), then the GitHub leg (upstream/login.py).
    async def pending(self, request_id: str) -> PendingAuthorization | None:
        record = await self.storage.get_pending(token_hash(request_id), time.time())
        return None if record is None else PendingAuthorization.model_validate(record)

    async def approve(self, request_id: str, kept: list[str] | None) -> tuple[str, str] | None:
        """Consent given, to the scopes the user `kept` (None: a remembered consent, to all requested):
        (GitHub URL, state) to send the browser to, or None if the request is gone. Only what was kept
        goes on: to GitHub's authorize URL, the grant, the code, the tokens."""
        pending = await self.pending(request_id)
        if pending is None:
            return None
        if kept is None:
            pending.remembered = True  # checked again once GitHub says who the user is (login.py)
        else:  # a choice can only narrow what the client asked for
            pending.scopes = [s for s in pending.scopes if s in kept]
        return await self.login.start(request_id, pending)

    async def deny(self, request_id: str) -> str | None:
        record = await self.storage.take_pending(token_hash(request_id), time.time())
        if record is None:
            return None
        pending = PendingAuthorization.model_validate(record)
        audit.event("consent_denied", client_id=pending.client_id, scopes=pending.scopes)
        return pending.redirect(error="access_denied")

    async def complete_login(
        self, pending: PendingAuthorization, state: str, code: str, *, repositories: str = "all"
    ) -> LoginOutcome:
        """GitHub's callback: the GitHub leg ends, and an MCP code bound to that user is minted.

        `repositories` is what the consent page said: "all", "keep" (no page was shown: an earlier, maybe
        narrower, choice for this app stands), or "chosen": the grant reaches nothing and no code is
        minted until the user has picked them (web/repositories.py)."""
        stored = {"all": "", "keep": None, "chosen": NOTHING}.get(repositories, NOTHING)
        signed_in = await self.login.complete(pending, state, code, repositories=stored)
        if not isinstance(signed_in, SignedIn):
            return signed_in
        if repositories == "chosen":
            return LoginOutcome("", held=(signed_in.subject, signed_in.grant_id))
        return LoginOutcome(await self.issue_code(pending, signed_in.subject, signed_in.grant_id))

    async def issue_code(self, pending: PendingAuthorization, subject: str, grant_id: str) -> str:
        """Mint the MCP authorization code for a signed-in user: the redirect to the client carrying it."""
        code = new_secret()
        record = GitHubAuthorizationCode(
            code="",
            scopes=pending.scopes,
            expires_at=time.time() + self.settings.code_seconds,
            client_id=pending.client_id,
            code_challenge=pending.code_challenge,
            redirect_uri=AnyUrl(pending.redirect_uri),
            redirect_uri_provided_explicitly=pending.redirect_uri_provided_explicitly,
            resource=pending.resource,
            subject=subject,
            grant_id=grant_id,
        )
        payload = record.model_dump(mode="json")
        await self.storage.save_code(token_hash(code), payload, grant_id, record.expires_at)
        return pending.redirect(code=code)

    # Token endpoint: codes
    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> GitHubAuthorizationCode | None:
        code_hash = token_hash(authorization_code)
        found = await self.storage.get_code(code_hash)
        if found is None:
            return None
        record, used = found
        if used:
            await self._revoke_code(code_hash)
            return None
        code = GitHubAuthorizationCode.model_validate(record | {"code": authorization_code})
        return code if code.client_id == client.client_id else None

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: GitHubAuthorizationCode
    ) -> OAuthToken:
        code_hash = token_hash(authorization_code.code)
        now = time.time()
        family = first_family(authorization_code, client.client_id, code_hash, now, self.settings.resource_url)
        access, refresh = new_secret(), new_secret()
        # RFC 9700 §2.1.1: single-use code; using it and creating its family is one atomic step.
        if not await self.storage.redeem_code(
            code_hash, family, token_rows(family, access, refresh, self.settings), now
        ):
            await self._revoke_code(code_hash)  # a replay that lost the race to the first use
            raise TokenError("invalid_grant", "authorization code was already used or is no longer valid")
        await self.storage.touch_client(client.client_id, now)
        return token_answer(family, access, refresh, now, self.settings)

    # Token endpoint: refresh
    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> GitHubRefreshToken | None:
        record = await self.storage.get_token(token_hash(refresh_token))
        # Older generations load too: `exchange_refresh_token` must see them to detect reuse (RFC 9700 §4.14.2).
        if record is None or record.token.kind != "refresh" or not alive(record, any_generation=True):
            return None
        if record.family.client_id != client.client_id:
            return None
        return GitHubRefreshToken.of(refresh_token, record)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: GitHubRefreshToken, scopes: list[str]
    ) -> OAuthToken:
        now = time.time()
        record = await self._current(refresh_token)
        if now >= deadline(record.family, self.settings):
            await self._revoke_family(record.family.family_id)
            raise TokenError("invalid_grant", "this sign-in has reached its maximum age; sign in again")
        try:
            admitted = await self.grants.still_admitted(record.grant)
        except GitHubError:
            # Fail closed without ending the sign-in: GitHub could not confirm membership right now.
            raise TokenError("invalid_request", "GitHub could not confirm this account's access; try again") from None
        if not admitted:
            await self.grants.end(record.grant, "not_admitted")
            raise TokenError("invalid_grant", "this GitHub account is no longer allowed here")
        access = self.keyring.derive_secret("rotated-access", refresh_token.token)
        refresh = self.keyring.derive_secret("rotated-refresh", refresh_token.token)
        # A refresh may narrow scopes (the SDK refuses widening); the family keeps the narrowed set,
        # never more than the grant allows now (narrowed on /account since the token was loaded).
        scopes = within(scopes, record.grant.scopes)
        rotated = record.family
        rotated.generation, rotated.scopes = refresh_token.generation + 1, scopes
        rows = token_rows(rotated, access, refresh, self.settings)
        # RFC 9700 §4.14.2: single-use refresh token; rotation and its new tokens are one atomic step.
        if await self.storage.rotate_family(refresh_token.family_id, refresh_token.generation, scopes, rows, now):
            audit.event("token_refreshed", login=record.grant.github_login, client_id=client.client_id)
            self.cache.invalidate()  # the family's previous access token stops working now
            await self.storage.touch_client(client.client_id, now)
            return token_answer(rotated, access, refresh, now, self.settings)
        family = (await self._current(refresh_token)).family
        within_grace = now - family.rotated_at <= self.settings.refresh_grace_seconds
        if family.generation == refresh_token.generation + 1 and within_grace and not family.revoked:
            # A retry of a refresh whose answer was lost: the same new pair again (storing is
            # idempotent, so a retry racing the winner on another replica is served too).
            await self.storage.add_tokens(token_rows(family, access, refresh, self.settings))
            return token_answer(family, access, refresh, now, self.settings)
        # RFC 9700 §4.14.2: refresh token reuse revokes the whole family.
        logger.warning("Refresh token reuse detected; revoking token family %s", family.family_id)
        audit.event("refresh_reuse", login=record.grant.github_login, client_id=client.client_id)
        await self._revoke_family(family.family_id)
        raise TokenError("invalid_grant", "refresh token was already used")

    async def _current(self, refresh_token: GitHubRefreshToken) -> TokenRecord:
        record = await self.storage.get_token(token_hash(refresh_token.token))
        if record is None:
            raise TokenError("invalid_grant", "refresh token does not exist")
        return record

    # Resource server: the bearer gate (ghmcp/auth/bearer.py) asks this for every MCP request.
    async def load_access_token(self, token: str) -> GitHubAccessToken | None:
        key = token_hash(token)
        cached = self.cache.get(key)  # auth/token_cache.py: at most TTL_SECONDS old, dropped on any local revocation
        if cached is not None:
            expires_at, access = cached
            return access if expires_at > time.time() else None
        epoch = self.cache.epoch
        record = await self.storage.get_token(key)
        if record is None or record.token.kind != "access" or not alive(record):
            return None
        access = GitHubAccessToken.of(token, record)
        self.cache.put(key, (record.token.expires_at, access), epoch)
        return access

    # Revocation (RFC 7009)
    async def revoke_token(self, token: GitHubAccessToken | GitHubRefreshToken) -> None:
        record = await self.storage.get_token(token_hash(token.token))
        if record is not None:
            await self._revoke_family(record.family.family_id)

    async def revoke(self, client_id: str, token: str) -> None:
        """Revoke the family of `token` (access or refresh) if it belongs to `client_id`."""
        record = await self.storage.get_token(token_hash(token))
        if record is None or record.family.client_id != client_id:
            audit.event("revocation", client_id=client_id, outcome="unknown_token")  # RFC 7009 §2.2: still a 200
            return
        audit.event("revocation", login=record.grant.github_login, client_id=client_id, outcome="revoked")
        await self._revoke_family(record.family.family_id)

    async def _revoke_code(self, code_hash: str) -> None:
        # RFC 6749 §4.1.2: a replayed code revokes every token issued from it.
        released_grants = await self.storage.revoke_code_families(code_hash, time.time())
        self.cache.invalidate()
        for released in released_grants:
            await self.grants.release(released)

    async def _revoke_family(self, family_id: str) -> None:
        released = await self.storage.revoke_family(family_id, time.time())
        self.cache.invalidate()
        if released is not None:
            await self.grants.release(released)

    async def sweep(self) -> dict[str, int]:
        """Delete expired rows; GitHub tokens no grant holds any more are revoked at GitHub too."""
        swept = await self.storage.sweep(
            time.time(), self.settings.unused_client_seconds, self.settings.idle_client_seconds
        )
        for released in swept.released:
            await self.grants.release(released)
        return swept.counts
