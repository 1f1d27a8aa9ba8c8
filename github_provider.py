"""The OAuth 2.1 authorization server toward MCP clients, with user login delegated to GitHub.

Flow: `/authorize` (SDK) -> `authorize()` stores a pending request -> consent page
(consent.py) -> `approve()` mints our own GitHub `state` -> GitHub -> `/github/callback`
(routes.py) -> `complete_login()` mints an MCP code bound to that GitHub user -> `/token`
(SDK) -> our own opaque tokens. The user's GitHub token stays on this server, encrypted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    RegistrationError,
    TokenError,
    construct_redirect_uri,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl, BaseModel

from crypto import Keyring, new_secret, s256, token_hash
from github_api import GitHubClient, GitHubError, GitHubOAuthError
from scopes import DEFAULT_SCOPES, SCOPES, github_scopes
from settings import Settings
from storage import Family, Grant, Storage, TokenRecord, TokenRow, new_id
from token_cache import TokenCache

logger = logging.getLogger(__name__)

MAX_CLIENT_NAME = 100


class GitHubAccessToken(AccessToken):
    grant_id: str
    family_id: str


class GitHubAuthorizationCode(AuthorizationCode):
    grant_id: str


class GitHubRefreshToken(RefreshToken):
    family_id: str
    generation: int


class PendingAuthorization(BaseModel):
    """What `/authorize` asked for, kept server-side until the callback."""

    client_id: str
    client_name: str
    redirect_uri: str
    redirect_uri_provided_explicitly: bool
    code_challenge: str
    scopes: list[str]
    resource: str
    client_state: str | None

    def redirect(self, **params: str | None) -> str:
        return construct_redirect_uri(self.redirect_uri, state=self.client_state, **params)


class ReconnectRequired(Exception):
    """The user's GitHub sign-in is gone; the MCP client must run OAuth again."""


@dataclass
class LoginOutcome:
    """Where the browser goes after the GitHub callback; `refused_login` is set for admission refusals."""

    redirect_to: str
    refused_login: str | None = None


class GitHubOAuthProvider(
    OAuthAuthorizationServerProvider[GitHubAuthorizationCode, GitHubRefreshToken, GitHubAccessToken]
):
    """The SDK's provider protocol, backed by `Storage` and GitHub."""

    def __init__(self, settings: Settings, storage: Storage, keyring: Keyring, github: GitHubClient) -> None:
        self.settings = settings
        self.storage = storage
        self.keyring = keyring
        self.github = github
        self._refresh_locks: dict[str, asyncio.Lock] = {}
        self.cache: TokenCache[tuple[float, GitHubAccessToken]] = TokenCache(keyring.decrypt)

    # Clients (RFC 7591)
    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        info_json = await self.storage.get_client(client_id)
        if info_json is None:
            return None
        client = OAuthClientInformationFull.model_validate_json(info_json)
        if client.client_secret:
            client.client_secret = self.keyring.decrypt(client.client_secret)
        return client

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        for uri in client_info.redirect_uris or []:
            problem = redirect_uri_problem(str(uri), self.settings.allowed_redirect_schemes)
            if problem:
                raise RegistrationError("invalid_redirect_uri", problem)
        if client_info.client_name and len(client_info.client_name) > MAX_CLIENT_NAME:
            raise RegistrationError("invalid_client_metadata", f"client_name is longer than {MAX_CLIENT_NAME}")
        stored = client_info.model_copy()
        # The registered scope is only a ceiling: the user consents to each request's scopes.
        stored.scope = " ".join(SCOPES)
        if stored.client_secret:
            stored.client_secret = self.keyring.encrypt(stored.client_secret)
        await self.storage.save_client(client_info.client_id, stored.model_dump_json(exclude_none=True), time.time())

    # Authorization: the SDK has checked client, redirect_uri, PKCE method and scope ceiling.
    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        resource = params.resource or self.settings.resource_url
        if resource.rstrip("/") != self.settings.resource_url:
            # RFC 8707 §2: tokens are only minted for this server's own resource.
            raise AuthorizeError("invalid_target", "This server only issues tokens for its own MCP endpoint")
        pending = PendingAuthorization(
            client_id=client.client_id,
            client_name=client.client_name or client.client_id,
            redirect_uri=str(params.redirect_uri),
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            code_challenge=params.code_challenge,
            scopes=params.scopes or DEFAULT_SCOPES,
            resource=self.settings.resource_url,
            client_state=params.state,
        )
        request_id = new_secret()
        now = time.time()
        stored = await self.storage.add_pending(
            token_hash(request_id),
            pending.model_dump(),
            now + self.settings.state_seconds,
            self.settings.max_pending_authorizations,
            now,
        )
        if not stored:
            raise AuthorizeError("temporarily_unavailable", "Too many sign-ins in progress; try again shortly")
        return f"{self.settings.server_url}/consent?request={request_id}"

    async def pending(self, request_id: str) -> PendingAuthorization | None:
        record = await self.storage.get_pending(token_hash(request_id), time.time())
        return None if record is None else PendingAuthorization.model_validate(record)

    async def approve(self, request_id: str) -> tuple[str, str] | None:
        """Consent given: mint the GitHub `state` (never the client's) and return (GitHub URL, state)."""
        pending = await self.pending(request_id)
        if pending is None:
            return None
        state = new_secret()  # RFC 6749 §10.12: our own unguessable, single-use state
        now = time.time()
        if not await self.storage.approve_pending(
            token_hash(request_id), token_hash(state), now + self.settings.state_seconds, now
        ):
            return None
        url = self.github.authorize_url(
            redirect_uri=self.settings.callback_url,
            state=state,
            scopes=github_scopes(pending.scopes, orgs_configured=bool(self.settings.allowed_github_orgs)),
            code_challenge=s256(self._github_verifier(state)),
        )
        return url, state

    async def deny(self, request_id: str) -> str | None:
        record = await self.storage.take_pending(token_hash(request_id), time.time())
        if record is None:
            return None
        return PendingAuthorization.model_validate(record).redirect(error="access_denied")

    def _github_verifier(self, state: str) -> str:
        """PKCE verifier toward GitHub, derived from the secret state so it need not be stored."""
        return self.keyring.derive_secret("github-pkce", state)

    async def take_login(self, state: str) -> PendingAuthorization | None:
        """Consume the pending authorization a GitHub callback names (single use)."""
        record = await self.storage.take_pending_by_state(token_hash(state), time.time())
        return None if record is None else PendingAuthorization.model_validate(record)

    async def complete_login(self, pending: PendingAuthorization, state: str, code: str) -> LoginOutcome:
        """Exchange GitHub's code, admit the user, and mint an MCP code bound to them."""
        try:
            tokens = await self.github.exchange_code(
                code, redirect_uri=self.settings.callback_url, code_verifier=self._github_verifier(state)
            )
            user = await self.github.get_user(tokens.access_token)
        except GitHubError as exc:
            logger.warning("GitHub sign-in failed: %s", exc)
            return LoginOutcome(pending.redirect(error="server_error", error_description="GitHub sign-in failed"))
        login = str(user["login"])
        if not await self._admitted(login, tokens.access_token):
            await self.github.revoke(tokens.access_token)  # nothing is kept for a refused user
            denied = pending.redirect(error="access_denied", error_description="This GitHub account is not allowed")
            return LoginOutcome(denied, refused_login=login)

        subject = f"github:{user['id']}"
        now = time.time()
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
            )
        )
        if replaced is not None:
            await self._revoke_upstream(replaced, keep=tokens.access_token)
        await self.storage.record_consent(
            subject, pending.client_id, pending.redirect_uri, " ".join(pending.scopes), now
        )
        code = new_secret()
        record = GitHubAuthorizationCode(
            code="",
            scopes=pending.scopes,
            expires_at=now + self.settings.code_seconds,
            client_id=pending.client_id,
            code_challenge=pending.code_challenge,
            redirect_uri=AnyUrl(pending.redirect_uri),
            redirect_uri_provided_explicitly=pending.redirect_uri_provided_explicitly,
            resource=pending.resource,
            subject=subject,
            grant_id=grant_id,
        )
        await self.storage.save_code(token_hash(code), record.model_dump(mode="json"), record.expires_at)
        # RFC 9207: `iss` lets the client detect a mix-up between authorization servers.
        return LoginOutcome(pending.redirect(code=code, iss=self.settings.server_url))

    async def _admitted(self, login: str, github_token: str) -> bool:
        users = {u.lower() for u in self.settings.allowed_github_users}
        orgs = self.settings.allowed_github_orgs
        if not users and not orgs:
            return True
        if login.lower() in users:
            return True
        for org in orgs:
            if await self.github.is_org_member(github_token, org):
                return True
        return False

    # Token endpoint
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
        if not await self.storage.use_code(code_hash, now):  # RFC 9700 §2.1.1: single-use code
            await self._revoke_code(code_hash)  # a replay that lost the race to the first use
            raise TokenError("invalid_grant", "authorization code was already used")
        family = Family(
            family_id=new_id(),
            grant_id=authorization_code.grant_id,
            client_id=client.client_id,
            subject=authorization_code.subject or "",
            scopes=authorization_code.scopes,
            resource=authorization_code.resource or self.settings.resource_url,
            code_hash=code_hash,
            generation=0,
            rotated_at=now,
            revoked=False,
        )
        await self.storage.create_family(family)
        await self.storage.touch_client(client.client_id, now)
        return await self._issue(family, new_secret(), new_secret(), now)

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> GitHubRefreshToken | None:
        record = await self.storage.get_token(token_hash(refresh_token))
        # Older generations load too: `exchange_refresh_token` must see them to detect reuse (RFC 9700 §4.14.2).
        if record is None or record.token.kind != "refresh" or not _alive(record, any_generation=True):
            return None
        if record.family.client_id != client.client_id:
            return None
        return GitHubRefreshToken(
            token=refresh_token,
            client_id=record.family.client_id,
            scopes=record.family.scopes,
            expires_at=int(record.token.expires_at),
            resource=record.family.resource,
            subject=record.family.subject,
            family_id=record.family.family_id,
            generation=record.token.generation,
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: GitHubRefreshToken, scopes: list[str]
    ) -> OAuthToken:
        now = time.time()
        access = self.keyring.derive_secret("rotated-access", refresh_token.token)
        refresh = self.keyring.derive_secret("rotated-refresh", refresh_token.token)
        # A refresh may narrow scopes (the SDK refuses widening); the family keeps the narrowed set.
        if await self.storage.rotate_family(refresh_token.family_id, refresh_token.generation, scopes, now):
            self.cache.invalidate()  # the family's previous access token stops working now
            await self.storage.touch_client(client.client_id, now)
            return await self._issue(await self._current_family(refresh_token), access, refresh, now)
        family = await self._current_family(refresh_token)
        within_grace = now - family.rotated_at <= self.settings.refresh_grace_seconds
        if family.generation == refresh_token.generation + 1 and within_grace and not family.revoked:
            # A retry of a refresh whose answer was lost: the same new pair again (stored only once;
            # storing is idempotent, so a retry racing the winner on another replica is served too).
            return await self._issue(family, access, refresh, now)
        # RFC 9700 §4.14.2: refresh token reuse revokes the whole family.
        logger.warning("Refresh token reuse detected; revoking token family %s", family.family_id)
        await self._revoke_family(family)
        raise TokenError("invalid_grant", "refresh token was already used")

    async def _current_family(self, refresh_token: GitHubRefreshToken) -> Family:
        record = await self.storage.get_token(token_hash(refresh_token.token))
        if record is None:
            raise TokenError("invalid_grant", "refresh token does not exist")
        return record.family

    async def _issue(self, family: Family, access: str, refresh: str, now: float) -> OAuthToken:
        access_expires = now + self.settings.access_token_seconds
        refresh_expires = now + self.settings.refresh_token_seconds
        for token, kind, expires in ((access, "access", access_expires), (refresh, "refresh", refresh_expires)):
            await self.storage.add_token(
                token_hash(token), TokenRow(kind, family.family_id, family.generation, expires)
            )
        return OAuthToken(
            access_token=access,
            token_type="Bearer",  # noqa: S106 (a token type, not a secret)
            expires_in=self.settings.access_token_seconds,
            refresh_token=refresh,
            scope=" ".join(family.scopes),
        )

    async def load_access_token(self, token: str) -> GitHubAccessToken | None:
        key = token_hash(token)
        cached = self.cache.get(key)  # token_cache.py: at most TTL_SECONDS old, dropped on any local revocation
        if cached is not None:
            expires_at, access = cached
            return access if expires_at > time.time() else None
        epoch = self.cache.epoch
        record = await self.storage.get_token(key)
        if record is None or record.token.kind != "access" or not _alive(record):
            return None
        access = GitHubAccessToken(
            token=token,
            client_id=record.family.client_id,
            scopes=record.family.scopes,
            expires_at=int(record.token.expires_at),
            resource=record.family.resource,
            subject=record.family.subject,
            grant_id=record.grant.grant_id,
            family_id=record.family.family_id,
        )
        self.cache.put(key, (record.token.expires_at, access), epoch)
        return access

    # Revocation (RFC 7009)
    async def revoke_token(self, token: GitHubAccessToken | GitHubRefreshToken) -> None:
        record = await self.storage.get_token(token_hash(token.token))
        if record is not None:
            await self._revoke_family(record.family)

    async def revoke(self, client_id: str, token: str) -> None:
        """Revoke the family of `token` (access or refresh) if it belongs to `client_id`."""
        record = await self.storage.get_token(token_hash(token))
        if record is not None and record.family.client_id == client_id:
            await self._revoke_family(record.family)

    async def _revoke_code(self, code_hash: str) -> None:
        # RFC 6749 §4.1.2: a replayed code revokes every token issued from it.
        for family in await self.storage.families_from_code(code_hash):
            await self._revoke_family(family)

    async def _revoke_family(self, family: Family) -> None:
        await self.storage.revoke_family(family.family_id)
        self.cache.invalidate()
        if await self.storage.live_family_count(family.grant_id) == 0:
            grant = await self.storage.get_grant(family.grant_id)
            if grant is not None:
                await self.storage.delete_grant(grant.grant_id)
                await self._revoke_upstream(grant.token_enc)

    async def _revoke_upstream(self, token_enc: str, keep: str | None = None) -> None:
        """Revoke a stored (encrypted) GitHub token at GitHub, unless it is `keep`. Best effort."""
        token = self.keyring.decrypt(token_enc)
        if not token or token == keep:
            return
        if not await self.github.revoke(token):
            logger.warning("Could not revoke a GitHub token at GitHub (it stays valid there until it expires)")

    # GitHub token for tools
    async def github_token(self, access: GitHubAccessToken) -> str:
        """The caller's GitHub token, refreshed first if it is a GitHub App token about to expire."""
        grant = await self.storage.get_grant(access.grant_id)
        if grant is None or grant.dead:
            raise ReconnectRequired()
        if grant.expires_at is not None and grant.expires_at - 60 < time.time():
            lock = self._refresh_locks.setdefault(grant.grant_id, asyncio.Lock())
            async with lock:
                grant = await self._refresh_grant(grant.grant_id)
        token = self.cache.github_token(grant.grant_id, grant.token_enc)
        if token is None:
            raise ReconnectRequired()
        return token

    async def _refresh_grant(self, grant_id: str) -> Grant:
        grant = await self.storage.get_grant(grant_id)
        if grant is None or grant.dead:
            raise ReconnectRequired()
        if grant.expires_at is None or grant.expires_at - 60 >= time.time():
            return grant  # another request refreshed it while we waited
        refresh = self.keyring.decrypt(grant.refresh_enc) if grant.refresh_enc else None
        if refresh is None:
            await self.grant_revoked(grant_id)
            raise ReconnectRequired()
        try:
            tokens = await self.github.refresh(refresh)
        except GitHubOAuthError:
            await self.grant_revoked(grant_id)
            raise ReconnectRequired() from None
        token_enc = self.keyring.encrypt(tokens.access_token)
        refresh_enc = self.keyring.encrypt(tokens.refresh_token) if tokens.refresh_token else None
        await self.storage.update_grant_tokens(
            grant_id, token_enc, refresh_enc, tokens.expires_at, tokens.refresh_expires_at
        )
        grant.token_enc, grant.refresh_enc, grant.expires_at = token_enc, refresh_enc, tokens.expires_at
        return grant

    async def sweep(self) -> dict[str, int]:
        """Delete expired rows; GitHub tokens no grant holds any more are revoked at GitHub too."""
        swept = await self.storage.sweep(
            time.time(), self.settings.unused_client_seconds, self.settings.idle_client_seconds
        )
        for token_enc in swept.released_tokens_enc:
            await self._revoke_upstream(token_enc)
        return swept.counts

    async def grant_revoked(self, grant_id: str) -> None:
        """GitHub no longer honours this grant: every MCP token on it stops working."""
        logger.info("GitHub grant %s is no longer valid; its MCP tokens are revoked", grant_id)
        await self.storage.kill_grant(grant_id)
        self.cache.invalidate()


def _alive(record: TokenRecord, *, any_generation: bool = False) -> bool:
    return (
        not record.family.revoked
        and not record.grant.dead
        and (any_generation or record.token.generation == record.family.generation)
        and record.token.expires_at > time.time()
    )


LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


def redirect_uri_problem(uri: str, allowed_schemes: list[str]) -> str | None:
    """Why a client may not register this redirect URI, or None (OAuth 2.1 §7.5, RFC 8252 §7)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if parts.fragment or "#" in uri:
        return "redirect URIs must not contain a fragment"
    if "@" in parts.netloc:
        return "redirect URIs must not contain user information"
    if scheme == "https":
        return None if parts.hostname else "https redirect URIs need a host"
    if scheme == "http":
        if parts.hostname in LOOPBACK_HOSTS:
            return None
        return "http redirect URIs are only allowed on loopback (localhost, 127.0.0.1, [::1])"
    if scheme in (s.lower() for s in allowed_schemes):
        return None
    return f"the {scheme or 'empty'} URI scheme is not allowed for redirect URIs"
